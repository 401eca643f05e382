import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import { ConfigError } from '../errors.js';
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

  constructor(options: KvSnapshotStoreOptions) {
    const known = ['connection', 'prefix', 'replicas', 'codec'];
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
    this.#kvm = new Kvm(options.connection);
    this.#pipeline = new KvPipeline(options.connection);
    this.#prefix = prefix;
    this.#replicas = options.replicas ?? 1;
    this.#codec = options.codec ?? new MsgpackCodec();
  }

  async load(stream: StreamRef): Promise<Snapshot | undefined> {
    const { kv, direct } = await this.#bucket(stream.domain);
    const key = snapshotKey(stream);
    let bytes: Uint8Array | undefined;
    if (direct) {
      bytes = await this.#pipeline.get(snapshotBucket(this.#prefix, stream.domain), key);
    } else {
      const entry = await kv.get(key);
      bytes = entry === null || entry.operation !== 'PUT' ? undefined : entry.value;
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
