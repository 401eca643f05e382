import { StorageType } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { KvPipeline, allowsDirect } from '../nats/kv-pipeline.js';
import { DocumentBatch } from './document-batch.js';
import type { DocumentReader, DocumentWriter } from './read-model.js';
import {
  fenced,
  readModelFailed,
  runAll,
  type ApplyOptions,
  type ProjectionUnit,
  type ReadModelStore,
  type RunHandler,
} from './read-model-store.js';

/** Options of {@link KvReadModelStore}. */
export interface KvReadModelStoreOptions<D> {
  /** An open connection; the store never closes it. */
  connection: NatsConnection;
  /** The bucket, `<prefix>_rm_<domain>_<projection>`. */
  bucket: string;
  /** Identifies the projection's version: a read model with another one is dropped on open. */
  fingerprint: string;
  /** Schema checked on every put. */
  document?: z.ZodType<D>;
  /** Bucket replicas; default 1. */
  replicas?: number;
  /**
   * Bytes of documents (JSON text) kept in memory while this store writes the read model, so a
   * handler's `get` of a document the store wrote or read before costs no round trip; 0 keeps
   * none. Default 8 MiB.
   */
  cacheBytes?: number;
}

/** A batch recorded before its writes are made, so a crash in the middle is finished on open. */
interface Redo {
  /** The checkpoint once the writes are made. */
  position: number;
  /** Replay marks once the writes are made. */
  marks: number[];
  /** The writes ([document key, JSON text or null for a delete]), when they fit in the record. */
  writes?: [string, string | null][];
  /** Otherwise, in how many `redo.<n>` keys they are. */
  chunks?: number;
}

/** The value of the `checkpoint` key. */
interface CheckpointRecord {
  /** Position (stream sequence) of the last commit applied. */
  position: number;
  /** The projection version that wrote the read model. */
  fingerprint: string;
  /** Ids of dead letters replayed out of order (the last 256), so a replay applies once. */
  marks: number[];
  /** A batch whose writes may not all be made yet. */
  redo?: Redo;
}

const CHECKPOINT_KEY = 'checkpoint';
const DOCUMENT_PREFIX = 'd.';
const plainKey = /^[A-Za-z0-9_-]+$/;
const MAX_MARKS = 256;
const WRITE_CONCURRENCY = 1024;
const DEFAULT_CACHE_BYTES = 8 * 1024 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A document read model in a NATS KV bucket (file storage, one value per key). Documents are
 * JSON under `d.<key>` (keys with other characters than letters, digits, `_` and `-` are
 * base64url with a `=` prefix); the checkpoint is the `checkpoint` key.
 *
 * KV writes one key at a time, so a batch is made atomic in effect with a redo record: the new
 * checkpoint and every write of the batch are first put in the `checkpoint` key (with a
 * revision check, so a second writer is fenced off), then the documents are written, then the
 * checkpoint is written again without the redo. A crash between the two checkpoint writes leaves
 * the redo behind; opening the store makes the same writes again (they are absolute values, so
 * making them twice changes nothing) and only then reads events again. An event is therefore
 * never applied twice, and handlers never see half a batch. Writes too big for one record go in
 * `redo.<n>` keys first.
 *
 * While it writes, the store keeps the documents it last wrote or read (least recently used
 * dropped first): only the node holding the checkpoint writes, so what it wrote is what the
 * bucket holds. The cache is emptied when the store opens, is dropped, fails to write, or finds
 * the checkpoint moved (another writer); a writer that lost its lease without knowing is fenced
 * by the checkpoint's revision before it writes a document.
 */
export class KvReadModelStore<D = unknown> implements ReadModelStore<
  { documents: DocumentWriter<D> },
  DocumentReader<D>
