import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { LatencyHistogram, type LatencySummary } from './latency-histogram.js';
import type { CpuMeter, ProcessCpu } from './process-cpu.js';

/** What one timed run of a contender measured. */
export interface RunResult {
  /** Operations completed within the timed window. */
  ops: number;
  /** Operations that failed within the timed window. */
  errors: number;
  /** Length of the timed window, in milliseconds. */
  windowMs: number;
  /** Completed operations per second within the window. */
  perSecond: number;
  /** Latencies of the operations completed within the window. */
  latency: LatencySummary;
  /** First error message seen, to say why a contender failed. */
  firstError?: string;
  /** Counters the contender reports (e.g. conflicts), read after the run. */
  counters?: Record<string, number>;
  /**
   * CPU of each watched process during the timed window (share of a core, microseconds per
   * operation completed in it), by role: `bench`, `nats-server`, `node`, …
   */
  cpu?: Record<string, ProcessCpu>;
}

/** A closed-loop load: `callers` callers, each sending its next operation when the last ends. */
export interface ClosedLoopOptions {
  /** Concurrent callers. */
  callers: number;
  /** Time before the window opens (not counted), in milliseconds. */
  warmupMs: number;
  /** Length of the timed window, in milliseconds. */
  durationMs: number;
  /** One operation of caller `caller`, its `n`th (0-based). */
  operation: (caller: number, n: number) => Promise<unknown>;
  /** Measures the CPU of these processes over the timed window. */
  cpu?: CpuMeter;
}

/**
 * Runs a closed loop: each caller runs operations back to back until the window closes. Counts
 * and latencies only of operations that finished inside the window; after it closes, callers stop
 * sending and the operations still in flight are awaited (not counted).
 */
export async function closedLoop(options: ClosedLoopOptions): Promise<RunResult> {
  const histogram = new LatencyHistogram();
  const start = performance.now();
  const open = start + options.warmupMs;
  const close = open + options.durationMs;
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;
  const meter = new WindowMeter(options.cpu, open, close);
  const caller = async (index: number): Promise<void> => {
    for (let n = 0; ; n++) {
      const sent = performance.now();
      if (sent >= close) return;
      let failed = false;
      try {
        await options.operation(index, n);
      } catch (error) {
        failed = true;
        firstError ??= describe(error);
      }
      const done = performance.now();
      meter.tick(done, true);
      if (done < open || done > close) continue;
      if (failed) {
        errors += 1;
      } else {
        ops += 1;
        histogram.record(done - sent);
      }
    }
  };
  await Promise.all(Array.from({ length: options.callers }, (_, index) => caller(index)));
  return withCpu(result(ops, errors, options.durationMs, histogram, firstError), meter.cpu);
}

/** An open-loop load: operations sent at a fixed rate, whatever the answers. */
export interface OpenLoopOptions {
  /** Operations per second. */
  rate: number;
  /** Time before the window opens (not counted), in milliseconds. */
  warmupMs: number;
  /** Length of the timed window, in milliseconds. */
  durationMs: number;
  /** Most operations in flight; beyond it, sends are skipped and counted as errors. */
  maxInFlight: number;
  /** The `n`th operation (0-based). */
  operation: (n: number) => Promise<unknown>;
  /** Measures the CPU of these processes over the timed window. */
  cpu?: CpuMeter;
}

/**
 * Sends operations at a fixed rate and measures each latency from the moment it was due, not
 * from when it could be sent, so a stalled system is not hidden (no coordinated omission).
 */
export async function openLoop(options: OpenLoopOptions): Promise<RunResult> {
  const histogram = new LatencyHistogram();
  const interval = 1000 / options.rate;
  const start = performance.now();
  const open = start + options.warmupMs;
  const close = open + options.durationMs;
  let ops = 0;
  let errors = 0;
  let inFlight = 0;
  let firstError: string | undefined;
  const meter = new WindowMeter(options.cpu, open, close);
  const pending = new Set<Promise<void>>();
  const send = (n: number, due: number): void => {
    const counted = due >= open;
    if (inFlight >= options.maxInFlight) {
      if (counted) errors += 1;
      firstError ??= `more than ${options.maxInFlight} operations in flight`;
      return;
    }
    inFlight += 1;
    const done = options.operation(n).then(
      () => {
        if (counted) {
          ops += 1;
          histogram.record(performance.now() - due);
        }
      },
      (error: unknown) => {
        if (counted) errors += 1;
        firstError ??= describe(error);
      },
    );
    const tracked = done.finally(() => {
      meter.tick(performance.now(), true);
      inFlight -= 1;
      pending.delete(tracked);
    });
    pending.add(tracked);
  };
  let n = 0;
  for (;;) {
    const now = performance.now();
    let due = start + n * interval;
    if (due >= close) break;
    while (due <= now && due < close) {
      send(n, due);
      n += 1;
      due = start + n * interval;
    }
    await sleep(Math.max(0, Math.min(due - performance.now(), 1)));
    meter.tick(performance.now(), false);
  }
  meter.tick(performance.now(), false);
  await Promise.all(pending);
  return withCpu(result(ops, errors, options.durationMs, histogram, firstError), meter.cpu);
}

