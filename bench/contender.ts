import type { WatchedProcess } from './process-cpu.js';

/**
 * One way of running the bank workload. Every contender is driven by the same load generator
 * (bench/load.ts), through this interface.
 */
export interface BankContender {
  /** Name shown in the table. */
  readonly name: string;
  /** Opens accounts (untimed preparation), at most `concurrency` at a time. */
  open(ids: readonly string[], concurrency: number): Promise<void>;
  /** Deposits into one account; resolves once the deposit is stored. */
  deposit(id: string, amount: number): Promise<unknown>;
  /**
   * The processes doing its work, whose CPU time each measurement reports: this process
   * (`bench`), its nats-server, its node processes. Default: this process only.
   */
  processes?(): WatchedProcess[];
  /** Counters since the last call (e.g. conflicts); reset by the call. */
  takeCounters?(): Record<string, number>;
  /** Releases what it holds (connections, nodes, servers). */
  close(): Promise<void>;
}

/** Account ids `<prefix>-0` … `<prefix>-(n-1)`. */
export function accountIds(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, index) => `${prefix}-${index}`);
}
