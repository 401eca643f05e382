import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCodes } from '../runtime/index.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const documented = new Map(
  [...doc.matchAll(/^\| `([A-Z_]+)` +\| (\w+) +\|/gm)].map(
    (m) => [m[1] ?? '', m[2] ?? ''] as const,
  ),
);

describe('error codes', () => {
  it('are each documented in docs/errors.md with their kind', () => {
    for (const [code, kind] of Object.entries(errorCodes)) {
      expect(documented.get(code), code).toBe(kind);
    }
  });

  it('has no documented code that the runtime does not raise', () => {
    expect([...documented.keys()].filter((code) => !(code in errorCodes))).toEqual([]);
  });
});
