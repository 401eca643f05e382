import type { LatencySummary } from './latency-histogram.js';
import type { RunResult } from './load.js';

/** One target checked against a figure. */
export interface Check {
  /** The target as the table shows it, e.g. `≥ 0.7 R`. */
  target: string;
  /** Met, missed, or undefined when it could not be checked (a figure is missing). */
  pass: boolean | undefined;
  /** The measured ratio or figure compared with the target. */
  actual?: string;
}

/** One line of the table: a contender in a scenario. */
export interface Row {
  /** Scenario name. */
  scenario: string;
  /** Contender name. */
  contender: string;
  /** `measured`, `not-runnable` (a part it needs does not exist or cannot be reached) or `failed`. */
  status: 'measured' | 'not-runnable' | 'failed';
  /** Unit of {@link Row.value}: `cmd/s`, `activations/s`, `events/s`, `ms`, `KB/actor`. */
  unit: string;
  /** Median over the repetitions. */
  value?: number;
  /** The value of each repetition. */
  values?: number[];
  /** Median p50, p99 and max over the repetitions, in milliseconds. */
  latency?: LatencySummary;
  /** Throughput runs in full (counts, errors, latencies, counters). */
  runs?: RunResult[];
  /** value / R (throughput rows). */
  ratioToR?: number;
  /** Targets and whether they hold. */
  checks: Check[];
  /** What the row measures or why it is missing. */
  note?: string;
  /** Further figures (conflicts, errors, sizes). */
  extra?: Record<string, unknown>;
}

/** Median of numbers (mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** A row summarising throughput runs: medians of rate and of each latency figure. */
export function throughputRow(
  scenario: string,
  contender: string,
  runs: RunResult[],
  note?: string,
): Row {
  const errors = runs.reduce((sum, run) => sum + run.errors, 0);
  const counters: Record<string, number> = {};
  for (const run of runs) {
    for (const [key, value] of Object.entries(run.counters ?? {})) {
      counters[key] = (counters[key] ?? 0) + value;
    }
  }
  const firstError = runs.find((run) => run.firstError !== undefined)?.firstError;
  return {
    scenario,
    contender,
    status: 'measured',
    unit: 'cmd/s',
    value: median(runs.map((run) => run.perSecond)),
    values: runs.map((run) => run.perSecond),
    latency: {
      count: median(runs.map((run) => run.latency.count)),
      p50: median(runs.map((run) => run.latency.p50)),
      p99: median(runs.map((run) => run.latency.p99)),
      max: median(runs.map((run) => run.latency.max)),
    },
    runs,
    checks: [],
    ...(note === undefined ? {} : { note }),
    extra: {
      errors,
      ...counters,
      ...(firstError === undefined ? {} : { firstError }),
    },
  };
}

/** A row for a contender that cannot run, with the reason. */
export function notRunnableRow(
  scenario: string,
  contender: string,
  unit: string,
  why: string,
  checks: string[] = [],
): Row {
  return {
    scenario,
    contender,
    status: 'not-runnable',
    unit,
    checks: checks.map((target) => ({ target, pass: undefined })),
    note: why,
  };
}

/** A row for a contender whose measurement threw. */
export function failedRow(scenario: string, contender: string, unit: string, error: unknown): Row {
  return {
    scenario,
    contender,
    status: 'failed',
    unit,
    checks: [],
    note: error instanceof Error ? error.message.split('\n')[0] : String(error),
  };
}

/**
 * `value ≥ bound`, as a check; `actual` says what was measured in the target's terms (e.g.
 * `0.52 R`). Undefined values give an unchecked target.
 */
export function atLeast(
  target: string,
  value: number | undefined,
  bound: number | undefined,
  actual?: (value: number) => string,
): Check {
  if (
    value === undefined ||
    bound === undefined ||
    !Number.isFinite(value) ||
    !Number.isFinite(bound)
  ) {
    return { target, pass: undefined };
  }
  return {
    target,
    pass: value >= bound,
    ...(actual === undefined ? {} : { actual: actual(value) }),
  };
}

/** `value ≤ bound`, as a check. */
export function atMost(target: string, value: number | undefined, bound: number): Check {
  if (value === undefined || !Number.isFinite(value)) return { target, pass: undefined };
  return { target, pass: value <= bound };
}

/** `≥ k R`: value against k times the limit, showing the ratio reached. */
export function ratioOfR(k: number, value: number | undefined, R: number | undefined): Check {
  return atLeast(`≥ ${k} R`, value, R === undefined ? undefined : k * R, (v) =>
    R === undefined ? '' : `${(v / R).toFixed(2)} R`,
  );
}

/** `≥ k× other`: value against k times another contender's figure, showing the factor. */
export function timesOf(
  k: number,
  name: string,
  value: number | undefined,
  other: number | undefined,
): Check {
  return atLeast(`≥ ${k}× ${name}`, value, other === undefined ? undefined : k * other, (v) =>
    other === undefined ? '' : `${(v / other).toFixed(1)}×`,
  );
}
