import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../../bench/report.js';
import { runCli } from '../fixtures/run-cli.js';

const benchScript = fileURLToPath(new URL('../../dist/bench/run.js', import.meta.url));

/**
 * Keeps `npm run bench` working: the many-aggregates scenario with tiny windows, every contender
 * on its own nats-server (Emmett on the local PostgreSQL, or a row saying why not). No figure is
 * asserted: the benchmark, not the test suite, says how fast anything is.
 */
describe('npm run bench (smoke run)', () => {
  let results: string;
  beforeAll(async () => {
    results = await mkdtemp(join(tmpdir(), 'jetactor-bench-'));
  });
  afterAll(async () => {
    await rm(results, { recursive: true, force: true });
  });

  it('measures every contender of many-aggregates, prints the table and writes the JSON', async () => {
    const run = await runCli(
      ['--quick', '--scenario', 'many-aggregates', '--duration', '300', '--results', results],
      [],
      { script: benchScript, endInput: true, timeoutMs: 150_000 },
    );
    expect(run.stderr).toContain('many-aggregates: limit R (raw appends), run 1/1');
    expect(run.code).toBe(0);
    const files = await readdir(results);
    expect(files).toHaveLength(1);
    const report = JSON.parse(await readFile(join(results, files[0]!), 'utf8')) as BenchReport;
    expect(report.machine.cores).toBeGreaterThan(0);
    const byContender = new Map(report.rows.map((row) => [row.contender, row]));
    for (const name of [
      'limit R (raw appends)',
      'request limit (raw request, append, reply)',
      'floor (XState, zod, envelope, append)',
      'floor end-to-end (request, floor, reply)',
      'hand-written',
      'jetactor in-process',
      'jetactor end-to-end',
    ]) {
      const row = byContender.get(name);
      expect(row, name).toBeDefined();
      expect(row?.status, name).toBe('measured');
      expect(row?.value, name).toBeGreaterThan(0);
      expect(run.stdout).toContain(`| ${name}`);
    }
    // Emmett needs PostgreSQL; without one its row says why instead of a figure.
    const emmett = byContender.get('Emmett + PostgreSQL');
    expect(emmett?.status === 'measured' ? emmett.value : emmett?.note).toBeTruthy();
    const inProcess = byContender.get('jetactor in-process');
    expect(inProcess?.note).toMatch(/^\d+\.\d\d× the floor$/);
    expect(byContender.get('jetactor end-to-end')?.note).toMatch(
      /^\d+\.\d\d× the request limit, \d+\.\d\d× the end-to-end floor$/,
    );
    expect(inProcess?.checks.map((check) => check.target)).toEqual([
      '≥ 0.7 R',
      '≥ 2× hand-written',
    ]);
  }, 180_000);
});
