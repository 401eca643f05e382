import type { z } from 'zod';

/** Event name → zod schema of its payload. */
export type EventSchemas = Record<string, z.ZodType>;

/**
 * Metadata the runtime sets on every stored event. Domain code never sets it; it replaces
 * hand-kept created/updated/creator/updater/etag fields.
 */
export interface EventMetadata {
  /** The domain the aggregate belongs to. */
  domain: string;
  /** The aggregate type, e.g. `Account`. */
  aggregate: string;
  /** The aggregate instance id. */
  aggregateId: string;
  /** Gap-free per-aggregate version: 1 for the first event, 2 for the next, … */
  version: number;
  /** When the command that produced the event was decided, in milliseconds since the epoch. */
  timestamp: number;
  /** Id of the command that produced the event. */
  commandId: string;
  /** Id shared by everything that follows from one request; defaults to the first command id. */
  correlationId: string;
  /** Id of what caused the command (an event id when sent by a reactor); defaults to the command id. */
  causationId: string;
  /** Who sent the command, when known. */
  actor?: string;
  /**
   * Version of the event's payload schema when it was written; absent means 1. Older payloads are
   * upcast to the current version when read.
   */
  schemaVersion?: number;
}

/**
 * The events of an aggregate as its state machine receives them and as they are stored:
 * `{ type, data, meta }`.
 *
 * @example setup({ types: { context: {} as Ctx, events: {} as DomainEvents<typeof events> } })
 */
export type DomainEvents<E extends EventSchemas> = {
  [K in keyof E & string]: { type: K; data: z.output<E[K]>; meta: EventMetadata };
}[keyof E & string];

/** An event as `decide` returns it: the runtime validates `data` and adds the metadata. */
export type NewEvent<E extends EventSchemas> = {
  [K in keyof E & string]: { type: K; data: z.input<E[K]> };
}[keyof E & string];

/** Any stored event, untyped. */
export interface StoredEvent {
  /** Event name. */
  type: string;
  /** Validated payload. */
  data: unknown;
  /** Metadata set by the runtime. */
  meta: EventMetadata;
}
