import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { assertBuilt } from './fixtures/run-cli.js';
import { tracePretenuring } from './fixtures/pretenuring-trace.js';

const built = new URL('../dist/runtime/pretenuring.js', import.meta.url);

/** Objects of one allocation site still alive at several scavenges: V8 pretenures the site. */
const survivors = `
function make(i) { return { a: i, b: i + 1 }; }
let keep = [];
for (let i = 0; i < 4e6; i++) { keep.push(make(i)); if (keep.length > 400000) keep = []; }
`;

/** A module that may call disablePretenuring (printing what it returned), then makes survivors. */
function script(call: boolean): string[] {
  const first = call
    ? `const { disablePretenuring } = await import(${JSON.stringify(pathToFileURL(built.pathname).href)});\nconsole.log('disabled:', disablePretenuring());\n`
    : '';
  return ['--input-type=module', '-e', `${first}${survivors}`];
}

describe('disablePretenuring', () => {
  it('leaves V8 no pretenuring decision to make, where the same work is pretenured without it', () => {
    assertBuilt(built.pathname);
    const without = tracePretenuring([], script(false));
    expect(without.tenured).toBeGreaterThan(0);

    const turnedOff = tracePretenuring([], script(true));
    expect(turnedOff.stdout).toContain('disabled: true');
    expect(turnedOff.decisions).toBe(0);
  });

  it('leaves pretenuring as node was started with it', () => {
    const on = tracePretenuring(['--allocation-site-pretenuring'], script(true));
    expect(on.stdout).toContain('disabled: false');
    expect(on.tenured).toBeGreaterThan(0);

    const off = tracePretenuring(['--no-allocation-site-pretenuring'], script(true));
    expect(off.stdout).toContain('disabled: false');
    expect(off.decisions).toBe(0);
  });
});
