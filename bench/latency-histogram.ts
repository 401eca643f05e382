import { build, type Histogram } from 'hdr-histogram-js';

/** Latency figures of one measurement, in milliseconds. */
export interface LatencySummary {
  /** Latencies recorded. */
  count: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Largest recorded. */
  max: number;
}

/**
 * Latencies in an HdrHistogram (3 significant digits, 1 µs to 2 minutes): constant memory and
 * constant-time recording whatever the number of commands, exact enough for p50/p99/max.
 */
export class LatencyHistogram {
  readonly #histogram: Histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
    autoResize: true,
  });

  /** Records one latency given in milliseconds (kept in microseconds). */
  record(ms: number): void {
    this.#histogram.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  /** Latencies recorded so far. */
  get count(): number {
    return this.#histogram.totalCount;
  }

  /** p50, p99 and max in milliseconds. */
  summary(): LatencySummary {
    const h = this.#histogram;
    return {
      count: h.totalCount,
      p50: h.totalCount === 0 ? 0 : h.getValueAtPercentile(50) / 1000,
      p99: h.totalCount === 0 ? 0 : h.getValueAtPercentile(99) / 1000,
      max: h.totalCount === 0 ? 0 : h.maxValue / 1000,
    };
  }
}
