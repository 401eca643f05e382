import type { StreamRef } from './event-store.js';

/** The state of one aggregate at a version, so activation replays only what came after. */
export interface Snapshot {
  /** {@link AggregateDefinition.fingerprint} of the definition that took it. */
  fingerprint: string;
  /** Version of the aggregate at the snapshot. */
  version: number;
  /** Position (stream sequence) of the last commit it covers. */
  position: number;
  /** The machine's persisted snapshot (`machine.getPersistedSnapshot`). */
  state: unknown;
  /**
   * The aggregate's most recent command ids (at most the supervisor's `recentCommands`, oldest
   * first), each with the position of the commit that holds it, so that a command sent again after
   * the snapshot was taken is still answered with its first result instead of being applied twice.
   * Absent in snapshots written by older versions.
   */
  commands?: [commandId: string, position: number][];
}

/**
 * Where snapshots are kept. A snapshot is an optimisation: losing one only costs a longer replay,
 * and one that cannot be read or does not match the definition is ignored.
 */
export interface SnapshotStore {
  /** The latest snapshot of an aggregate, if any. Throws when it cannot be read. */
  load(stream: StreamRef): Promise<Snapshot | undefined>;
  /** Replaces the aggregate's snapshot. */
  save(stream: StreamRef, snapshot: Snapshot): Promise<void>;
}
