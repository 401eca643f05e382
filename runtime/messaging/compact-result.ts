import type { CommandResult } from '../aggregate/command.js';
import type { MsgpackWriter } from '../codec/msgpack-writer.js';
import {
  writeField,
  fromWireEvent,
  isWireEvent,
  toWireEvent,
  writeWireEvent,
  type WireEvent,
} from '../event-store/commit-envelope.js';
import type { StreamRef } from '../event-store/event-store.js';

/**
 * The compact form of a command result, sent when the request asks for it with
 * `Jetactor-Reply: compact` (the typed client does): the events as a commit holds them, without
 * what the request already names (domain, aggregate, id) or repeats (ids equal to the command id).
 * A deposit's reply is about half the bytes of the full form, and both ends write and read less.
 */
export interface CompactResult {
  /** `commandId`. */
  i: string;
  /** `version`. */
  v: number;
  /** `events`, as {@link WireEvent}s. */
  e: WireEvent[];
  /** `response`, when not `undefined`. */
  r?: unknown;
  /** `duplicate`, only when true. */
  u?: true;
  /** `position`. */
  p: number;
}

/** The value of `Jetactor-Reply` that asks for {@link CompactResult}s. */
export const COMPACT_REPLY = 'compact';

/** A result in its compact form. */
export function toCompactResult(result: CommandResult): CompactResult {
  const compact: CompactResult = {
    i: result.commandId,
    v: result.version,
    e: result.events.map(toWireEvent),
    p: result.position,
  };
  if (result.response !== undefined) compact.r = result.response;
  if (result.duplicate) compact.u = true;
  return compact;
}

/**
 * Writes {@link toCompactResult}'s object as the writer would write it (the same keys in the same
 * order), without making it; false when the library must.
 */
export function writeCompactResult(writer: MsgpackWriter, result: CommandResult): boolean {
  const { commandId, version, events, response, duplicate, position } = result;
  writer.mapHeader(
    +(commandId !== undefined) +
      +(version !== undefined) +
      1 +
      +(position !== undefined) +
      +(response !== undefined) +
      +duplicate,
  );
  if (!writeField(writer, 'i', commandId, 2) || !writeField(writer, 'v', version, 2)) return false;
  if (!writer.key('e')) return false;
  writer.arrayHeader(events.length);
  for (const event of events) if (!writeWireEvent(writer, event, 3)) return false;
  return (
    writeField(writer, 'p', position, 2) &&
    writeField(writer, 'r', response, 2) &&
    writeField(writer, 'u', duplicate ? true : undefined, 2)
  );
}

/**
 * The result a compact reply to a command on aggregate `stream` stands for, or undefined when
 * `body` is not one.
 */
export function fromCompactResult(body: unknown, stream: StreamRef): CommandResult | undefined {
  const value = body as Partial<CompactResult> | null;
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof value.i !== 'string' ||
    typeof value.v !== 'number' ||
    typeof value.p !== 'number' ||
    !Array.isArray(value.e) ||
    !value.e.every(isWireEvent)
  ) {
    return undefined;
  }
  return {
    commandId: value.i,
    version: value.v,
    events: value.e.map((event) => fromWireEvent(event, stream)),
    response: value.r,
    duplicate: value.u === true,
    position: value.p,
  };
}
