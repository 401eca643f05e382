import type { Codec } from '../codec/codec.js';
import { encodeShaped } from '../codec/msgpack-codec.js';
import type { MsgpackWriter } from '../codec/msgpack-writer.js';
import type { StoredEvent } from '../domain/events.js';
import { InfrastructureError } from '../errors.js';
import type { CommandRecord, Commit, StreamRef } from './event-store.js';

/** Envelope format version written in every commit message. */
export const ENVELOPE_VERSION = 1;

/**
 * One event as written in a commit (and in a compact command reply): short keys, fields equal to
 * the command id omitted, the aggregate left out (the subject, or the request, names it).
 */
export interface WireEvent {
  t: string;
  d: unknown;
  v: number;
  ts: number;
  c: string;
  co?: string;
  ca?: string;
  a?: string;
  sv?: number;
}

interface WireCommand {
  i: string;
  r?: unknown;
}

interface WireEnvelope {
  v: number;
  /** Position of the aggregate's previous commit (0 for its first): reads walk back along it. */
  p: number;
  e: WireEvent[];
  c: WireCommand[];
}

/** A decoded commit and the position of the aggregate's commit before it. */
export interface DecodedCommit {
  commit: Commit;
  /** 0 for the aggregate's first commit. */
  previous: number;
}

/** The wire form of an event. */
export function toWireEvent({ type, data, meta }: StoredEvent): WireEvent {
  const wire: WireEvent = {
    t: type,
    d: data,
    v: meta.version,
    ts: meta.timestamp,
    c: meta.commandId,
  };
  if (meta.correlationId !== meta.commandId) wire.co = meta.correlationId;
  if (meta.causationId !== meta.commandId) wire.ca = meta.causationId;
  if (meta.actor !== undefined) wire.a = meta.actor;
  if (meta.schemaVersion !== undefined && meta.schemaVersion !== 1) wire.sv = meta.schemaVersion;
  return wire;
}

/**
 * Writes an event as {@link toWireEvent}'s object would be written (the same keys in the same
 * order, `d` left out when `undefined`), at nesting `depth`; false when the library must.
 */
export function writeWireEvent(
  writer: MsgpackWriter,
  { type, data, meta }: StoredEvent,
  depth: number,
): boolean {
  const { version, timestamp, commandId, correlationId, causationId, actor, schemaVersion } = meta;
  // As toWireEvent sets them; a field left undefined is not written, as the library drops it.
  const co = correlationId !== commandId ? correlationId : undefined;
  const ca = causationId !== commandId ? causationId : undefined;
  const sv = schemaVersion !== 1 ? schemaVersion : undefined;
  const size =
    +(type !== undefined) +
    +(data !== undefined) +
    +(version !== undefined) +
    +(timestamp !== undefined) +
    +(commandId !== undefined) +
    +(co !== undefined) +
    +(ca !== undefined) +
    +(actor !== undefined) +
    +(sv !== undefined);
  writer.mapHeader(size);
  const inner = depth + 1;
  return (
    writeField(writer, 't', type, inner) &&
    writeField(writer, 'd', data, inner) &&
    writeField(writer, 'v', version, inner) &&
    writeField(writer, 'ts', timestamp, inner) &&
    writeField(writer, 'c', commandId, inner) &&
    writeField(writer, 'co', co, inner) &&
    writeField(writer, 'ca', ca, inner) &&
    writeField(writer, 'a', actor, inner) &&
    writeField(writer, 'sv', sv, inner)
  );
}

/** One map entry, none when `value` is undefined; false when the library must write it. */
export function writeField(
  writer: MsgpackWriter,
  key: string,
  value: unknown,
  depth: number,
): boolean {
  return value === undefined || (writer.key(key) && writer.item(value, depth));
}

/** True when `raw` has the fields every wire event has (type, version, timestamp, command id). */
export function isWireEvent(raw: unknown): raw is WireEvent {
  return (
    isRecord(raw) &&
    typeof raw.t === 'string' &&
    typeof raw.v === 'number' &&
    typeof raw.ts === 'number' &&
    typeof raw.c === 'string'
  );
}

/** The event a wire event of aggregate `stream` stands for (see {@link isWireEvent}). */
export function fromWireEvent(raw: WireEvent, stream: StreamRef): StoredEvent {
  const meta: StoredEvent['meta'] = {
    domain: stream.domain,
    aggregate: stream.aggregate,
    aggregateId: stream.id,
    version: raw.v,
    timestamp: raw.ts,
    commandId: raw.c,
    correlationId: typeof raw.co === 'string' ? raw.co : raw.c,
    causationId: typeof raw.ca === 'string' ? raw.ca : raw.c,
  };
  if (typeof raw.a === 'string') meta.actor = raw.a;
  if (typeof raw.sv === 'number') meta.schemaVersion = raw.sv;
  return { type: raw.t, data: raw.d, meta };
}

