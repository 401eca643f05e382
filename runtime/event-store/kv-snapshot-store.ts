import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import { ConfigError } from '../errors.js';
import { isIdentifier } from '../names.js';
import { DEFAULT_PREFIX, snapshotBucket } from '../nats/subjects.js';
import type { StreamRef } from './event-store.js';
import type { Snapshot, SnapshotStore } from './snapshot-store.js';

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
  readonly #buckets = new Map<string, Promise<KV>>();

  constructor(options: KvSnapshotStoreOptions) {
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (!isIdentifier(prefix)) {
      throw new ConfigError(
        `Snapshot store prefix ${JSON.stringify(prefix)} is not valid: use letters, digits, "_" or "-", starting with a letter.`,
      );
    }
    this.#kvm = new Kvm(options.connection);
    this.#prefix = prefix;
    this.#replicas = options.replicas ?? 1;
    this.#codec = options.codec ?? new MsgpackCodec();
  }

  async load(stream: StreamRef): Promise<Snapshot | undefined> {
    const kv = await this.#bucket(stream.domain);
    const entry = await kv.get(snapshotKey(stream));
    if (entry === null || entry.operation !== 'PUT' || entry.value.length === 0) return undefined;
    const value = this.#codec.decode(entry.value);
    if (typeof value !== 'object' || value === null || !('fingerprint' in value)) {
      throw new Error(`snapshot of ${snapshotKey(stream)} is not a snapshot object`);
    }
    return value as Snapshot;
  }

  async save(stream: StreamRef, snapshot: Snapshot): Promise<void> {
    const kv = await this.#bucket(stream.domain);
    await kv.put(snapshotKey(stream), this.#codec.encode(snapshot));
  }

  /** Writes raw bytes as a snapshot, to test what the runtime does with a damaged one. */
  async corrupt(stream: StreamRef, bytes: Uint8Array): Promise<void> {
    const kv = await this.#bucket(stream.domain);
    await kv.put(snapshotKey(stream), bytes);
  }

  #bucket(domain: string): Promise<KV> {
    let bucket = this.#buckets.get(domain);
    if (bucket === undefined) {
      bucket = this.#kvm.create(snapshotBucket(this.#prefix, domain), {
        history: 1,
        replicas: this.#replicas,
      });
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
