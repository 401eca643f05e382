import { AckPolicy, DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';
import {
  createInbox,
  nuid,
  type Msg,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { Clock } from '../clock.js';
import type { Logger } from '../logger.js';
import { inboxPrefixOf } from '../nats/permission-denied.js';

/** One message of the subject: its stream sequence and its payload. */
export interface PulledMessage {
  readonly sequence: number;
  readonly data: Uint8Array;
}

/** Options of {@link SubjectPull.open}. */
export interface SubjectPullOptions {
  /** The connection the pulls and messages go through. */
  nc: NatsConnection;
  /** Creates and deletes the consumer. */
  jsm: JetStreamManager;
  /** The stream's name. */
  stream: string;
  /** The one subject read (no wildcards needed, but allowed). */
  subject: string;
  /** The first stream sequence read. */
  from: number;
  /** Messages asked for at most at once (the window); more are asked for when half is taken. */
  batch: number;
  /** How long a pull waits on the server before it expires and is sent again. */
  expiresMs: number;
  /** How long the server keeps the consumer once nothing pulls from it. */
  inactiveMs: number;
  clock: Clock;
  logger: Logger;
}

/** Raised by {@link SubjectPull.ready} when the read cannot go on. */
export class SubjectPullError extends Error {
  override readonly name = 'SubjectPullError';
}

/** The fields of nats.js' `MsgImpl` that hold the reply subject as received (not public API). */
interface ReceivedMsg {
  _msg?: { reply?: unknown };
}

const DOT = 46;
const ZERO = 48;
const ACK_PREFIX = Buffer.from('$JS.ACK.');
const dots = new Int32Array(16);
/** Messages taken from the front of the queue before it is cut. */
const COMPACT_AFTER = 4096;

/**
 * Stream and delivery sequence of a JetStream message from its reply subject, either
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>` (9 tokens) or the form
 * with domain and account hash (11 tokens, 12 with a trailing random token). Written into `out`;
 * false when the subject has neither form.
 */
export function parseAckSubject(
  reply: Uint8Array,
  out: { sequence: number; delivery: number },
): boolean {
  if (reply.length <= ACK_PREFIX.length) return false;
  for (let i = 0; i < ACK_PREFIX.length; i++) if (reply[i] !== ACK_PREFIX[i]) return false;
  let count = 0;
  for (let i = 0; i < reply.length; i++) {
    if (reply[i] === DOT) {
      if (count === dots.length) return false;
      dots[count++] = i;
    }
  }
  // The token of the delivery count: the 5th of 9, the 7th of 11 or 12.
  const tokens = count + 1;
  const delivered = tokens === 9 ? 4 : tokens === 11 || tokens === 12 ? 6 : -1;
  if (delivered < 0) return false;
  const sequence = digits(reply, dots[delivered]! + 1, dots[delivered + 1]!);
  const delivery = digits(reply, dots[delivered + 1]! + 1, dots[delivered + 2]!);
  if (sequence <= 0 || delivery <= 0) return false;
  out.sequence = sequence;
  out.delivery = delivery;
  return true;
}

function digits(bytes: Uint8Array, start: number, end: number): number {
  if (end <= start || end - start > 15) return -1;
  let value = 0;
  for (let i = start; i < end; i++) {
    const digit = bytes[i]! - ZERO;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return value;
}

function replyBytes(msg: Msg): Uint8Array | undefined {
  const reply = (msg as unknown as ReceivedMsg)._msg?.reply;
  if (reply instanceof Uint8Array) return reply;
  // Another client version: the decoded subject, when there is one.
  return msg.reply ? Buffer.from(msg.reply) : undefined;
}

/**
 * Reads one subject of a stream forward, in order, through an ephemeral pull consumer of its own
 * (no acknowledgements, in memory, one replica): the read path of long aggregates.
 *
 * nats.js' ordered consumer does the same, but per message it splits the reply subject into
 * strings, builds a delivery-info object and queues the message through an async iterator: as
 * much CPU as XState's transitions when an aggregate is replayed. This cuts the two sequences
 * from the reply subject's bytes and queues messages in an array the reader takes from.
 *
 * Ordering is checked as the ordered consumer checks it: the consumer's delivery sequence must
 * grow by one. A gap (a message dropped on the way), a deleted consumer or no responder makes the
 * consumer again from the sequence after the last message received; so does {@link restart},
 * which the reader calls when a pull stays silent. Messages received are never lost by that.
 */
export class SubjectPull {
  readonly #options: SubjectPullOptions;
  readonly #base: string;
  #queue: PulledMessage[] = [];
  #head = 0;
  /** Messages asked for and neither received nor reported missing by the server. */
  #outstanding = 0;
  #generation = 0;
  #consumer: string | undefined;
  #inbox = '';
  #subscription: Subscription | undefined;
  #lastDelivery = 0;
  #next: number;
  #restarting = false;
  #closed = false;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #ack = { sequence: 0, delivery: 0 };

  private constructor(options: SubjectPullOptions) {
    this.#options = options;
    this.#next = options.from;
    this.#base = `jetactor_read_${nuid.next()}`;
  }

  /** Creates the consumer and sends the first pull; rejects when the consumer cannot be made. */
  static async open(options: SubjectPullOptions): Promise<SubjectPull> {
    const pull = new SubjectPull(options);
    try {
      await pull.#start();
    } catch (error) {
      pull.#closed = true;
      pull.#subscription?.unsubscribe();
      throw error;
    }
    return pull;
  }

  /** The stream sequence the consumer would start from if it were made again. */
  get next(): number {
    return this.#next;
  }

  /** The next message received, or undefined when none is waiting (then await {@link ready}). */
  take(): PulledMessage | undefined {
    if (this.#head === this.#queue.length) return undefined;
    const message = this.#queue[this.#head++]!;
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head >= COMPACT_AFTER) {
      // A reader that never quite catches up: let go of what it took.
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    this.#refill();
    return message;
  }

  /**
   * Resolves when a message is waiting or {@link interrupt} was called; rejects when the read
   * cannot go on (the connection closed, a permission or request the server refused).
   */
  ready(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#head < this.#queue.length || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
    }).then(() => {
      if (this.#failure !== undefined) throw this.#failure;
    });
  }

  /** Wakes a reader waiting in {@link ready}, e.g. when it gives up waiting. */
  interrupt(): void {
    this.#notify();
  }

  /**
   * Makes the consumer again from the sequence after the last message received, e.g. after a
   * silence: a pull lost with a server restart or a reconnect would otherwise never be answered.
   * Does nothing while a restart is under way; a restart that fails is left for the next call.
   */
  restart(): void {
    if (this.#closed || this.#restarting) return;
    this.#start().catch((error: unknown) => {
      this.#options.logger.debug(
        { subject: this.#options.subject, sequence: this.#next, err: error },
        'read consumer not made again yet',
      );
    });
  }

  /** Unsubscribes and deletes the consumer (waiting at most as long as `within` allows). */
  async close(within: <T>(promise: Promise<T>) => Promise<T | undefined>): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#subscription?.unsubscribe();
    this.#notify();
    const consumer = this.#consumer;
    if (consumer !== undefined) {
      await within(
        this.#options.jsm.consumers.delete(this.#options.stream, consumer).catch(() => false),
      );
    }
  }

  async #start(): Promise<void> {
    const { nc, jsm, stream, subject, inactiveMs } = this.#options;
    this.#restarting = true;
    const generation = ++this.#generation;
    const old = this.#consumer;
    this.#consumer = undefined;
    this.#subscription?.unsubscribe();
    this.#outstanding = 0;
    this.#lastDelivery = 0;
    if (old !== undefined) jsm.consumers.delete(stream, old).catch(() => false);
    try {
      const inbox = createInbox(inboxPrefixOf(nc));
      this.#inbox = inbox;
      this.#subscription = nc.subscribe(inbox, {
        callback: (error, msg) => {
          if (generation !== this.#generation || this.#closed) return;
          if (error !== null) this.#fail(error);
          else this.#receive(msg);
        },
      });
      this.#subscription.closed
        .then(() => {
          if (generation === this.#generation && !this.#closed && nc.isClosed()) {
            this.#fail(new SubjectPullError('the NATS connection was closed'));
          }
        })
        .catch(() => undefined);
      const name = `${this.#base}_${generation}`;
      await jsm.consumers.add(stream, {
        name,
        filter_subject: subject,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: this.#next,
        ack_policy: AckPolicy.None,
        mem_storage: true,
        num_replicas: 1,
        inactive_threshold: inactiveMs * 1_000_000,
      });
      if (generation !== this.#generation || this.#closed) {
        jsm.consumers.delete(stream, name).catch(() => false);
        return;
      }
      this.#consumer = name;
      this.#refill();
    } finally {
      if (generation === this.#generation) this.#restarting = false;
    }
  }

  #receive(msg: Msg): void {
    const reply = replyBytes(msg);
    if (reply !== undefined && parseAckSubject(reply, this.#ack)) {
      const { sequence, delivery } = this.#ack;
      if (delivery !== this.#lastDelivery + 1) {
        // A message was lost on the way: read again from the one after the last received.
        this.restart();
        return;
      }
      this.#lastDelivery = delivery;
      this.#next = sequence + 1;
      if (this.#outstanding > 0) this.#outstanding--;
      this.#queue.push({ sequence, data: msg.data });
      this.#notify();
      return;
    }
    if (msg.subject !== this.#inbox) return;
    const status = msg.headers;
    const code = status?.code ?? 0;
    const description = status?.description ?? '';
    switch (code) {
      case 100:
        return;
      case 404:
      case 408:
      case 409: {
        if (/consumer (is )?deleted/i.test(description)) {
          this.restart();
          return;
        }
        if (code === 409 && !/exceeded|max|timeout|leadership/i.test(description)) {
          this.#fail(new SubjectPullError(`JetStream ended the read: ${code} ${description}`));
          return;
        }
        // The pull ended: take out what it did not deliver, then ask again.
        const left = Number(status?.get('Nats-Pending-Messages') ?? '');
        this.#outstanding =
          Number.isSafeInteger(left) && left > 0 ? Math.max(0, this.#outstanding - left) : 0;
        this.#refill();
        return;
      }
      case 503:
        // No responder: the consumer (or JetStream) is not there; make it again.
        this.restart();
        return;
      default:
        this.#fail(new SubjectPullError(`JetStream refused the read: ${code} ${description}`));
    }
  }

  /** Asks for more once what is asked for and waiting is half the window or less. */
  #refill(): void {
    const consumer = this.#consumer;
    if (consumer === undefined || this.#closed) return;
    const { batch, expiresMs, nc, stream } = this.#options;
    const have = this.#outstanding + this.#queue.length - this.#head;
    if (have > batch / 2) return;
    const wanted = batch - have;
    this.#outstanding += wanted;
    try {
      nc.publish(
        `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
        JSON.stringify({ batch: wanted, expires: expiresMs * 1_000_000 }),
        { reply: this.#inbox },
      );
    } catch (error) {
      this.#fail(error);
    }
  }

  #fail(error: unknown): void {
    if (this.#failure === undefined) {
      this.#failure =
        error instanceof Error ? error : new SubjectPullError(`the read failed: ${String(error)}`);
    }
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    if (wake !== undefined) {
      this.#wake = undefined;
      wake();
    }
  }
}
