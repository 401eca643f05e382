import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { LatencyHistogram, type LatencySummary } from './latency-histogram.js';

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
  return result(ops, errors, options.durationMs, histogram, firstError);
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
  }
  await Promise.all(pending);
  return result(ops, errors, options.durationMs, histogram, firstError);
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