> {
  readonly kind = 'kv' as const;
  readonly location: string;
  readonly #nc: NatsConnection;
  readonly #kvm: Kvm;
  readonly #options: KvReadModelStoreOptions<D>;
  #kv: Promise<KV> | undefined;
  /** Whether the bucket answers direct gets (then documents are read through the pipeline). */
  #direct: Promise<boolean> | undefined;
  #record: CheckpointRecord | undefined;
  #revision = 0;
  /** Document key → JSON text as stored, or null when there is none; least recently used first. */
  readonly #cache = new Map<string, string | null>();
  #cacheBytes = 0;
  readonly #cacheLimit: number;
  /** Document gets and puts: one reply subscription, no timer or error object per request. */
  readonly #pipeline: KvPipeline;

  constructor(options: KvReadModelStoreOptions<D>) {
    this.#nc = options.connection;
    this.#kvm = new Kvm(options.connection);
    this.#options = options;
    this.#cacheLimit = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
    this.#pipeline = new KvPipeline(options.connection);
    this.location = `KV bucket ${options.bucket}`;
  }

  async open(onReset?: (why: string) => void): Promise<number> {
    this.#forget();
    try {
      let { record, revision } = await this.#readCheckpoint();
      if (record !== undefined && record.fingerprint !== this.#options.fingerprint) {
        onReset?.(
          `the read model was built by projection version ${record.fingerprint}, this is ${this.#options.fingerprint}`,
        );
        await this.drop();
        ({ record, revision } = await this.#readCheckpoint());
      }
      const kv = await this.#bucket();
      if (record === undefined) {
        record = { position: 0, fingerprint: this.#options.fingerprint, marks: [] };
        revision = await kv.create(CHECKPOINT_KEY, encode(record));
      }
      this.#record = record;
      this.#revision = revision;
      if (record.redo !== undefined) await this.#finish(kv, record.redo);
      return this.#record.position;
    } catch (error) {
      throw readModelFailed(this.location, 'opening', error);
    }
  }

  async apply(
    units: readonly ProjectionUnit[],
    run: RunHandler<{ documents: DocumentWriter<D> }>,
    options: ApplyOptions,
  ): Promise<'applied' | 'already'> {
    const record = this.#record;
    if (record === undefined || record.redo !== undefined) {
      throw readModelFailed(this.location, 'writing', new Error('the store is not open'));
    }
    if (record.position !== options.expected) {
      throw fenced(this.location, options.expected, record.position);
    }
    if (options.mark !== undefined && record.marks.includes(options.mark)) return 'already';
    let kv: KV;
    try {
      kv = await this.#bucket();
    } catch (error) {
      throw readModelFailed(this.location, 'opening the bucket', error);
    }
    const batch = new DocumentBatch<D>((key) => this.#cachedGet(kv, key), this.#options.document);
    await runAll(units, run, { documents: batch });
    const marks =
      options.mark === undefined ? record.marks : [...record.marks, options.mark].slice(-MAX_MARKS);
    try {
      if (batch.writes.size === 0) {
        await this.#write(kv, { ...record, position: options.to, marks, redo: undefined });
        return 'applied';
      }
      const writes = [...batch.writes];
      const redo: Redo = { position: options.to, marks };
      const limit = Math.max(16_384, Math.floor((this.#nc.info?.max_payload ?? 1_048_576) / 2));
      if (batch.bytes < limit) {
        redo.writes = writes;
      } else {
        redo.chunks = await this.#putChunks(kv, writes, limit);
      }
      await this.#write(kv, { ...record, redo });
      await this.#finish(kv, redo, writes);
      for (const [key, text] of writes) this.#remember(key, text);
      return 'applied';
    } catch (error) {
      this.#forget();
      throw readModelFailed(this.location, 'writing a batch', error);
    }
  }

  async checkpoint(): Promise<number> {
    try {
      return (await this.#readCheckpoint()).record?.position ?? 0;
    } catch (error) {
      throw readModelFailed(this.location, 'reading the checkpoint', error);
    }
  }

  reader(): DocumentReader<D> {
    const read = async <T>(what: string, fn: (kv: KV) => Promise<T>): Promise<T> => {
      try {
        return await fn(await this.#bucket());
      } catch (error) {
        throw readModelFailed(this.location, what, error);
      }
    };
    const get = (kv: KV, key: string) =>
      this.#get(kv, key).then((text) => (text === undefined ? undefined : (JSON.parse(text) as D)));
    const keys = async (kv: KV) => {
      const found: string[] = [];
      for await (const key of await kv.keys(`${DOCUMENT_PREFIX}>`)) found.push(decodeKey(key));
      return found;
    };
    return {
      get: (key) => read(`reading document ${JSON.stringify(key)}`, (kv) => get(kv, key)),
      keys: () => read('listing keys', keys),
      list: () =>
        read('listing documents', async (kv) => {
          const list: { key: string; document: D }[] = [];
          for (const key of await keys(kv)) {
            const document = await get(kv, key);
            if (document !== undefined) list.push({ key, document });
          }
          return list;
        }),
    };
  }

  async drop(): Promise<void> {
    try {
      const kv = await this.#bucket();
      await kv.destroy();
    } catch (error) {
      if (!/stream not found/i.test(String(error))) {
        throw readModelFailed(this.location, 'dropping the bucket', error);
      }
    }
    this.#kv = undefined;
    this.#direct = undefined;
    this.#record = undefined;
    this.#revision = 0;
    this.#forget();
  }

  close(): Promise<void> {
    this.#pipeline.close('the read model store was closed');
    return Promise.resolve();
  }

  #bucket(): Promise<KV> {
    if (this.#kv === undefined) {
      const kv = this.#kvm.create(this.#options.bucket, {
        history: 1,
        replicas: this.#options.replicas ?? 1,
        storage: StorageType.File,
      });
      kv.catch(() => {
        if (this.#kv === kv) this.#kv = undefined;
      });
      this.#kv = kv;
    }
    return this.#kv;
  }

  async #readCheckpoint(): Promise<{ record: CheckpointRecord | undefined; revision: number }> {
    const kv = await this.#bucket();
    const entry = await kv.get(CHECKPOINT_KEY);
    if (entry === null || entry.operation !== 'PUT') return { record: undefined, revision: 0 };
    return { record: decodeRecord(entry, this.location), revision: entry.revision };
  }

  /** A document's JSON text: from the cache, else read from the bucket and remembered. */
  async #cachedGet(kv: KV, key: string): Promise<string | undefined> {
    const cached = this.#cache.get(key);
    if (cached !== undefined) {
      this.#cache.delete(key);
      this.#cache.set(key, cached);
      return cached ?? undefined;
    }
    const text = await this.#get(kv, key);
    this.#remember(key, text ?? null);
    return text;
  }

  #remember(key: string, text: string | null): void {
    if (this.#cacheLimit === 0) return;
    const before = this.#cache.get(key);
    if (before !== undefined) {
      this.#cacheBytes -= key.length + (before?.length ?? 0);
      this.#cache.delete(key);
    }
    this.#cache.set(key, text);
    this.#cacheBytes += key.length + (text?.length ?? 0);
    for (const [oldest, value] of this.#cache) {
      if (this.#cacheBytes <= this.#cacheLimit) break;
      this.#cache.delete(oldest);
      this.#cacheBytes -= oldest.length + (value?.length ?? 0);
    }
  }

  #forget(): void {
    this.#cache.clear();
    this.#cacheBytes = 0;
  }

  async #get(kv: KV, key: string): Promise<string | undefined> {
    this.#direct ??= allowsDirect(kv).catch((error: unknown) => {
      this.#direct = undefined;
      throw error;
    });
    if (await this.#direct) {
      const bytes = await this.#pipeline.get(this.#options.bucket, encodeKey(key));
      return bytes === undefined ? undefined : decoder.decode(bytes);
    }
    const entry = await kv.get(encodeKey(key));
    if (entry === null || entry.operation !== 'PUT') return undefined;
    return decoder.decode(entry.value);
  }

  /** Writes the checkpoint record, fenced by the revision this store last wrote or read. */
  async #write(kv: KV, record: CheckpointRecord): Promise<void> {
    const clean = record.redo === undefined ? omitRedo(record) : record;
    try {
      this.#revision = await kv.update(CHECKPOINT_KEY, encode(clean), this.#revision);
    } catch (error) {
      const now = await this.#readCheckpoint().catch(() => undefined);
      if (now !== undefined && now.revision !== this.#revision) {
        this.#record = undefined;
        throw fenced(
          this.location,
          record.redo?.position ?? record.position,
          now.record?.position ?? 0,
        );
      }
      throw error;
    }
    this.#record = clean;
  }

  async #putChunks(kv: KV, writes: [string, string | null][], limit: number): Promise<number> {
    let chunk: [string, string | null][] = [];
    let size = 0;
    let count = 0;
    for (const write of writes) {
      const bytes = write[0].length + (write[1]?.length ?? 0) + 8;
      if (chunk.length > 0 && size + bytes > limit) {
        await kv.put(`redo.${count++}`, encoder.encode(JSON.stringify(chunk)));
        chunk = [];
        size = 0;
      }
      chunk.push(write);
      size += bytes;
    }
    if (chunk.length > 0) await kv.put(`redo.${count++}`, encoder.encode(JSON.stringify(chunk)));
    return count;
  }

  /** Makes a recorded batch's writes, then writes the checkpoint without the redo. */
  async #finish(kv: KV, redo: Redo, known?: [string, string | null][]): Promise<void> {
    let writes = known ?? redo.writes;
    if (writes === undefined) {
      writes = [];
      for (let n = 0; n < (redo.chunks ?? 0); n++) {
        const entry = await kv.get(`redo.${n}`);
        if (entry === null || entry.operation !== 'PUT') {
          throw new Error(`the redo record names ${redo.chunks} chunks, but redo.${n} is missing`);
        }
        writes.push(...(JSON.parse(decoder.decode(entry.value)) as [string, string | null][]));
      }
    }
    for (let i = 0; i < writes.length; i += WRITE_CONCURRENCY) {
      await Promise.all(
        writes
          .slice(i, i + WRITE_CONCURRENCY)
          .map(([key, text]) =>
            text === null
              ? kv.delete(encodeKey(key))
              : this.#pipeline.putText(this.#options.bucket, encodeKey(key), text),
          ),
      );
    }
    const record = this.#record!;
    await this.#write(kv, {
      position: redo.position,
      fingerprint: record.fingerprint,
      marks: redo.marks,
    });
  }
}