/**
 * Encodes a commit's events and command records into one message body. The aggregate is not
 * written: it is the message's subject.
 */
export function encodeEnvelope(
  codec: Codec,
  previous: number,
  events: readonly StoredEvent[],
  commands: readonly CommandRecord[],
): Uint8Array {
  // MessagePack is written straight from the events and records, without their wire objects.
  return encodeShaped(codec, writeEnvelope, envelopeOf, { previous, events, commands });
}

/** What an envelope is made of. */
interface CommitParts {
  previous: number;
  events: readonly StoredEvent[];
  commands: readonly CommandRecord[];
}

function envelopeOf({ previous, events, commands }: CommitParts): WireEnvelope {
  return {
    v: ENVELOPE_VERSION,
    p: previous,
    e: events.map(toWireEvent),
    c: commands.map((record) =>
      record.response === undefined ? { i: record.id } : { i: record.id, r: record.response },
    ),
  };
}

/** {@link envelopeOf}'s object as the writer would write it; false when the library must. */
function writeEnvelope(
  writer: MsgpackWriter,
  { previous, events, commands }: CommitParts,
): boolean {
  writer.mapHeader(previous === undefined ? 3 : 4);
  if (!writeField(writer, 'v', ENVELOPE_VERSION, 2) || !writeField(writer, 'p', previous, 2))
    return false;
  if (!writer.key('e')) return false;
  writer.arrayHeader(events.length);
  for (const event of events) if (!writeWireEvent(writer, event, 3)) return false;
  if (!writer.key('c')) return false;
  writer.arrayHeader(commands.length);
  for (const { id, response } of commands) {
    writer.mapHeader(+(id !== undefined) + +(response !== undefined));
    if (!writeField(writer, 'i', id, 4) || !writeField(writer, 'r', response, 4)) return false;
  }
  return true;
}

/** Where a message was read from, for error messages. */
export interface MessageOrigin {
  /** The message's subject. */
  subject: string;
  /** Its stream sequence. */
  sequence: number;
}

/**
 * Decodes a commit message. Anything that is not an envelope this runtime wrote throws a
 * `CORRUPT_DATA` error naming the subject and the sequence.
 */
export function decodeEnvelope(
  codec: Codec,
  stream: StreamRef,
  origin: MessageOrigin,
  bytes: Uint8Array,
): DecodedCommit {
  const corrupt = (why: string, cause?: unknown): InfrastructureError =>
    new InfrastructureError(
      'CORRUPT_DATA',
      `The message at sequence ${origin.sequence} on "${origin.subject}" is not a jetactor commit: ${why}. It was not written by this runtime or is damaged; the aggregate cannot be loaded until it is removed or repaired.`,
      { cause, details: { subject: origin.subject, sequence: origin.sequence } },
    );
  let value: unknown;
  try {
    value = codec.decode(bytes);
  } catch (error) {
    throw corrupt(`it does not decode as ${codec.contentType}`, error);
  }
  if (!isRecord(value)) throw corrupt('the body is not an envelope object');
  if (value.v !== ENVELOPE_VERSION) {
    throw corrupt(`unknown envelope version ${JSON.stringify(value.v)}`);
  }
  const { e, c, p } = value;
  if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 0 || p >= origin.sequence) {
    throw corrupt(`its previous position ${JSON.stringify(p)} is not before ${origin.sequence}`);
  }
  if (!Array.isArray(e) || e.length === 0) throw corrupt('it holds no events');
  if (!Array.isArray(c)) throw corrupt('it holds no command records');
  const events: StoredEvent[] = e.map((raw: unknown, index) => {
    if (!isWireEvent(raw)) {
      throw corrupt(`event ${index} lacks its type, version, timestamp or command id`);
    }
    return fromWireEvent(raw, stream);
  });
  const commands: CommandRecord[] = c.map((raw: unknown, index) => {
    if (!isRecord(raw) || typeof raw.i !== 'string') {
      throw corrupt(`command record ${index} has no id`);
    }
    return 'r' in raw && raw.r !== undefined ? { id: raw.i, response: raw.r } : { id: raw.i };
  });
  return { commit: { stream, position: origin.sequence, events, commands }, previous: p };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
