import {
  createInbox,
  type MsgHdrs,
  type Msg,
  type NatsConnection,
  type Payload,
  type Subscription,
} from '@nats-io/transport-node';
import type { Clock, TimerHandle } from '../clock.js';
import { inboxPrefixOf, permissionViolationOf } from './permission-denied.js';
import { poolProtocolLines } from './pooled-protocol-lines.js';
import { leanMessageArgs } from './lean-message-args.js';
import { directPublish, type DirectPublish } from './direct-publish.js';
import { SequenceSlots } from './sequence-slots.js';

/** A request that got no reply in time. */
export class ReplyTimeoutError extends Error {
  override name = 'ReplyTimeoutError';
  /** How long the request waited. */
  readonly timeoutMs: number;
  constructor(subject: string, timeoutMs: number) {
    super(`no reply on ${subject} within ${timeoutMs} ms`);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The connection to the server dropped while the request waited: its reply, if any, went to the
 * old connection, and a request published while disconnected was dropped (nats.js empties its
 * outgoing buffer before each reconnect attempt). A kind of {@link ReplyTimeoutError}, raised as
 * soon as the connection is back, so callers that send again on a timeout do so at once.
 */
export class ReplyLostError extends ReplyTimeoutError {
  override name = 'ReplyLostError';
  constructor(subject: string, timeoutMs: number) {
    super(subject, timeoutMs);
    this.message = `the connection to the server dropped before the reply on ${subject} came`;
  }
}

/** The pipeline was closed, or its connection closed, before the reply came. */
export class PipelineClosedError extends Error {
  override name = 'PipelineClosedError';
}

/**
 * What waits for the reply to a request sent with {@link ReplyPipeline.send}: told once, of the
 * reply or of the error. Its methods must not throw: they run inside nats.js' message dispatch.
 */
export interface ReplyWaiter {
  replied(msg: Msg): void;
  failed(error: Error): void;
}

interface Waiting {
  subject: string;
  sentAt: number;
  waiter: ReplyWaiter;
}

/**
 * Empties an entry once it is taken, before its callback is called: what it reached (the
 * callbacks' closures, and through them the whole request: an append's commit, its command,
 * their results) must not stay alive with it, wherever garbage still points to it. Garbage that
 * was promoted keeps what it points to alive through scavenges until the next mark-compact. When
 * the entries were in a `Map`, that was every request waiting at one of its rehashes: V8 leaves
 * a replaced hash table holding its entries and pointing to the next table, and all that a
 * command held was copied twice and promoted with it (about 1.3 KB per command in-process, and a
 * quarter less throughput). In {@link SequenceSlots} only a ring replaced as it grows, or its
 * `Map` of stragglers, can still do that.
 */
function release(entry: Waiting): void {
  entry.waiter = NO_WAITER;
}

const NO_WAITER: ReplyWaiter = { replied: () => undefined, failed: () => undefined };

/**
 * Many requests in flight on one connection without a timer or an inbox each: every request is
 * published with a reply subject under one wildcard subscription, and one timer sweeps for
 * requests whose reply is late. Measured here this carries 3–5 times the requests per second of
 * `nc.request()`, which arms a timer per call.
 *
 * The reply subjects use the connection's `inboxPrefix` (default `_INBOX`), as nats.js' own
 * requests do. When the server refuses the publish of a request or the reply subscription
 * (permissions), the requests concerned fail at once with nats.js' `PermissionViolationError`
 * instead of waiting for the timeout. Once the connection is back after a disconnect, every
 * request still waiting fails with {@link ReplyLostError}: no reply to it can come.
 */
export class ReplyPipeline {
  readonly #nc: NatsConnection;
  /** `publish()` without its check of the reply subjects, which this pipeline makes. */
  readonly #publish: DirectPublish;
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #prefix: string;
  /** Requests waiting, under the ids their reply subjects end with. */
  readonly #waiting = new SequenceSlots<Waiting>();
  readonly #onDefect: (error: unknown) => void;
  readonly #subscription: Subscription;
  #sweep: TimerHandle | undefined;
  #closed = false;
  #refused: Error | undefined;
  readonly #status: AsyncIterable<unknown> & { stop?: () => void };

  /**
   * @param onDefect gets what a {@link ReplyPipeline.send} callback threw (a defect): by default
   *   it is thrown again once the current call stack is done, as an uncaught exception, instead of
   *   inside nats.js' message dispatch, where it would stop the connection reading.
   */
  constructor(
    nc: NatsConnection,
    clock: Clock,
    timeoutMs: number,
    onDefect: (error: unknown) => void = throwLater,
  ) {
    this.#nc = nc;
    this.#publish = directPublish(nc);
    this.#onDefect = onDefect;
    poolProtocolLines(nc);
    leanMessageArgs(nc);
    this.#clock = clock;
    this.#timeoutMs = timeoutMs;
    this.#prefix = createInbox(inboxPrefixOf(nc));
    this.#subscription = nc.subscribe(`${this.#prefix}.*`, {
      callback: (error, msg) => {
        if (error === null) this.#onReply(msg);
        else if (permissionViolationOf(error) !== undefined) this.#onRefused(error);
      },
    });
    this.#status = nc.status();
    void this.#watchStatus();
    nc.closed()
      .then(() => this.close('the NATS connection closed'))
      .catch(() => undefined);
  }

  /** Requests waiting for their reply. */
  get size(): number {
    return this.#waiting.size;
  }