function encode(record: CheckpointRecord): Uint8Array {
  return encoder.encode(JSON.stringify(record));
}

function omitRedo(record: CheckpointRecord): CheckpointRecord {
  return { position: record.position, fingerprint: record.fingerprint, marks: record.marks };
}

function decodeRecord(entry: KvEntry, location: string): CheckpointRecord {
  let value: Partial<CheckpointRecord> | undefined;
  try {
    value = JSON.parse(decoder.decode(entry.value)) as Partial<CheckpointRecord>;
  } catch {
    value = undefined;
  }
  if (
    typeof value?.position !== 'number' ||
    typeof value.fingerprint !== 'string' ||
    !Array.isArray(value.marks)
  ) {
    throw new Error(
      `${location}: the checkpoint key does not hold a checkpoint record; delete the bucket (jetactor projection rebuild) to build the read model again`,
    );
  }
  return value as CheckpointRecord;
}

/** The KV key of a document key. */
export function encodeKey(key: string): string {
  return `${DOCUMENT_PREFIX}${plainKey.test(key) ? key : `=${Buffer.from(key, 'utf8').toString('base64url')}`}`;
}

function decodeKey(kvKey: string): string {
  const token = kvKey.slice(DOCUMENT_PREFIX.length);
  return token.startsWith('=') ? Buffer.from(token.slice(1), 'base64url').toString('utf8') : token;
}
