import { describe, expect, it } from 'vitest';
import { assertBuilt, cliPath } from '../fixtures/run-cli.js';
import { tracePretenuring } from '../fixtures/pretenuring-trace.js';

describe('jetactor command', () => {
  it('turns V8 allocation-site pretenuring off before it loads the rest of the CLI', () => {
    assertBuilt();
    const jetactor = tracePretenuring([], [cliPath, 'viz', 'bank']);
    expect(jetactor.stdout).toContain('%% bank.Account');
    expect(jetactor.decisions).toBe(0);

    // Given explicitly, it is left on: then the same command makes pretenuring decisions.
    const given = tracePretenuring(['--allocation-site-pretenuring'], [cliPath, 'viz', 'bank']);
    expect(given.stdout).toBe(jetactor.stdout);
    expect(given.decisions).toBeGreaterThan(0);
  });
});
