import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { systemClock, type Clock } from '../clock.js';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import { ConfigError, describeError } from '../errors.js';
import { isIdentifier } from '../names.js';
import { KvPipeline, allowsDirect } from '../nats/kv-pipeline.js';
import { DEFAULT_PREFIX, snapshotBucket } from '../nats/subjects.js';
import type { StreamRef } from './event-store.js';
import type { Snapshot, SnapshotStore } from './snapshot-store.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';

/** Options of {@link KvSnapshotStore}. */
export interface KvSnapshotStoreOptions {
  /** An open connection; the store does not close it. */
  connection: NatsConnection;
  /** Same prefix as the event store; buckets are `<prefix>_snapshots_<domain>`. Default `jetactor`. */
  prefix?: string;
  /** Bucket replicas, default 1. */
  replicas?: number;
  /** Codec of snapshots; default msgpack. */
  codec?: Codec;
  /**
   * How long a snapshot read or write waits for the server, default 1000 ms. A snapshot only
   * saves replay time, so an actor waits less for it than for its events.
   */
  timeoutMs?: number;
  /**
   * After a read of a domain's bucket failed, how long further reads of that domain are skipped
   * (the actor replays from the stream) before the bucket is asked again. Default 5000 ms.
   */
  retryAfterMs?: number;
  /** Clock of the skip window; default the system clock. */
  clock?: Clock;
}

/**
 * Snapshots in one JetStream key-value bucket per domain (file storage, one value per key), keyed
 * `<Aggregate>.<id>`. Ids that are not valid key characters are written base64url with a `=`
 * prefix.
 */
export class KvSnapshotStore implements SnapshotStore {
  readonly #kvm: Kvm;
  readonly #prefix: string;
  readonly #replicas: number;
  readonly #codec: Codec;
  readonly #buckets = new Map<string, Promise<{ kv: KV; direct: boolean }>>();
  readonly #pipeline: KvPipeline;
  readonly #timeoutMs: number;
  readonly #retryAfterMs: number;
  readonly #clock: Clock;
  /** Per domain, the time until which reads are skipped after one failed. */
  readonly #skipUntil = new Map<string, number>();

  constructor(options: KvSnapshotStoreOptions) {
    const known = [
      'connection',
      'prefix',
      'replicas',
      'codec',
      'timeoutMs',
      'retryAfterMs',
      'clock',
    ];
    const unknown = unknownOptions(options, known);
    if (unknown.length > 0) {
      throw new ConfigError(`Snapshot store: ${describeUnknownOptions(unknown, known)}.`, {
        details: { unknown },
      });
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (!isIdentifier(prefix)) {
      throw new ConfigError(
        `Snapshot store prefix ${JSON.stringify(prefix)} is not valid: use letters, digits, "_" or "-", starting with a letter.`,
      );
    }
    for (const name of ['timeoutMs', 'retryAfterMs'] as const) {
      const value = options[name];
      if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
        throw new ConfigError(
          `Snapshot store ${name} ${JSON.stringify(value)} is not valid: give a whole number of milliseconds, 1 or more.`,
          { details: { [name]: value } },
        );
      }
    }
    this.#timeoutMs = options.timeoutMs ?? 1_000;
    this.#retryAfterMs = options.retryAfterMs ?? 5_000;
    this.#clock = options.clock ?? systemClock;
    this.#kvm = new Kvm(options.connection);
    this.#pipeline = new KvPipeline(options.connection, this.#timeoutMs);
    this.#prefix = prefix;
    this.#replicas = options.replicas ?? 1;
    this.#codec = options.codec ?? new MsgpackCodec();
  }

  /**
   * The aggregate's snapshot, undefined when it has none. Undefined too, without asking, for
   * `retryAfterMs` after a read of the same domain failed: the actor replays from its stream
   * rather than wait on a bucket whose server is down.
   */
  async load(stream: StreamRef): Promise<Snapshot | undefined> {
    const skipUntil = this.#skipUntil.get(stream.domain);
    if (skipUntil !== undefined) {
      if (this.#clock.now() < skipUntil) return undefined;
      this.#skipUntil.delete(stream.domain);
    }
    const key = snapshotKey(stream);
    let bytes: Uint8Array | undefined;
    try {
      const { kv, direct } = await this.#bucket(stream.domain);
      if (direct) {
        bytes = await this.#pipeline.get(snapshotBucket(this.#prefix, stream.domain), key);
      } else {
        const entry = await kv.get(key);
        bytes = entry === null || entry.operation !== 'PUT' ? undefined : entry.value;
      }
    } catch (error) {
      this.#skipUntil.set(stream.domain, this.#clock.now() + this.#retryAfterMs);
      throw new Error(
        `the snapshot bucket ${snapshotBucket(this.#prefix, stream.domain)} did not answer for ${key} (${describeError(error)}); reads of domain ${stream.domain} skip snapshots for ${this.#retryAfterMs} ms`,
        { cause: error },
      );
    }
    if (bytes === undefined || bytes.length === 0) return undefined;
    const value = this.#codec.decode(bytes);
    if (typeof value !== 'object' || value === null || !('fingerprint' in value)) {
      throw new Error(`snapshot of ${snapshotKey(stream)} is not a snapshot object`);
    }
    return value as Snapshot;
  }

  async save(stream: StreamRef, snapshot: Snapshot): Promise<void> {
    await this.#bucket(stream.domain);
    await this.#pipeline.put(
      snapshotBucket(this.#prefix, stream.domain),
      snapshotKey(stream),
      this.#codec.encode(snapshot),
    );
  }

  /** Writes raw bytes as a snapshot, to test what the runtime does with a damaged one. */
  async corrupt(stream: StreamRef, bytes: Uint8Array): Promise<void> {
    const { kv } = await this.#bucket(stream.domain);
    await kv.put(snapshotKey(stream), bytes);
  }

  #bucket(domain: string): Promise<{ kv: KV; direct: boolean }> {
    let bucket = this.#buckets.get(domain);
    if (bucket === undefined) {
      bucket = this.#kvm
        .create(snapshotBucket(this.#prefix, domain), { history: 1, replicas: this.#replicas })
        .then(async (kv) => ({ kv, direct: await allowsDirect(kv) }));
      bucket.catch(() => this.#buckets.delete(domain));
      this.#buckets.set(domain, bucket);
    }
    return bucket;
  }
}

const plainKey = /^[A-Za-z0-9_-]+$/;

/** The key of an aggregate's snapshot: `<Aggregate>.<id>`, the id encoded when needed. */
export function snapshotKey(stream: StreamRef): string {
  const id = plainKey.test(stream.id)
    ? stream.id
    : `=${Buffer.from(stream.id, 'utf8').toString('base64url')}`;
  return `${stream.aggregate}.${id}`;
}
