import type { BenchOptions, ScenarioName } from './bench-options.js';
import type { BankContender } from './contender.js';
import { closedLoop, type RunResult } from './load.js';
import { CpuMeter, type ProcessCpu } from './process-cpu.js';
import type { Row } from './results.js';

/** What a scenario gets from the run. */
export interface ScenarioContext {
  /** Sizes and durations. */
  readonly options: BenchOptions;
  /** Bytes of a jetactor deposit commit: the payload size of the raw contenders. */
  readonly payloadSize: number;
  /** Writes one progress line on stderr. */
  progress(message: string): void;
  /** Adds a row to the table. */
  add(row: Row): Row;
  /** Rows so far. */
  readonly rows: readonly Row[];
  /**
   * R, the limit measured in this run: taken from the many-aggregates scenario, or measured on
   * first use when that scenario is not run. Undefined when it cannot be measured.
   */
  limit(): Promise<number | undefined>;
  /** Records R (the many-aggregates scenario does). */
  setLimit(value: number): void;
  /** Largest throughput measured per contender in this run (for the latency scenario). */
  readonly maxThroughput: Map<string, number>;
}

/** A scenario: one workload, its contenders and targets. */
export interface Scenario {
  /** Name used by `--scenario`. */
  readonly name: ScenarioName;
  /** One line for the table's heading and the docs. */
  readonly title: string;
  /** Runs it, adding rows to the context. */
  run(context: ScenarioContext): Promise<void>;
}

/** A contender in a throughput measurement, and how its callers choose accounts. */
export interface Entrant {
  /** The contender. */
  contender: BankContender;
  /** Concurrent callers. */
  callers: number;
  /** The account of caller `caller`'s `n`th deposit. */
  account: (caller: number, n: number) => string;
}

/**
 * Measures every entrant `reps` times, in rounds (each round runs every entrant once, one after
 * the other), so slow drifts of a noisy machine touch all of them alike. Returns the runs of each
 * entrant, in entrant order.
 */
export async function measureRounds(
  context: ScenarioContext,
  scenario: string,
  entrants: readonly Entrant[],
): Promise<RunResult[][]> {
  const { reps, warmupMs, durationMs } = context.options;
  const runs: RunResult[][] = entrants.map(() => []);
  for (let rep = 1; rep <= reps; rep++) {
    for (const [index, entrant] of entrants.entries()) {
      entrant.contender.takeCounters?.();
      const run = await closedLoop({
        callers: entrant.callers,
        warmupMs,
        durationMs,
        operation: (caller, n) => entrant.contender.deposit(entrant.account(caller, n), 100),
        cpu: new CpuMeter(entrant.contender.processes?.() ?? [{ role: 'bench' }]),
      });
      const counters = entrant.contender.takeCounters?.();
      if (counters !== undefined) run.counters = counters;
      runs[index]?.push(run);
      context.progress(
        `${scenario}: ${entrant.contender.name}, run ${rep}/${reps}: ${formatRate(run.perSecond)} cmd/s, p99 ${run.latency.p99.toFixed(1)} ms${formatCpu(run.cpu)}${run.errors > 0 ? `, ${run.errors} errors (${run.firstError ?? ''})` : ''}`,
      );
    }
  }
  return runs;
}

/** `; CPU µs/cmd: bench 41 (0.52 core), nats-server 28 (0.35 core)`, or nothing. */
export function formatCpu(cpu: Record<string, ProcessCpu> | undefined): string {
  if (cpu === undefined || Object.keys(cpu).length === 0) return '';
  const parts = Object.entries(cpu).map(
    ([role, { usPerOp, cores, eventLoop }]) =>
      `${role} ${usPerOp.toFixed(0)} (${cores.toFixed(2)} core${eventLoop === undefined ? '' : `, loop ${Math.round(100 * eventLoop)}% busy`})`,
  );
  return `; CPU µs/cmd: ${parts.join(', ')}`;
}

/** 12345.6 → `12,346`. */
export function formatRate(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}
