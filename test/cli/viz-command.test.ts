import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { MachineGraph } from '../../runtime/index.js';
import { assertBuilt, runCli } from '../fixtures/run-cli.js';

describe.concurrent('jetactor viz', () => {
  const dir = mkdtempSync(join(tmpdir(), 'jetactor-viz-'));
  beforeAll(() => assertBuilt());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints the mermaid diagram of the bank account on stdout', async ({ expect }) => {
    const run = await runCli(['viz', 'bank', '--aggregate', 'Account', '--format', 'mermaid']);

    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^---\ntitle: "Account"\n---\nstateDiagram-v2\n/);
    expect(run.stdout).toContain('  [*] --> new\n  new --> open : Opened\n');
    expect(run.stdout).toContain(
      '  note right of open\n    Deposited\n    Withdrawn\n  end note\n',
    );
    expect(run.stdout).toContain('  closed --> [*]\n');
  });

  it('labels each diagram when it prints several, the runtime lifecycle among them', async ({
    expect,
  }) => {
    const run = await runCli(['viz', 'bank', 'flight', '--runtime', '--format', 'dot']);

    expect(run.code).toBe(0);
    const labels = run.stdout.split('\n').filter((line) => line.startsWith('// '));
    expect(labels).toEqual([
      '// bank.Account',
      '// bank.Transfer',
      '// flight.Aircraft',
      '// runtime.AggregateActor',
      '// runtime.ReactorWorker',
    ]);
    expect(run.stdout).toContain('digraph "AggregateActor" {');
    expect(run.stdout).toContain(
      '"aggregateActor.committing" -> "aggregateActor.replaying" [label="CONFLICT"];',
    );
  });

  it('prints JSON graphs with their domain and name', async ({ expect }) => {
    const run = await runCli(['viz', 'runtime', '--format', 'json']);

    expect(run.code).toBe(0);
    const [entry, worker, ...rest] = JSON.parse(run.stdout) as {
      domain: string;
      name: string;
      graph: MachineGraph;
    }[];
    expect(rest).toEqual([]);
    expect(entry).toMatchObject({ domain: 'runtime', name: 'AggregateActor' });
    expect(worker).toMatchObject({ domain: 'runtime', name: 'ReactorWorker' });
    expect(worker?.graph.nodes.map((node) => node.key)).toEqual([
      'reactorWorker',
      'idle',
      'handling',
      'retrying',
      'deadLettered',
    ]);
    expect(entry?.graph).toMatchObject({
      format: 1,
      name: 'AggregateActor',
      root: 'aggregateActor',
    });
    expect(entry?.graph.nodes.map((node) => node.key)).toEqual([
      'aggregateActor',
      'spawning',
      'replaying',
      'ready',
      'committing',
      'passivated',
      'failed',
    ]);
  });

  it('writes one SVG file per aggregate into an --out directory', async ({ expect }) => {
    const out = join(dir, 'diagrams');
    const run = await runCli(['viz', 'bank', 'flight', 'runtime', '--format', 'svg', '--out', out]);

    expect(run.code).toBe(0);
    expect(run.stdout).toBe('');
    expect(readdirSync(out).sort()).toEqual([
      'Account.svg',
      'AggregateActor.svg',
      'Aircraft.svg',
      'ReactorWorker.svg',
      'Transfer.svg',
    ]);
    const svg = readFileSync(join(out, 'Account.svg'), 'utf8');
    expect(svg).toContain('<svg');
    expect(svg).toContain('>frozen</text>');
    expect(run.stderr).toContain(`wrote ${join(out, 'Account.svg')}`);
  });

  it('takes the format from the --out file name and draws only the chosen aggregate', async ({
    expect,
  }) => {
    const out = join(dir, 'aircraft.dot');
    const run = await runCli(['viz', 'flight', 'bank', '--aggregate', 'Aircraft', '--out', out]);

    expect(run.code).toBe(0);
    const dot = readFileSync(out, 'utf8');
    expect(dot).toMatch(/^digraph "Aircraft" \{/);
    expect(dot).not.toContain('Account');
  });

  it('refuses an unknown aggregate with exit code 2, listing the known ones', async ({
    expect,
  }) => {
    const run = await runCli(['viz', 'bank', '--aggregate', 'Vault']);

    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(
      'jetactor viz: no aggregate "Vault" in bank; known: Account, Transfer.',
    );
  });

  it('refuses an unknown format with exit code 2, naming the formats', async ({ expect }) => {
    const run = await runCli(['viz', 'bank', '--format', 'png']);

    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('--format "png" is not one of mermaid, dot, svg, json.');
  });

  it('refuses a missing module and a missing domain with exit code 2', async ({ expect }) => {
    const missing = await runCli(['viz', join(dir, 'no-such-module.js')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('not found');

    const none = await runCli(['viz']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('name what to draw');
  });

  it('prints its help with --help', async ({ expect }) => {
    const run = await runCli(['viz', '--help']);

    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: jetactor viz <domain module|flight|bank|runtime>');
    expect(run.stdout).toContain('AggregateActor');
  });
});
