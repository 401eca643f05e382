import type { StoredEvent } from '../domain/events.js';
import { InfrastructureError, describeError } from '../errors.js';

/** One commit to apply: its position and the events the projection handles (maybe none). */
export interface ProjectionUnit {
  /** Position (stream sequence) of the commit. */
  readonly position: number;
  /** The events to hand to handlers, in order. */
  readonly events: readonly StoredEvent[];
}

/** Runs the handler of `units[unit].events[event]` with the store's writer. */
export type RunHandler<W> = (writer: W, unit: number, event: number) => Promise<void>;

/** Options of {@link ReadModelStore.apply}. */
export interface ApplyOptions {
  /** The checkpoint the runner last wrote or read; another one means another writer (fenced). */
  expected: number;
  /** The checkpoint to write: the last unit's position (or `expected` for a replay). */
  to: number;
  /**
   * Applies the units once only under this mark (a dead letter's id, for a replay out of order):
   * when the store has it already, nothing runs and `apply` returns `'already'`.
   */
  mark?: number;
}

/**
 * A read model's storage at run time: atomic batches with their checkpoint. Made by the node from
 * the projection's spec (`kvReadModel`, `postgresReadModel`), with its connections.
 */
export interface ReadModelStore<W = unknown, R = unknown> {
  /** `kv`, `memory` or `postgres`. */
  readonly kind: 'kv' | 'memory' | 'postgres';
  /** Where it is, for logs and status: the bucket or the schema. */
  readonly location: string;
  /**
   * Prepares the store for writing (bucket, schema, migration), finishes a batch a crash
   * interrupted, and returns the checkpoint. A read model written by another version or
   * migration is dropped first (`onReset` is told why).
   */
  open(onReset?: (why: string) => void): Promise<number>;
  /**
   * Runs the handlers of `units` and writes their changes with checkpoint `to`, all or nothing.
   * Throws {@link HandlerFailure} when a handler throws (nothing is written), a
   * `PROJECTION_FENCED` error when the checkpoint is not `expected`, and a `READ_MODEL_FAILED`
   * error when the storage fails.
   */
  apply(
    units: readonly ProjectionUnit[],
    run: RunHandler<W>,
    options: ApplyOptions,
  ): Promise<'applied' | 'already'>;
  /** The checkpoint as stored now (readable from any node); 0 when there is none. */
  checkpoint(): Promise<number>;
  /** What queries read. */
  reader(): R;
  /** Deletes the read model and its checkpoint. */
  drop(): Promise<void>;
  /** Releases what it holds (not shared pools or connections). */
  close(): Promise<void>;
}

/** A handler threw while a batch was applied: which one, and what it threw. */
export class HandlerFailure extends Error {
  override name = 'HandlerFailure';
  /** Index of the unit in the batch. */
  readonly unit: number;
  /** Index of the event in the unit. */
  readonly event: number;

  constructor(unit: number, event: number, cause: unknown) {
    super(describeError(cause), { cause });
    this.unit = unit;
    this.event = event;
  }
}

/** The checkpoint moved under this writer: another node wrote the read model. */
export function fenced(location: string, expected: number, actual: number): InfrastructureError {
  return new InfrastructureError(
    'PROJECTION_FENCED',
    `The checkpoint of read model ${location} is at ${actual}, but this node last wrote ${expected}: another node is running the projection. This node stops running it and stands by.`,
    { details: { location, expected, actual } },
  );
}

/** The storage of a read model failed. */
export function readModelFailed(
  location: string,
  what: string,
  error: unknown,
): InfrastructureError {
  if (error instanceof InfrastructureError) return error;
  return new InfrastructureError(
    'READ_MODEL_FAILED',
    `Read model ${location}: ${what} failed: ${describeError(error)}.`,
    { cause: error, details: { location } },
  );
}

/** Runs every handler of the units with one writer, wrapping what they throw. */
export async function runAll<W>(
  units: readonly ProjectionUnit[],
  run: RunHandler<W>,
  writer: W,
): Promise<void> {
  for (let u = 0; u < units.length; u++) {
    const { events } = units[u]!;
    for (let e = 0; e < events.length; e++) {
      try {
        await run(writer, u, e);
      } catch (error) {
        throw new HandlerFailure(u, e, error);
      }
    }
  }
}
