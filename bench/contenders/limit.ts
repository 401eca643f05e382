import { randomBytes } from 'node:crypto';
import { createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { randomCommandId } from '../../runtime/command-id.js';
import { EncodedHeaders } from '../../runtime/nats/encoded-headers.js';
import { poolProtocolLines } from '../../runtime/nats/pooled-protocol-lines.js';
import { leanMessageArgs } from '../../runtime/nats/lean-message-args.js';
import { directPublish, type DirectPublish } from '../../runtime/nats/direct-publish.js';
import { pubAckOf } from '../../runtime/nats/pub-ack.js';
import { requestIdOf } from '../../runtime/nats/reply-pipeline.js';
import { SequenceSlots } from '../../runtime/nats/sequence-slots.js';
import {
  benchProcesses,
  createRawStream,
  startBenchServer,
  type BenchServer,
} from '../bench-server.js';
import type { BankContender } from '../contender.js';
import type { WatchedProcess } from '../process-cpu.js';

interface Waiting {
  subject: string;
  resolve: (seq: number) => void;
  reject: (error: Error) => void;
}

/**
 * Empties an entry that left the waiting map, as jetactor's reply pipeline does (see `release`
 * in runtime/nats/reply-pipeline.ts): a `Map`'s replaced tables keep their entries reachable
 * for the scavenger until a mark-compact, and the limit must not pay for that.
 */
export function forget(entry: { resolve: unknown; reject: unknown }): void {
  entry.resolve = ignore;
  entry.reject = ignore;
}

function ignore(): void {}

/** JetStream's error code for a failed `Nats-Expected-Last-Subject-Sequence` check. */
const WRONG_LAST_SEQUENCE = 10071;

/**
 * Acknowledged appends as lean as they can be written: plain `publish()` with a reply subject
 * under one wildcard acknowledgement subscription (no per-message inbox or timer), the stream
 * sequence of each subject's last acknowledged append remembered, the protocol line of each
 * publish in a slice of Node's buffer pool as on jetactor's connections (`poolProtocolLines`).
 */
export class AckedAppends {
  /** Appends refused because the subject's last sequence was not the expected one. */
  conflicts = 0;
  readonly #nc: NatsConnection;
  readonly #publish: DirectPublish;
  readonly #inbox = createInbox();
  readonly #waiting = new SequenceSlots<Waiting>();
  readonly #lastSequence = new Map<string, number>();

  constructor(nc: NatsConnection) {
    this.#nc = nc;
    // As jetactor's connections write them: the leanest writer has every trick jetactor has.
    poolProtocolLines(nc);
    leanMessageArgs(nc);
    this.#publish = directPublish(nc);
    this.#nc.subscribe(`${this.#inbox}.*`, {
      callback: (error, msg) => {
        if (error === null) this.#onAck(msg);
      },
    });
  }

  /** The sequence of the subject's last append acknowledged here; 0 before the first. */
  lastSequenceOf(subject: string): number {
    return this.#lastSequence.get(subject) ?? 0;
  }

  /** Publishes one message; resolves with its stream sequence once acknowledged. */
  append(subject: string, payload: Uint8Array, headers: EncodedHeaders): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const ackId = this.#waiting.add({ subject, resolve, reject });
      this.#publish(subject, payload, `${this.#inbox}.${ackId}`, headers);
    });
  }

  #onAck(msg: Msg): void {
    const ackId = requestIdOf(msg, this.#inbox.length);
    const waiting = this.#waiting.take(ackId);
    if (waiting === undefined) return;
    const { resolve, reject } = waiting;
    forget(waiting);
    if (msg.headers?.hasError) {
      reject(new Error(`no acknowledgement: ${msg.headers.code} ${msg.headers.description}`));
      return;
    }
    const ack = pubAckOf(msg.data) as {
      seq?: number;
      error?: { err_code?: number; description?: string };
    };
    if (ack.error !== undefined || typeof ack.seq !== 'number') {
      if (ack.error?.err_code === WRONG_LAST_SEQUENCE) this.conflicts += 1;
      reject(new Error(`append refused: ${ack.error?.description ?? 'no sequence'}`));
      return;
    }
    this.#lastSequence.set(waiting.subject, ack.seq);
    resolve(ack.seq);
  }
}

/**
 * The limit R: acknowledged appends as lean as they can be written ({@link AckedAppends}), each
 * message with `Nats-Msg-Id` and `Nats-Expected-Last-Subject-Sequence` (the last sequence this
 * writer saw on the subject), a payload of the size of a jetactor commit. No domain, no state, no
 * decoding beyond the acknowledgement. The headers are encoded as jetactor's appends encode them
 * (`EncodedHeaders`, cheaper than nats.js `headers()`), so the limit stays the leanest writer.
 */
export class LimitContender implements BankContender {
  readonly name: string;
  readonly #bench: BenchServer;
  readonly #payload: Uint8Array;
  readonly #appends: AckedAppends;

  private constructor(name: string, bench: BenchServer, payloadSize: number) {
    this.name = name;
    this.#bench = bench;
    this.#payload = randomBytes(payloadSize);
    this.#appends = new AckedAppends(bench.nc);
  }

  /** Starts a fresh server with a stream `limit` on `limit.>`. */
  static async start(name: string, payloadSize: number): Promise<LimitContender> {
    const bench = await startBenchServer(name);
    await createRawStream(bench.nc, 'limit', 'limit.>');
    return new LimitContender(name, bench, payloadSize);
  }

  /** Nothing to open: the limit has no domain. */
  open(): Promise<void> {
    return Promise.resolve();
  }

  deposit(id: string): Promise<number> {
    const subject = `limit.${id}`;
    const h = new EncodedHeaders([
      ['Nats-Msg-Id', randomCommandId()],
      ['Nats-Expected-Last-Subject-Sequence', String(this.#appends.lastSequenceOf(subject))],
    ]);
    return this.#appends.append(subject, this.#payload, h);
  }

  processes(): WatchedProcess[] {
    return benchProcesses(this.#bench);
  }

  takeCounters(): Record<string, number> {
    const counters = { conflicts: this.#appends.conflicts };
    this.#appends.conflicts = 0;
    return counters;
  }

  async close(): Promise<void> {
    await this.#bench.close();
  }
}
