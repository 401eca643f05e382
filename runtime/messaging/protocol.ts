import type { Msg, MsgHdrs } from '@nats-io/transport-node';
import type { Codec } from '../codec/codec.js';
import { JsonCodec } from '../codec/json-codec.js';
import type { ErrorJSON } from '../errors.js';
import { EncodedHeaders } from '../nats/encoded-headers.js';
import { headerLines, headerValue } from '../nats/header-lines.js';

/**
 * Headers of the command protocol. Every request header is optional; header names are matched
 * without regard to case.
 *
 * Requests: `Content-Type` (`application/json` or the node's codec, default
 * `application/msgpack`; without it a body starting with `{` or `[`, or an empty body, is JSON),
 * `Jetactor-Command-Id`, `Jetactor-Expected-Version` (a decimal integer),
 * `Jetactor-Correlation-Id`, `Jetactor-Causation-Id`, `Jetactor-Actor`, `Jetactor-Timeout` (how
 * long the sender waits, in milliseconds: a command not started by then is not run),
 * `Jetactor-Reply` (`compact`: the result in its compact form, see `CompactResult`).
 *
 * Replies: `Content-Type` (the request's), `Jetactor-Status` (`ok` or `error`) and, on errors,
 * `Jetactor-Error-Code`.
 *
 * Between nodes (partition affinity): `Jetactor-Forwarded-Subject`, `Jetactor-Partition-Token`,
 * `Jetactor-Forwarded-By` on requests forwarded to a partition's owner; clients never send them.
 */
export const commandHeaders = Object.freeze({
  /** Body format of a request or reply. */
  contentType: 'Content-Type',
  /** Idempotency key of the command (1–256 characters). */
  commandId: 'Jetactor-Command-Id',
  /** Version the aggregate must be at (decimal integer, 0 = new). */
  expectedVersion: 'Jetactor-Expected-Version',
  /** Correlation id copied to the events. */
  correlationId: 'Jetactor-Correlation-Id',
  /** Causation id copied to the events. */
  causationId: 'Jetactor-Causation-Id',
  /** Who sends the command, recorded on the events. */
  actor: 'Jetactor-Actor',
  /**
   * How long the sender waits for the reply, in milliseconds (a decimal integer): a command that
   * has not started by then, counted from when the node received it, is answered
   * `DEADLINE_EXCEEDED` and not run.
   */
  timeout: 'Jetactor-Timeout',
  /**
   * `compact` asks for the command's result in its compact form (`CompactResult`: the events as a
   * commit holds them); without it the reply is the full `CommandResult`.
   */
  reply: 'Jetactor-Reply',
  /** On replies: `ok` or `error`, so a client can tell them apart without decoding. */
  status: 'Jetactor-Status',
  /** On error replies: the error's code. */
  errorCode: 'Jetactor-Error-Code',
  /**
   * On requests one node forwards to a partition's owner (`<prefix>.fwd.<domain>.<partition>`):
   * the subject the client sent the request on.
   */
  forwardedSubject: 'Jetactor-Forwarded-Subject',
  /** On forwarded requests: the fencing token of the owner's lease, as the forwarder knows it. */
  partitionToken: 'Jetactor-Partition-Token',
  /** On forwarded requests: the id of the node that forwarded it (for logs). */
  forwardedBy: 'Jetactor-Forwarded-By',
});

/** Value of the `Jetactor-Status` reply header. */
export type ReplyStatus = 'ok' | 'error';

/** The body of an error reply. */
export interface ErrorReplyBody {
  /** The error as {@link JetactorError.toJSON} writes it: code, message, kind, details. */
  error: ErrorJSON;
}

/** The one JSON codec the messaging layer uses. */
export const jsonCodec: Codec = new JsonCodec();

/**
 * A body format chosen for a request: the codec to decode it with (and whether the body is
 * blank, which means `{}`), or the `Content-Type` that is not supported.
 */
export type BodyFormat =
  { ok: true; codec: Codec; empty: boolean } | { ok: false; contentType: string };

/**
 * The body format of a message: its `Content-Type` when set (JSON or `codec`), else JSON when the
 * body is empty or its first non-blank byte is `{` or `[` (no msgpack value of an object starts
 * that way), else `codec`.
 */
export function bodyFormat(msg: Msg, codec: Codec): BodyFormat {
  return bodyFormatOf(headerValue(headerLines(msg), commandHeaders.contentType), msg.data, codec);
}

/** {@link bodyFormat} of a body `data` sent with the `Content-Type` `contentType` (or `''`). */
export function bodyFormatOf(contentType: string, data: Uint8Array, codec: Codec): BodyFormat {
  const declared = contentType === '' ? '' : mediaType(contentType);
  const empty = isBlank(data);
  if (declared !== '') {
    if (declared === jsonCodec.contentType) return { ok: true, codec: jsonCodec, empty };
    if (declared === mediaType(codec.contentType)) return { ok: true, codec, empty };
    return { ok: false, contentType: declared };
  }
  return { ok: true, codec: empty || startsLikeJson(data) ? jsonCodec : codec, empty };
}

/** Media types by `Content-Type` value: a node sees the same few on every request. */
const mediaTypes = new Map<string, string>();

/** `application/json; charset=utf-8` → `application/json`. */
export function mediaType(value: string): string {
  let media = mediaTypes.get(value);
  if (media === undefined) {
    media = (value.split(';')[0] ?? '').trim().toLowerCase();
    // Values are senders' choice: remember a few hundred, not whatever a sender makes up.
    if (mediaTypes.size < 256) mediaTypes.set(value, media);
  }
  return media;
}

/** Reply headers by content type, status and error code, encoded once: the same for every reply. */
const sharedReplyHeaders = new Map<string, MsgHdrs>();

/**
 * Headers of a reply in `codec`'s format: one shared object per content type, status and error
 * code, encoded once (codes come from the runtime and the domains, so a few hundred are kept at
 * most). Publish them, do not change them.
 */
export function replyHeaders(codec: Codec, status: ReplyStatus, code?: string): MsgHdrs {
  const key =
    code === undefined
      ? `${codec.contentType} ${status}`
      : `${codec.contentType} ${status} ${code}`;
  let h = sharedReplyHeaders.get(key);
  if (h === undefined) {
    const entries: [string, string][] = [
      [commandHeaders.contentType, codec.contentType],
      [commandHeaders.status, status],
    ];
    if (code !== undefined) entries.push([commandHeaders.errorCode, code]);
    h = new EncodedHeaders(entries);
    if (sharedReplyHeaders.size < 256) sharedReplyHeaders.set(key, h);
  }
  return h;
}

function isBlank(data: Uint8Array): boolean {
  for (const byte of data) if (!isSpace(byte)) return false;
  return true;
}

function startsLikeJson(data: Uint8Array): boolean {
  for (const byte of data) {
    if (isSpace(byte)) continue;
    return byte === 0x7b || byte === 0x5b; // { or [
  }
  return false;
}

function isSpace(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
}
