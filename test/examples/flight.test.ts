import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../fixtures/run-cli.js';

const example = fileURLToPath(new URL('../../dist/examples/flight/main.js', import.meta.url));

describe('flight example', () => {
  it('takes off, is refused a second take-off, lands, and its control tower sees the take-off', async () => {
    const run = await runCli([], [], { endInput: true, script: example });

    expect(run.code).toBe(0);
    expect(run.stdout).toContain('takeOff → { version: 1');
    expect(run.stdout).toMatch(/takeOff again → INVALID_TRANSITION - .*"flying"/);
    expect(run.stdout).toContain("land → { version: 2, response: { airport: 'CDG' } }");
    expect(run.stdout).toContain('tower: F-GKXA took off (version 1)');
    expect(run.stdout).toContain('departures seen by the tower: F-GKXA');
    expect(run.stdout.match(/^tower: /gm)).toHaveLength(1);
  });
});
