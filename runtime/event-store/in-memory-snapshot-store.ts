import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import { streamKey } from './in-memory-event-store.js';
import type { StreamRef } from './event-store.js';
import type { Snapshot, SnapshotStore } from './snapshot-store.js';

/** Snapshots in memory, encoded as they would be in a bucket. For tests and the embedded default. */
export class InMemorySnapshotStore implements SnapshotStore {
  readonly #codec: Codec;
  readonly #snapshots = new Map<string, Uint8Array>();

  constructor(codec: Codec = new MsgpackCodec()) {
    this.#codec = codec;
  }

  /** How many snapshots are kept. */
  get size(): number {
    return this.#snapshots.size;
  }

  load(stream: StreamRef): Promise<Snapshot | undefined> {
    const bytes = this.#snapshots.get(streamKey(stream));
    return Promise.resolve(
      bytes === undefined ? undefined : (this.#codec.decode(bytes) as Snapshot),
    );
  }

  save(stream: StreamRef, snapshot: Snapshot): Promise<void> {
    // Bytes of their own, not a slice of Node's shared buffer pool (see InMemoryEventStore).
    this.#snapshots.set(streamKey(stream), new Uint8Array(this.#codec.encode(snapshot)));
    return Promise.resolve();
  }

  /** Replaces a snapshot's bytes, to test what the runtime does with a damaged one. */
  corrupt(stream: StreamRef, bytes: Uint8Array): void {
    this.#snapshots.set(streamKey(stream), bytes);
  }
}