/**
 * Runs `meter` over the timed window: {@link WindowMeter.tick} after each completed operation (and
 * whenever the load generator wakes) starts it once the window is open and stops it once it is
 * closed, so it measures what the operations finished in it cost. No timers: they could fire late
 * on a busy event loop.
 */
class WindowMeter {
  readonly #meter: CpuMeter | undefined;
  readonly #open: number;
  readonly #close: number;
  #from = -1;
  #completed = 0;
  #cpu: Record<string, ProcessCpu> | undefined;

  constructor(meter: CpuMeter | undefined, open: number, close: number) {
    this.#meter = meter;
    this.#open = open;
    this.#close = close;
  }

  /** One more operation completed (when `done`), at time `now`. */
  tick(now: number, done: boolean): void {
    if (done) this.#completed += 1;
    if (this.#meter === undefined || this.#cpu !== undefined) return;
    if (this.#from < 0) {
      if (now < this.#open) return;
      this.#meter.start();
      this.#from = this.#completed;
      return;
    }
    if (now >= this.#close) this.#cpu = this.#meter.stop(this.#completed - this.#from);
  }

  /** What the meter measured, if it ran through the window. */
  get cpu(): Record<string, ProcessCpu> | undefined {
    return this.#cpu;
  }
}

function withCpu(run: RunResult, cpu: Record<string, ProcessCpu> | undefined): RunResult {
  return cpu === undefined ? run : { ...run, cpu };
}

/**
 * Runs `operation` for every item, at most `concurrency` at a time (untimed preparation work).
 * Rejects with the first failure.
 */
export async function forEachLimited<T>(
  items: readonly T[],
  concurrency: number,
  operation: (item: T, index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      await operation(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function result(
  ops: number,
  errors: number,
  windowMs: number,
  histogram: LatencyHistogram,
  firstError: string | undefined,
): RunResult {
  return {
    ops,
    errors,
    windowMs,
    perSecond: (ops * 1000) / windowMs,
    latency: histogram.summary(),
    ...(firstError === undefined ? {} : { firstError }),
  };
}

/** A short description of a thrown value. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return `${typeof code === 'string' ? `${code}: ` : ''}${error.message}`.slice(0, 300);
  }
  return String(error).slice(0, 300);
}

/** What a fixed amount of work measured. */
export interface BatchResult {
  /** Operations done. */
  ops: number;
  /** Operations that failed. */
  errors: number;
  /** Wall time from the first start to the last end, in milliseconds. */
  elapsedMs: number;
  /** ops per second over the wall time. */
  perSecond: number;
  /** Latency of each operation. */
  latency: LatencySummary;
  /** First error message seen. */
  firstError?: string;
}

/**
 * Runs `operation` once for every item, `concurrency` at a time, and measures the wall time and
 * each operation's latency.
 */
export async function timedBatch<T>(
  items: readonly T[],
  concurrency: number,
  operation: (item: T) => Promise<unknown>,
): Promise<BatchResult> {
  const histogram = new LatencyHistogram();
  let errors = 0;
  let firstError: string | undefined;
  const start = performance.now();
  await forEachLimited(items, concurrency, async (item) => {
    const sent = performance.now();
    try {
      await operation(item);
      histogram.record(performance.now() - sent);
    } catch (error) {
      errors += 1;
      firstError ??= describe(error);
    }
  });
  const elapsedMs = performance.now() - start;
  const ops = items.length - errors;
  return {
    ops,
    errors,
    elapsedMs,
    perSecond: (ops * 1000) / elapsedMs,
    latency: histogram.summary(),
    ...(firstError === undefined ? {} : { firstError }),
  };
}
