import { readFileSync } from 'node:fs';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';

/** A process whose CPU time a measurement reports. */
export interface WatchedProcess {
  /** What it is in the results: `bench` (this process), `nats-server`, `node`, `node 2`, … */
  role: string;
  /** Its pid; undefined for this process (read with `process.cpuUsage()`). */
  pid?: number;
}

/** Clock ticks per second of `/proc/<pid>/stat` (Linux `USER_HZ`, 100 on every common kernel). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system) a process has used so far, in microseconds; undefined when it cannot
 * be read (not Linux, process gone). Other processes are read from `/proc`, at 10 ms resolution.
 */
export function cpuMicros(watched: WatchedProcess): number | undefined {
  if (watched.pid === undefined) {
    const usage = process.cpuUsage();
    return usage.user + usage.system;
  }
  try {
    const stat = readFileSync(`/proc/${watched.pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
    return ((utime + stime) * 1_000_000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** CPU time each watched process used between {@link CpuMeter.start} and {@link CpuMeter.stop}. */
export class CpuMeter {
  readonly #processes: readonly WatchedProcess[];
  #before: (number | undefined)[] = [];
  #startedAt = 0;
  #loop: EventLoopUtilization | undefined;

  constructor(processes: readonly WatchedProcess[]) {
    this.#processes = processes;
  }

  /** Reads every process's CPU time now. */
  start(): void {
    this.#startedAt = performance.now();
    this.#before = this.#processes.map(cpuMicros);
    this.#loop = performance.eventLoopUtilization();
  }

  /**
   * Per process, the share of one core it used since {@link start} (0.5 = half a core) and its
   * CPU time per operation in microseconds, given the operations completed meanwhile; for this
   * process also how busy its event loop was.
   */
  stop(ops: number): Record<string, ProcessCpu> {
    const wallUs = (performance.now() - this.#startedAt) * 1_000;
    const loop = performance.eventLoopUtilization(this.#loop).utilization;
    const result: Record<string, ProcessCpu> = {};
    for (const [index, watched] of this.#processes.entries()) {
      const before = this.#before[index];
      const after = cpuMicros(watched);
      if (before === undefined || after === undefined || wallUs <= 0) continue;
      const used = after - before;
      result[watched.role] = {
        cores: used / wallUs,
        usPerOp: ops > 0 ? used / ops : Number.NaN,
        ...(watched.pid === undefined ? { eventLoop: loop } : {}),
      };
    }
    return result;
  }
}

/** CPU a process used during a timed window. */
export interface ProcessCpu {
  /** Share of one core: CPU time / wall time. */
  cores: number;
  /** CPU time per completed operation, in microseconds. */
  usPerOp: number;
  /**
   * This process only: the share of the window its event loop was busy running JavaScript
   * (`performance.eventLoopUtilization()`); near 1 means the load is bound by this process's one
   * JavaScript thread.
   */
  eventLoop?: number;
}