  /**
   * Publishes `data` on `subject` and resolves with the reply, whatever its status headers say.
   * Rejects with {@link ReplyTimeoutError} after the timeout and {@link PipelineClosedError} when
   * closed; publishing errors (payload too large, connection closed) reject as thrown.
   */
  request(subject: string, data: Payload | undefined, headers?: MsgHdrs): Promise<Msg> {
    return new Promise<Msg>((resolve, reject) => {
      try {
        this.send(subject, data, headers, { replied: resolve, failed: reject });
      } catch (error) {
        reject(error);
      }
    });
  }

  /**
   * {@link request} answered through `waiter` instead of a promise, for hot paths (a promise and
   * its reactions per request cost more than the bookkeeping of the request itself): `replied`
   * gets the reply, `failed` what {@link request} would reject with later. Neither is called
   * before this returns; what would reject at once (closed, refused, a publish that fails) is
   * thrown instead.
   */
  send(
    subject: string,
    data: Payload | undefined,
    headers: MsgHdrs | undefined,
    waiter: ReplyWaiter,
  ): void {
    if (this.#closed) throw new PipelineClosedError('the pipeline is closed');
    if (this.#refused !== undefined) throw this.#refused;
    const id = this.#waiting.nextId;
    this.#publish(subject, data, `${this.#prefix}.${id}`, headers);
    this.#waiting.add({
      subject,
      sentAt: this.#clock.now(),
      waiter,
    });
    this.#scheduleSweep();
  }

  /** Rejects everything waiting, unsubscribes and takes no more requests. */
  close(why = 'the pipeline was closed'): void {
    if (!this.#closed && !this.#nc.isClosed()) {
      try {
        this.#subscription.unsubscribe();
      } catch {
        // The connection is closing: the subscription goes with it.
      }
    }
    this.#closed = true;
    this.#status.stop?.();
    if (this.#sweep !== undefined) this.#clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    const waiting = this.#waiting.takeAll();
    for (const entry of waiting) this.#fail(entry, new PipelineClosedError(why));
  }

  #onReply(msg: Msg): void {
    const id = requestIdOf(msg, this.#prefix.length);
    const entry = this.#waiting.take(id);
    if (entry === undefined) return; // late: already timed out
    const { waiter } = entry;
    release(entry);
    try {
      waiter.replied(msg);
    } catch (error) {
      this.#onDefect(error);
    }
  }

  /**
   * Fails the requests the server refused (a publish names its subject, the reply subscription
   * all), and every request still waiting when the connection is back after a disconnect.
   */
  async #watchStatus(): Promise<void> {
    try {
      for await (const status of this.#status) {
        if ((status as { type?: unknown }).type === 'reconnect') {
          this.#onReconnect();
          continue;
        }
        const error = permissionViolationOf((status as { error?: unknown }).error);
        if (error === undefined) continue;
        if (error.operation === 'subscription') {
          if (error.subject === `${this.#prefix}.*`) this.#onRefused(error);
          continue;
        }
        for (const [id, entry] of [...this.#waiting.entries()]) {
          if (entry.subject !== error.subject) continue;
          this.#waiting.take(id);
          this.#fail(entry, error);
        }
      }
    } catch {
      // The connection closed: close() rejects what is left.
    }
  }

  /** Requests sent before the reconnect get no reply: fail them now, so they can be sent again. */
  #onReconnect(): void {
    const waiting = this.#waiting.takeAll();
    for (const entry of waiting)
      this.#fail(entry, new ReplyLostError(entry.subject, this.#timeoutMs));
  }

  /** The reply subscription was refused: no reply can come, so every request fails now. */
  #onRefused(error: Error): void {
    if (this.#refused !== undefined) return;
    this.#refused = error;
    const waiting = this.#waiting.takeAll();
    for (const entry of waiting) this.#fail(entry, error);
  }

  #fail(entry: Waiting, error: Error): void {
    const { waiter } = entry;
    release(entry);
    try {
      waiter.failed(error);
    } catch (defect) {
      this.#onDefect(defect);
    }
  }

  #scheduleSweep(): void {
    if (this.#sweep !== undefined || this.#closed) return;
    const interval = Math.max(5, Math.floor(this.#timeoutMs / 4));
    this.#sweep = this.#clock.setTimeout(() => {
      this.#sweep = undefined;
      this.#expire();
      if (this.#waiting.size > 0) this.#scheduleSweep();
    }, interval);
  }

  /** Entries are in send order, so the sweep stops at the first one still in time. */
  #expire(): void {
    const now = this.#clock.now();
    const late: [number, Waiting][] = [];
    for (const entry of this.#waiting.entries()) {
      if (now - entry[1].sentAt < this.#timeoutMs) break;
      late.push(entry);
    }
    for (const [id, entry] of late) {
      this.#waiting.take(id);
      this.#fail(entry, new ReplyTimeoutError(entry.subject, this.#timeoutMs));
    }
  }
}

/** Throws `error` once the current call stack is done. */
function throwLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}

const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

/**
 * The request id at the end of a reply's subject (`<prefix>.<id>`); NaN when it is not one. Read
 * from nats.js' bytes of the subject when the message has them (not public API): decoding the
 * subject into a string cost about 250 ns per reply, ten times reading its digits.
 */
export function requestIdOf(msg: Msg, prefixLength: number): number {
  const bytes = (msg as unknown as { _msg?: { subject?: unknown } })._msg?.subject;
  if (!(bytes instanceof Uint8Array)) return Number(msg.subject.slice(prefixLength + 1) || NaN);
  let id = 0;
  let scale = 1;
  for (let index = bytes.length - 1; index >= 0; index--) {
    const code = bytes[index] as number;
    if (code === DOT) break;
    if (code < ZERO || code > NINE || scale >= 1e15) return NaN;
    id += (code - ZERO) * scale;
    scale *= 10;
  }
  return scale === 1 ? NaN : id;
}
