import type { MachineInfo } from './machine.js';
import type { Check, Row } from './results.js';

/** Everything one run measured, as written to bench/results/<date>.json. */
export interface BenchReport {
  /** When the run started (ISO 8601). */
  date: string;
  /** How long it took, in seconds. */
  durationSeconds: number;
  /** The machine. */
  machine: MachineInfo;
  /** The options of the run (sizes, durations, repetitions). */
  options: Record<string, unknown>;
  /** R, the limit of this run, in acknowledged appends per second. */
  limit?: number;
  /** Bytes of each commit message (jetactor's deposit commit; the raw contenders pad to it). */
  payloadBytes: number;
  /** Every row, with every repetition. */
  rows: Row[];
  /** Targets met, missed and not checked. */
  summary: { met: number; missed: number; unchecked: number };
}

/** Counts targets. */
export function summarise(rows: readonly Row[]): BenchReport['summary'] {
  const checks = rows.flatMap((row) => row.checks);
  return {
    met: checks.filter((c) => c.pass === true).length,
    missed: checks.filter((c) => c.pass === false).length,
    unchecked: checks.filter((c) => c.pass === undefined).length,
  };
}

/** The table: a Markdown pipe table (readable as text), then the notes. */
export function formatTable(report: BenchReport): string {
  const header = [
    'scenario',
    'contender',
    'result',
    'p50 ms',
    'p99 ms',
    'max ms',
    '× R',
    'targets',
  ];
  const lines: string[][] = [];
  const notes: string[] = [];
  for (const row of report.rows) {
    let note = '';
    if (row.note !== undefined) {
      notes.push(row.note);
      note = ` [${notes.length}]`;
    }
    lines.push([
      row.scenario,
      `${row.contender}${note}`,
      result(row),
      ms(row.latency?.p50),
      ms(row.latency?.p99),
      ms(row.latency?.max),
      row.ratioToR === undefined ? '' : row.ratioToR.toFixed(2),
      row.checks.map(check).join('; '),
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const numeric = new Set([2, 3, 4, 5, 6]);
  const format = (cells: string[]): string =>
    `| ${cells.map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  const { machine, summary } = report;
  return [
    `jetactor benchmark, ${report.date}: ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Node ${machine.node}, nats-server ${machine.natsServer}${machine.postgres === undefined ? '' : `, PostgreSQL ${machine.postgres}`}`,
    `R = ${report.limit === undefined ? 'not measured' : `${Math.round(report.limit).toLocaleString('en-US')} acked appends/s`} (${report.payloadBytes}-byte messages, 2 headers); medians of ${String(report.options.reps)} runs; ${report.durationSeconds.toFixed(0)} s in all`,
    '',
    format(header),
    rule,
    ...lines.map(format),
    '',
    ...notes.map((n, i) => `[${i + 1}] ${n}`),
    '',
    `Targets: ${summary.met} met, ${summary.missed} missed, ${summary.unchecked} not checked.`,
  ].join('\n');
}

function result(row: Row): string {
  if (row.status === 'not-runnable') return 'not runnable';
  if (row.status === 'failed') return 'FAILED';
  if (row.value === undefined) return '';
  const errors =
    typeof row.extra?.errors === 'number' && row.extra.errors > 0
      ? ` (${row.extra.errors} errors)`
      : '';
  switch (row.unit) {
    case 'ms':
    case 'ms p99':
      return `${row.value.toFixed(1)} ${row.unit}${errors}`;
    case 'KB/actor':
      return `${row.value.toFixed(2)} KB/actor`;
    default:
      return `${Math.round(row.value).toLocaleString('en-US')} ${row.unit}${errors}`;
  }
}

function ms(value: number | undefined): string {
  if (value === undefined) return '';
  if (value >= 100) return value.toFixed(0);
  return value >= 1 ? value.toFixed(1) : value.toFixed(2);
}

function check(c: Check): string {
  const verdict = c.pass === undefined ? 'not checked' : c.pass ? 'met' : 'MISSED';
  return `${c.target}: ${verdict}${c.actual === undefined || c.actual === '' ? '' : ` (${c.actual})`}`;
}
