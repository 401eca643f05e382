import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { StorageType, jetstream } from '@nats-io/jetstream';
import { Kvm, type KV, type KvEntry, type KvStatus, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { ConfigError, InfrastructureError, JetactorError, describeError } from '../errors.js';
import { isPermissionViolation, permissionDenied } from '../nats/permission-denied.js';
import { createLogger, type Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import { DEFAULT_PREFIX, leaseBucket } from '../nats/subjects.js';

/** Partitions per domain unless {@link PartitionLeasesOptions.partitions} says otherwise. */
export const DEFAULT_PARTITIONS = 64;

/** Lease time unless {@link PartitionLeasesOptions.leaseMs} says otherwise. */
export const DEFAULT_LEASE_MS = 5_000;

/** Node ids become KV key tokens: `node.<nodeId>`. */
const nodeIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

const optionsSchema = z
  .object({
    connection: z.custom<NatsConnection>(
      (value) => typeof value === 'object' && value !== null && 'publish' in value,
      { message: 'expected a NatsConnection from @nats-io/transport-node connect()' },
    ),
    domain: z.string().refine(isIdentifier, {
      message: 'must be a domain name: letters, digits, "_" or "-", starting with a letter',
    }),
    prefix: z
      .string()
      .refine(isIdentifier, {
        message: 'must be letters, digits, "_" or "-" (it is part of the bucket name)',
      })
      .default(DEFAULT_PREFIX),
    nodeId: z
      .string()
      .regex(nodeIdPattern, {
        message: 'must be 1 to 64 letters, digits, "_" or "-" (it is a KV key token)',
      })
      .default(defaultNodeId),
    partitions: z.number().int().min(1).max(1024).default(DEFAULT_PARTITIONS),
    leaseMs: z.number().int().min(250).max(600_000).default(DEFAULT_LEASE_MS),
    clock: z
      .custom<Clock>(
        (value) =>
          typeof value === 'object' &&
          value !== null &&
          typeof (value as Clock).now === 'function' &&
          typeof (value as Clock).setTimeout === 'function',
        { message: 'expected a Clock (now, setTimeout, clearTimeout)' },
      )
      .default(systemClock),
    logger: z.custom<Logger>().optional(),
    onAcquired: z
      .custom<(event: PartitionAcquired) => void>((value) => typeof value === 'function', {
        message: 'expected a function',
      })
      .optional(),
    onLost: z
      .custom<(event: PartitionLost) => void>((value) => typeof value === 'function', {
        message: 'expected a function',
      })
      .optional(),
  })
  .strict();

/** Options of {@link PartitionLeases}. Every node hosting a domain must use the same `partitions` and `leaseMs`. */
export interface PartitionLeasesOptions {
  /** An open connection (`connect()` from `@nats-io/transport-node`); the leases do not close it. */
  connection: NatsConnection;
  /** The domain whose aggregate-id space is partitioned; the bucket is `<prefix>_leases_<domain>`. */
  domain: string;
  /** First token of bucket names (letters, digits, `_`, `-`); default `jetactor`. */
  prefix?: string;
  /**
   * This node's id, unique among the nodes hosting the domain: 1 to 64 letters, digits, `_` or
   * `-`. Default `<host>-<pid>-<random>`.
   */
  nodeId?: string;
  /** Partitions of the aggregate-id space, 1 to 1024; default 64. */
  partitions?: number;
  /**
   * How long a lease lives without renewal, in milliseconds (250 to 600 000; default 5 000). It is
   * also the bucket's max age, so a dead node's partitions are taken over about this long after
   * its last renewal. Leases are renewed every third of it.
   */
  leaseMs?: number;
  /** Clock of every timer (renewal, expiry, retries); default the system clock. */
  clock?: Clock;
  /** Logger; default a quiet pino logger. Lifecycle at info, each acquisition and loss at debug. */
  logger?: Logger;
  /** Called when this node acquires a partition; same as `on('acquired', fn)`. */
  onAcquired?: (event: PartitionAcquired) => void;
  /** Called, synchronously and first, when this node stops owning a partition; same as `on('lost', fn)`. */
  onLost?: (event: PartitionLost) => void;
}

type ResolvedOptions = z.output<typeof optionsSchema>;

/** This node now owns a partition. */
export interface PartitionAcquired {
  /** The partition, `0 ≤ partition < partitions`. */
  partition: number;
  /** The fencing token of the lease (see {@link PartitionLeases.tokenOf}). */
  token: number;
}

/**
 * Why a node stopped owning a partition:
 * - `released`: handed over to rebalance (another node is below its fair share);
 * - `stopped`: {@link PartitionLeases.stop} released it;
 * - `expired`: no renewal was acknowledged within the lease time, so the lease may have expired;
 * - `refused`: the server refused the renewal (the lease expired, or another node holds it).
 */
export type PartitionLossReason = 'released' | 'stopped' | 'expired' | 'refused';

/** This node no longer owns a partition; it must stop serving it at once. */
export interface PartitionLost {
  /** The partition. */
  partition: number;
  /** The fencing token the node held, no longer current. */
  token: number;
  /** Why the lease ended. */
  reason: PartitionLossReason;
}

/** Listeners of {@link PartitionLeases.on}. */
export interface PartitionLeaseEvents {
  /** This node acquired a partition. */
  acquired: (event: PartitionAcquired) => void;
  /** This node lost or released a partition; emitted before anything else happens. */
  lost: (event: PartitionLost) => void;
}

/** Counters of {@link PartitionLeases.stats}. */
export interface PartitionLeaseStats {
  /** Partitions this node owns now. */
  owned: number;
  /** Live nodes, this one included. */
  liveNodes: number;
  /** Partitions acquired since start. */
  acquisitions: number;
  /** Partitions handed over on purpose (rebalance and stop). */
  releases: number;
  /** Partitions lost without handing them over (lease expired or renewal refused). */
  losses: number;
  /** Renewals (of a lease or of this node's membership) that failed or timed out. */
  renewFailures: number;
}

/** A lease this node holds. */
interface Lease {
  readonly partition: number;
  readonly key: string;
  readonly token: number;
  /** Revision of the last write of the key that this node knows of. */
  revision: number;
  /** Clock time when the lease may expire: send time of the last acknowledged write + leaseMs. */
  deadline: number;
  renewing: boolean;
}

/** What the watch last showed for a key. */
interface Seen {
  readonly revision: number;
  readonly put: boolean;
  readonly node: string | undefined;
  readonly instance: string | undefined;
  readonly token: number | undefined;
  readonly partitions: number | undefined;
  /** Local clock time of receipt. */
  readonly seenAt: number;
}

interface LeaseValue {
  node: string;
  instance: string;
  token?: number;
  partitions?: number;
}

type State = 'idle' | 'starting' | 'running' | 'stopping';

const partitionKeyPrefix = 'partition.';
const nodeKeyPrefix = 'node.';

/**
 * Ownership of a domain's partitions by the nodes hosting it, through leases in a NATS KV bucket.
 *
 * The aggregate-id space is cut into `partitions` ({@link partitionOf}); each partition is owned by
 * at most one node at a time. A lease is the key `partition.<n>` of the bucket
 * `<prefix>_leases_<domain>`: acquired with `kv.create` (fails when the key exists), renewed every
 * `leaseMs / 3` with `kv.update` on the revision the node last wrote, released with a delete on
 * that revision. A node that cannot renew in time stops serving the partition at once, before the
 * server may let anyone else take it. The revision at which a lease was acquired is its fencing
 * token.
 *
 * Each node also keeps `node.<nodeId>` alive; from a watch of the bucket every node knows the live
 * nodes and the owner of every partition, and aims at its fair share: a node above its share hands
 * the extras over, a node below it takes free ones.
 *
 * Ownership is an optimisation (warm actors, few conflicts). Correctness never depends on it: the
 * stream's expected-sequence check refuses a commit decided on stale state, whoever sends it.
 *
 * @example
 * const leases = new PartitionLeases({ connection: nc, domain: 'bank' });
 * leases.on('lost', ({ partition }) => passivateActorsOf(partition));
 * await leases.start();
 * if (leases.owns(partitionOf('Account', 'acc-1'))) { … }
 */
export class PartitionLeases {
  readonly #options: ResolvedOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #bucket: string;
  readonly #renewMs: number;
  readonly #opTimeoutMs: number;
  readonly #retryMs: number;
  readonly #listeners: { [E in keyof PartitionLeaseEvents]: Set<PartitionLeaseEvents[E]> } = {
    acquired: new Set(),
    lost: new Set(),
  };
  readonly #held = new Map<number, Lease>();
  readonly #pending = new Set<number>();
  readonly #deleting = new Set<string>();
  /** Partitions whose acquisition failed on a lease not yet removed, with when to try again. */
  readonly #retryAt = new Map<number, number>();
  readonly #view = new Map<string, Seen>();
  readonly #inflight = new Set<Promise<unknown>>();
  readonly #warned = new Set<string>();
  #state: State = 'idle';
  #instance = '';
  #kv: KV | undefined;
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #member: { revision: number; renewing: boolean } | undefined;
  #viewSince = 0;
  #seenRevision = 0;
  #onSeen: (() => void) | undefined;
  #holdUntil = 0;
  #renewTimer: TimerHandle | undefined;
  #deadlineTimer: TimerHandle | undefined;
  /**
   * No held lease ends before this (renewals only move deadlines later): {@link #expire}, asked
   * on every request, looks at the leases only from then on.
   */
  #earliestDeadline = Infinity;
  #wakeTimer: { handle: TimerHandle; at: number } | undefined;
  #rebalanceQueued = false;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #acquisitions = 0;
  #releases = 0;
  #losses = 0;
  #renewFailures = 0;

  /** @throws ConfigError `INVALID_OPTIONS` naming each bad option. */
  constructor(options: PartitionLeasesOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid partition lease options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    this.#options = Object.freeze(parsed.data);
    this.#clock = this.#options.clock;
    this.#bucket = leaseBucket(this.#options.prefix, this.#options.domain);
    this.#logger = (this.#options.logger ?? createLogger()).child({
      component: 'partition-leases',
      bucket: this.#bucket,
      node: this.#options.nodeId,
    });
    const leaseMs = this.#options.leaseMs;
    this.#renewMs = Math.floor(leaseMs / 3);
    // Below the renewal interval, so a renewal that hangs is given up before the next one is due.
    this.#opTimeoutMs = Math.max(100, Math.floor(leaseMs / 4));
    this.#retryMs = Math.max(20, Math.floor(leaseMs / 20));
    if (this.#options.onAcquired) this.#listeners.acquired.add(this.#options.onAcquired);
    if (this.#options.onLost) this.#listeners.lost.add(this.#options.onLost);
  }

  /** This node's id. */
  get nodeId(): string {
    return this.#options.nodeId;
  }

  /** Number of partitions of the domain. */
  get partitions(): number {
    return this.#options.partitions;
  }

  /** Lease time in milliseconds. */
  get leaseMs(): number {
    return this.#options.leaseMs;
  }

  /** Name of the KV bucket holding the leases. */
  get bucket(): string {
    return this.#bucket;
  }

  /** The partition of an aggregate instance, with this domain's partition count. */
  partitionOf(aggregate: string, id: string): number {
    return partitionOf(aggregate, id, this.#options.partitions);
  }

  /**
   * Creates or checks the bucket (R1, file storage, max age = lease time), starts watching it,
   * registers this node, then takes its share of partitions in the background (`acquired` events
   * follow). Calling it again while started does nothing; after {@link PartitionLeases.stop} it
   * starts afresh.
   *
   * @throws ConfigError `LEASE_CONFIG_CONFLICT` when the bucket exists with another lease time or
   *   layout, or a live node uses another partition count.
   * @throws InfrastructureError `LEASES_UNAVAILABLE` when JetStream does not answer.
   * @throws ConfigError `PERMISSION_DENIED` when the connection's user may not use the bucket.
   */
  start(): Promise<void> {
    if (this.#starting === undefined) {
      const starting = (this.#stopping ?? Promise.resolve()).then(() => this.#start());
      starting.catch(() => {
        if (this.#starting === starting) this.#starting = undefined;
      });
      this.#starting = starting;
    }
    return this.#starting;
  }

  /**
   * Stops renewing, emits `lost` (reason `stopped`) for every owned partition, and deletes this
   * node's keys so the other nodes take over at once. Never throws; keys it cannot delete (server
   * gone) expire after the lease time.
   */
  stop(): Promise<void> {
    if (this.#stopping === undefined) {
      const starting = this.#starting;
      this.#stopping = (starting ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => this.#stop())
        .finally(() => {
          this.#stopping = undefined;
        });
      this.#starting = undefined;
    }
    return this.#stopping;
  }

  /**
   * Whether this node owns the partition now. A lease whose time is up is dropped first (emitting
   * `lost`), so this never answers true for a lease that may have expired on the server.
   */
  owns(partition: number): boolean {
    this.#expire();
    return this.#held.has(partition);
  }

  /**
   * The node that owns the partition as far as this node knows (itself included), or undefined
   * when no node holds a live lease on it: then any node may serve it.
   */
  ownerOf(partition: number): string | undefined {
    this.#expire();
    if (this.#held.has(partition)) return this.#options.nodeId;
    return this.#otherOwner(partition, this.#clock.now())?.node;
  }

  /**
   * The fencing token of the partition's current lease as far as this node knows, or undefined
   * when it has no owner. The token is the KV revision at which the lease was acquired: renewals
   * keep it, every new acquisition gets a larger one. Forward it with a command; the owner checks
   * it with {@link PartitionLeases.isCurrent}.
   */
  tokenOf(partition: number): number | undefined {
    this.#expire();
    const lease = this.#held.get(partition);
    if (lease !== undefined) return lease.token;
    return this.#otherOwner(partition, this.#clock.now())?.token;
  }

  /**
   * True when this node owns the partition under exactly this token. A command forwarded with a
   * token from an earlier lease (this node's or another's) is refused.
   */
  isCurrent(partition: number, token: number): boolean {
    this.#expire();
    return this.#held.get(partition)?.token === token;
  }

  /** The partitions this node owns, ascending. */
  owned(): number[] {
    this.#expire();
    return [...this.#held.keys()].sort((a, b) => a - b);
  }

  /** Ids of the live nodes (this one once registered), sorted. */
  liveNodes(): string[] {
    const now = this.#clock.now();
    const nodes = new Set<string>();
    if (this.#member !== undefined && this.#state === 'running') nodes.add(this.#options.nodeId);
    for (const [key, seen] of this.#view) {
      if (key.startsWith(nodeKeyPrefix) && this.#fresh(seen, now) && seen.node !== undefined) {
        nodes.add(seen.node);
      }
    }
    return [...nodes].sort();
  }

  /**
   * Subscribes to `acquired` or `lost`; returns the unsubscribe function. `lost` listeners run
   * synchronously, before anything else, so the node stops serving the partition at once. A
   * listener that throws is logged and otherwise ignored.
   */
  on<E extends keyof PartitionLeaseEvents>(
    event: E,
    listener: PartitionLeaseEvents[E],
  ): () => void {
    const listeners = this.#listeners[event] as Set<PartitionLeaseEvents[E]>;
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }

  /** Current counters. */
  stats(): PartitionLeaseStats {
    this.#expire();
    return {
      owned: this.#held.size,
      liveNodes: this.liveNodes().length,
      acquisitions: this.#acquisitions,
      releases: this.#releases,
      losses: this.#losses,
      renewFailures: this.#renewFailures,
    };
  }

  async #start(): Promise<void> {
    if (this.#state === 'running') return;
    this.#state = 'starting';
    this.#instance = randomBytes(6).toString('hex');
    this.#view.clear();
    this.#retryAt.clear();
    this.#seenRevision = 0;
    this.#holdUntil = 0;
    try {
      this.#kv = await this.#openBucket();
      this.#watch = await this.#kv.watch().catch((error: unknown) => {
        throw unavailable(this.#bucket, 'watching', error);
      });
      void this.#consume(this.#watch);
      const revision = await this.#kv
        .put(this.#nodeKey(), this.#encodeMember())
        .catch((error: unknown) => {
          throw unavailable(this.#bucket, 'registering the node in', error);
        });
      this.#member = { revision, renewing: false };
      await this.#waitForRevision(revision);
      this.#viewSince = this.#clock.now();
      this.#checkPartitionCounts();
    } catch (error) {
      await this.#teardown();
      this.#state = 'idle';
      throw error;
    }
    this.#state = 'running';
    this.#scheduleRenewal();
    this.#logger.info(
      {
        partitions: this.#options.partitions,
        leaseMs: this.#options.leaseMs,
        liveNodes: this.liveNodes(),
      },
      'partition leases started',
    );
    this.#queueRebalance();
  }

  async #openBucket(): Promise<KV> {
    let status: KvStatus | undefined;
    // Nodes starting together race to create the bucket; the loser's add fails (on 2.9 with
    // "subjects overlap"), and its next attempt finds the bucket.
    for (let attempt = 1; status === undefined; attempt++) {
      try {
        const admin = await new Kvm(this.#options.connection).create(this.#bucket, {
          history: 1,
          // R1 on purpose: before nats-server 2.9.21 expected-revision checks (kv.create,
          // kv.update) are not safe on replicated streams, and a lease is only worth its
          // compare-and-set.
          replicas: 1,
          storage: StorageType.File,
          // The lease time is the bucket's max age (stream max_age, honoured by 2.9): a lease its
          // owner stops renewing vanishes on its own, timed by the server's clock alone, and then
          // `kv.create` simply succeeds. Comparing a timestamp written in the value would compare
          // the clocks of different machines and need a compare-and-steal write; per-message TTL
          // would need nats-server 2.11.
          ttl: this.#options.leaseMs,
          description: `jetactor partition leases of domain ${this.#options.domain}`,
        });
        status = await admin.status();
      } catch (error) {
        if (attempt >= 3) throw unavailable(this.#bucket, 'creating or reading', error);
        await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, 20 * attempt));
      }
    }
    const expected = { ttl: this.#options.leaseMs, replicas: 1, history: 1, storage: 'file' };
    const actual = {
      ttl: status.ttl,
      replicas: status.replicas,
      history: status.history,
      storage: String(status.storage),
    };
    const conflicts = (Object.keys(expected) as (keyof typeof expected)[])
      .filter((field) => expected[field] !== actual[field])
      .map((field) => ({ field, expected: expected[field], actual: actual[field] }));
    if (conflicts.length > 0) {
      throw new ConfigError(
        `Lease bucket ${this.#bucket} exists with settings this node cannot use: ${conflicts.map((c) => `${c.field} is ${JSON.stringify(c.actual)}, expected ${JSON.stringify(c.expected)}`).join('; ')}. Every node of domain ${this.#options.domain} must use the same leaseMs; when none is running, delete the bucket (\`nats kv del ${this.#bucket}\`) to change it.`,
        { code: 'LEASE_CONFIG_CONFLICT', details: { bucket: this.#bucket, conflicts } },
      );
    }
    const js = jetstream(this.#options.connection, { timeout: this.#opTimeoutMs });
    return new Kvm(js).open(this.#bucket, {
      allow_direct: status.streamInfo.config.allow_direct === true,
    });
  }

  async #consume(watch: QueuedIterator<KvWatchEntry>): Promise<void> {
    try {
      for await (const entry of watch) this.#onEntry(entry);
    } catch (error) {
      if (this.#state === 'running') {
        this.#logger.warn(
          { err: describeError(error) },
          'lease bucket watch failed; ownership seen here may be stale until restart',
        );
      }
      return;
    }
    if (this.#state === 'running' && this.#watch === watch) {
      this.#logger.warn('lease bucket watch ended (connection closed?)');
    }
  }

  #onEntry(entry: KvEntry): void {
    this.#remember(entry.key, entry);
    if (entry.revision > this.#seenRevision) {
      this.#seenRevision = entry.revision;
      this.#onSeen?.();
    }
    this.#queueRebalance();
  }

  /** Records an entry (from the watch or a get; null: no such key) unless a later one was seen. */
  #remember(key: string, entry: KvEntry | null, now = this.#clock.now()): void {
    const previous = this.#view.get(key);
    if (entry === null) {
      this.#view.set(key, {
        revision: previous?.revision ?? 0,
        put: false,
        node: undefined,
        instance: undefined,
        token: undefined,
        partitions: undefined,
        seenAt: now,
      });
      return;
    }
    if (previous !== undefined && previous.revision >= entry.revision) return;
    const put = entry.operation === 'PUT';
    const value = put ? decodeValue(entry) : undefined;
    this.#view.set(key, {
      revision: entry.revision,
      put: put && value !== undefined,
      node: value?.node,
      instance: value?.instance,
      token: value === undefined ? undefined : (value.token ?? entry.revision),
      partitions: value?.partitions,
      seenAt: now,
    });
    if (key.startsWith(partitionKeyPrefix) && put) {
      const partition = Number(key.slice(partitionKeyPrefix.length));
      if (!(partition < this.#options.partitions) && !this.#warned.has(key)) {
        this.#warned.add(key);
        this.#logger.warn(
          { key, partitions: this.#options.partitions, holder: value?.node },
          'a node holds a partition beyond this node’s partition count; every node of a domain must use the same partitions',
        );
      }
    }
  }

  #waitForRevision(revision: number): Promise<void> {
    if (this.#seenRevision >= revision) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = Math.max(5_000, this.#options.leaseMs);
      const timer = this.#clock.setTimeout(() => {
        this.#onSeen = undefined;
        reject(
          new InfrastructureError(
            'LEASES_UNAVAILABLE',
            `The watch of lease bucket ${this.#bucket} did not deliver this node's registration within ${timeoutMs} ms; check that JetStream is healthy and start again.`,
          ),
        );
      }, timeoutMs);
      this.#onSeen = () => {
        if (this.#seenRevision < revision) return;
        this.#onSeen = undefined;
        this.#clock.clearTimeout(timer);
        resolve();
      };
    });
  }

  #checkPartitionCounts(): void {
    const now = this.#clock.now();
    const others = [...this.#view]
      .filter(([key, seen]) => key.startsWith(nodeKeyPrefix) && this.#fresh(seen, now))
      .filter(([, seen]) => seen.partitions !== undefined)
      .filter(([, seen]) => seen.partitions !== this.#options.partitions)
      .map(([, seen]) => ({ node: seen.node, partitions: seen.partitions }));
    if (others.length === 0) return;
    throw new ConfigError(
      `Node ${this.#options.nodeId} uses ${this.#options.partitions} partitions for domain ${this.#options.domain}, but live nodes use another count: ${others.map((o) => `${o.node} uses ${o.partitions}`).join(', ')}. Every node of a domain must use the same partitions.`,
      {
        code: 'LEASE_CONFIG_CONFLICT',
        details: {
          bucket: this.#bucket,
          conflicts: [{ field: 'partitions', expected: this.#options.partitions, others }],
        },
      },
    );
  }

  async #stop(): Promise<void> {
    if (this.#state !== 'running') return;
    this.#state = 'stopping';
    this.#clearTimers();
    const leases = [...this.#held.values()];
    for (const lease of leases) this.#drop(lease, 'stopped');
    const kv = this.#kv;
    // Renewals in flight move the revisions; let them land so the deletes below hit.
    for (let round = 0; round < 3 && this.#inflight.size > 0; round++) {
      await Promise.allSettled([...this.#inflight]);
    }
    const member = this.#member;
    this.#member = undefined;
    if (kv !== undefined && member !== undefined) {
      await kv.delete(this.#nodeKey(), { previousSeq: member.revision }).catch(() => undefined);
    }
    if (kv !== undefined) {
      await Promise.allSettled(
        leases.map((lease) => kv.delete(lease.key, { previousSeq: lease.revision })),
      );
    }
    await this.#teardown();
    this.#state = 'idle';
    this.#logger.info({ released: leases.length }, 'partition leases stopped');
  }

  async #teardown(): Promise<void> {
    this.#clearTimers();
    const watch = this.#watch;
    this.#watch = undefined;
    watch?.stop();
    if (this.#member !== undefined && this.#kv !== undefined) {
      await this.#kv
        .delete(this.#nodeKey(), { previousSeq: this.#member.revision })
        .catch(() => undefined);
    }
    this.#member = undefined;
    this.#onSeen = undefined;
    this.#kv = undefined;
    this.#view.clear();
  }

  #clearTimers(): void {
    if (this.#renewTimer !== undefined) this.#clock.clearTimeout(this.#renewTimer);
    if (this.#deadlineTimer !== undefined) this.#clock.clearTimeout(this.#deadlineTimer);
    if (this.#wakeTimer !== undefined) this.#clock.clearTimeout(this.#wakeTimer.handle);
    this.#renewTimer = undefined;
    this.#deadlineTimer = undefined;
    this.#wakeTimer = undefined;
  }

  #scheduleRenewal(): void {
    this.#renewTimer = this.#clock.setTimeout(() => {
      this.#renewTimer = undefined;
      if (this.#state !== 'running') return;
      this.#expire();
      this.#renewMember();
      for (const lease of this.#held.values()) {
        if (!lease.renewing) this.#track(this.#renew(lease));
      }
      this.#queueRebalance();
      this.#scheduleRenewal();
    }, this.#renewMs);
  }

  async #renew(lease: Lease): Promise<void> {
    const kv = this.#kv;
    if (kv === undefined) return;
    lease.renewing = true;
    const sentAt = this.#clock.now();
    try {
      const revision = await kv.update(lease.key, this.#encodeLease(lease.token), lease.revision);
      lease.revision = revision;
      if (this.#held.get(lease.partition) !== lease) {
        // Acknowledged after the node gave the partition up: free the key for the others.
        this.#deleteKey(lease.key, revision);
        return;
      }
      lease.deadline = Math.max(lease.deadline, sentAt + this.#options.leaseMs);
      this.#armDeadline();
    } catch (error) {
      this.#renewFailures += 1;
      if (this.#held.get(lease.partition) !== lease) return;
      if (!isWrongLastSequence(error)) {
        this.#logger.debug(
          { partition: lease.partition, err: describeError(error) },
          'lease renewal failed; retrying while the lease lasts',
        );
        return;
      }
      // A renewal that timed out may have been stored: then the key holds this lease's own write.
      const entry = await kv.get(lease.key).catch(() => undefined);
      if (this.#held.get(lease.partition) !== lease) return;
      const value = entry?.operation === 'PUT' ? decodeValue(entry) : undefined;
      if (entry && value?.instance === this.#instance && value.token === lease.token) {
        lease.revision = entry.revision;
        this.#track(this.#renewSoon(lease));
        return;
      }
      this.#drop(lease, 'refused');
      if (entry !== undefined) this.#remember(lease.key, entry);
      this.#queueRebalance();
    } finally {
      lease.renewing = false;
    }
  }

  async #renewSoon(lease: Lease): Promise<void> {
    await Promise.resolve();
    if (this.#held.get(lease.partition) === lease && !lease.renewing) await this.#renew(lease);
  }

  #renewMember(): void {
    const kv = this.#kv;
    const member = this.#member;
    if (kv === undefined || member === undefined || member.renewing) return;
    member.renewing = true;
    const renewal = kv
      .update(this.#nodeKey(), this.#encodeMember(), member.revision)
      .catch(async (error: unknown) => {
        this.#renewFailures += 1;
        if (!isWrongLastSequence(error)) throw error;
        const entry = await kv.get(this.#nodeKey());
        const value = entry?.operation === 'PUT' ? decodeValue(entry) : undefined;
        if (entry && value?.instance === this.#instance) return entry.revision;
        if (value !== undefined) {
          this.#logger.warn(
            { other: value.instance },
            'another process registered with this node id; node ids must be unique',
          );
        }
        return kv.put(this.#nodeKey(), this.#encodeMember());
      })
      .then(
        (revision) => {
          if (this.#member === member) member.revision = revision;
        },
        (error: unknown) => {
          this.#logger.debug({ err: describeError(error) }, 'membership renewal failed');
        },
      )
      .finally(() => {
        member.renewing = false;
      });
    this.#track(renewal);
  }

  /** Drops every lease whose time is up, emitting `lost` for each. */
  #expire(): void {
    if (this.#held.size === 0) return;
    const now = this.#clock.now();
    if (now < this.#earliestDeadline) return;
    let expired = 0;
    let earliest = Infinity;
    for (const lease of [...this.#held.values()]) {
      if (lease.deadline <= now) {
        this.#drop(lease, 'expired');
        expired += 1;
      } else {
        earliest = Math.min(earliest, lease.deadline);
      }
    }
    this.#earliestDeadline = earliest;
    if (expired > 0) {
      this.#logger.warn(
        { expired, owned: this.#held.size },
        'partition leases were not renewed in time (NATS unreachable or slow); stopped serving them',
      );
      this.#armDeadline();
      this.#queueRebalance();
    }
  }

  /** Forgets a lease and tells the listeners, synchronously, before anything else. */
  #drop(lease: Lease, reason: PartitionLossReason): void {
    if (this.#held.get(lease.partition) !== lease) return;
    this.#held.delete(lease.partition);
    const event: PartitionLost = { partition: lease.partition, token: lease.token, reason };
    for (const listener of [...this.#listeners.lost]) {
      try {
        listener(event);
      } catch (error) {
        this.#logger.error(
          { partition: lease.partition, err: describeError(error) },
          'a "lost" listener threw',
        );
      }
    }
    if (reason === 'released' || reason === 'stopped') this.#releases += 1;
    else this.#losses += 1;
    this.#logger.debug(
      { partition: lease.partition, token: lease.token, reason },
      'partition lost',
    );
  }

  #armDeadline(): void {
    if (this.#deadlineTimer !== undefined) this.#clock.clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    if (this.#held.size === 0 || this.#state !== 'running') return;
    let earliest = Infinity;
    for (const lease of this.#held.values()) earliest = Math.min(earliest, lease.deadline);
    this.#deadlineTimer = this.#clock.setTimeout(
      () => {
        this.#deadlineTimer = undefined;
        this.#expire();
        this.#armDeadline();
      },
      Math.max(0, earliest - this.#clock.now()),
    );
  }

  #queueRebalance(): void {
    if (this.#rebalanceQueued) return;
    this.#rebalanceQueued = true;
    queueMicrotask(() => {
      this.#rebalanceQueued = false;
      this.#rebalance();
    });
  }

  #wakeAt(at: number): void {
    if (this.#state !== 'running') return;
    if (this.#wakeTimer !== undefined) {
      if (this.#wakeTimer.at <= at) return;
      this.#clock.clearTimeout(this.#wakeTimer.handle);
    }
    const handle = this.#clock.setTimeout(
      () => {
        this.#wakeTimer = undefined;
        this.#rebalance();
      },
      Math.max(0, at - this.#clock.now()),
    );
    this.#wakeTimer = { handle, at };
  }

  /** Looks at what the watch shows and acquires, releases or cleans up accordingly. */
  #rebalance(): void {
    if (this.#state !== 'running' || this.#member === undefined || this.#kv === undefined) return;
    this.#expire();
    if (this.#options.connection.isClosed()) return;
    const now = this.#clock.now();
    const leaseMs = this.#options.leaseMs;
    const owners = new Map<number, string>();
    const freeSince = new Map<number, number>();
    let wake = Infinity;
    for (let partition = 0; partition < this.#options.partitions; partition++) {
      if (this.#held.has(partition) || this.#pending.has(partition)) continue;
      const retryAt = this.#retryAt.get(partition);
      if (retryAt !== undefined) {
        if (retryAt > now) {
          wake = Math.min(wake, retryAt);
          continue;
        }
        this.#retryAt.delete(partition);
      }
      const key = partitionKey(partition);
      const seen = this.#view.get(key);
      if (seen?.put === true && seen.instance === this.#instance) {
        // This process wrote it but does not hold it (a write acknowledged too late).
        this.#deleteKey(key, seen.revision);
        continue;
      }
      if (seen?.put === true && this.#fresh(seen, now)) {
        owners.set(partition, seen.node ?? '');
        wake = Math.min(wake, seen.seenAt + leaseMs);
        continue;
      }
      const since =
        seen === undefined
          ? this.#viewSince
          : seen.put
            ? seen.seenAt + leaseMs
            : Math.max(seen.seenAt, this.#viewSince);
      freeSince.set(partition, since);
    }
    for (const [key, seen] of this.#view) {
      if (key.startsWith(nodeKeyPrefix) && this.#fresh(seen, now)) {
        wake = Math.min(wake, seen.seenAt + leaseMs);
      }
    }
    const plan = planLeases({
      self: this.#options.nodeId,
      partitions: this.#options.partitions,
      leaseMs,
      now,
      liveNodes: this.liveNodes(),
      held: new Set(this.#held.keys()),
      pending: this.#pending,
      owners,
      freeSince,
      holdUntil: this.#holdUntil,
    });
    if (plan.orphans > 0) {
      this.#holdUntil = now + 4 * leaseMs;
      this.#logger.info(
        { orphans: plan.orphans },
        'taking partitions that stayed free for two lease times beyond this node’s share',
      );
    }
    for (const partition of plan.release) {
      const lease = this.#held.get(partition);
      if (lease === undefined) continue;
      this.#drop(lease, 'released');
      this.#deleteKey(lease.key, lease.revision);
    }
    if (plan.release.length > 0) this.#armDeadline();
    for (const partition of plan.acquire) this.#track(this.#acquire(partition));
    if (plan.wakeAt !== undefined) wake = Math.min(wake, plan.wakeAt);
    if (wake < Infinity) this.#wakeAt(wake + 1);
  }

  async #acquire(partition: number): Promise<void> {
    const kv = this.#kv;
    if (kv === undefined) return;
    const key = partitionKey(partition);
    this.#pending.add(partition);
    const sentAt = this.#clock.now();
    let revision: number;
    try {
      revision = await kv.create(key, this.#encodeLease(undefined));
    } catch (error) {
      this.#pending.delete(partition);
      await this.#afterFailedCreate(kv, partition, error);
      return;
    }
    this.#pending.delete(partition);
    const deadline = sentAt + this.#options.leaseMs;
    if (this.#state !== 'running' || this.#kv !== kv || deadline <= this.#clock.now()) {
      this.#deleteKey(key, revision);
      return;
    }
    const lease: Lease = {
      partition,
      key,
      token: revision,
      revision,
      deadline,
      renewing: false,
    };
    this.#held.set(partition, lease);
    this.#earliestDeadline = Math.min(this.#earliestDeadline, lease.deadline);
    this.#acquisitions += 1;
    this.#armDeadline();
    const event: PartitionAcquired = { partition, token: revision };
    for (const listener of [...this.#listeners.acquired]) {
      try {
        listener(event);
      } catch (listenerError) {
        this.#logger.error(
          { partition, err: describeError(listenerError) },
          'an "acquired" listener threw',
        );
      }
    }
    this.#logger.debug({ partition, token: revision }, 'partition acquired');
  }

  async #afterFailedCreate(kv: KV, partition: number, error: unknown): Promise<void> {
    const key = partitionKey(partition);
    if (!isWrongLastSequence(error)) {
      this.#logger.debug({ partition, err: describeError(error) }, 'lease acquisition failed');
      this.#retryAt.set(partition, this.#clock.now() + this.#retryMs * 5);
      this.#queueRebalance();
      return;
    }
    // Someone holds it, or the server has not yet removed its unrenewed lease: look again.
    const before = this.#view.get(key);
    const entry = await kv.get(key).catch(() => undefined);
    if (entry === undefined || this.#kv !== kv) return;
    if (entry !== null && before !== undefined && entry.revision === before.revision) {
      this.#retryAt.set(partition, this.#clock.now() + this.#retryMs);
    } else {
      this.#remember(key, entry);
    }
    this.#queueRebalance();
  }

  #deleteKey(key: string, revision: number): void {
    const kv = this.#kv;
    const id = `${key}@${revision}`;
    if (kv === undefined || this.#deleting.has(id)) return;
    this.#deleting.add(id);
    this.#track(
      kv
        .delete(key, { previousSeq: revision })
        .catch(() => undefined)
        .finally(() => this.#deleting.delete(id)),
    );
  }

  #otherOwner(partition: number, now: number): Seen | undefined {
    const seen = this.#view.get(partitionKey(partition));
    if (seen === undefined || !seen.put || !this.#fresh(seen, now)) return undefined;
    if (seen.instance === this.#instance) return undefined;
    return seen;
  }

  /** A key written within the last lease time, as seen here; older ones have expired or will. */
  #fresh(seen: Seen, now: number): boolean {
    return seen.put && seen.seenAt + this.#options.leaseMs > now;
  }

  #track(promise: Promise<unknown>): void {
    const tracked = promise.catch((error: unknown) => {
      this.#logger.debug({ err: describeError(error) }, 'lease operation failed');
    });
    this.#inflight.add(tracked);
    void tracked.finally(() => this.#inflight.delete(tracked));
  }

  #nodeKey(): string {
    return `${nodeKeyPrefix}${this.#options.nodeId}`;
  }

  #encodeLease(token: number | undefined): Uint8Array {
    const value: LeaseValue = { node: this.#options.nodeId, instance: this.#instance };
    if (token !== undefined) value.token = token;
    return encoder.encode(JSON.stringify(value));
  }

  #encodeMember(): Uint8Array {
    const value: LeaseValue = {
      node: this.#options.nodeId,
      instance: this.#instance,
      partitions: this.#options.partitions,
    };
    return encoder.encode(JSON.stringify(value));
  }
}

/** Input of {@link planLeases}: what one node sees at one moment. */
export interface LeasePlanInput {
  /** This node's id. */
  self: string;
  /** Partition count. */
  partitions: number;
  /** Lease time in milliseconds. */
  leaseMs: number;
  /** Clock time now. */
  now: number;
  /** Live node ids, this one included. */
  liveNodes: readonly string[];
  /** Partitions this node holds. */
  held: ReadonlySet<number>;
  /** Partitions this node is acquiring. */
  pending: ReadonlySet<number>;
  /** Partitions held by other nodes, with their owner. */
  owners: ReadonlyMap<number, string>;
  /** Partitions nobody holds, with the clock time since when they are free. */
  freeSince: ReadonlyMap<number, number>;
  /** No handing over before this clock time (set after taking orphans, against flapping). */
  holdUntil: number;
}

/** Output of {@link planLeases}. */
export interface LeasePlan {
  /** Free partitions to try to acquire, preferred first. */
  acquire: number[];
  /** Held partitions to hand over. */
  release: number[];
  /** How many of `acquire` are orphans: free for two lease times, taken beyond the share. */
  orphans: number;
  /** When the plan may change without any news (an orphan ripens, the hold-down ends). */
  wakeAt: number | undefined;
}

/**
 * The fair-share policy, pure. A node below its share acquires free partitions (those it prefers
 * first, by rendezvous hashing, so racing nodes mostly want different ones); a node above its
 * share hands over the ones it prefers least, when some live node is below its share. A
 * partition left free for two lease times (the nodes below their share are not taking it) is
 * taken by anyone, and the taker then holds on for four lease times so a broken node cannot make
 * partitions bounce.
 */
export function planLeases(input: LeasePlanInput): LeasePlan {
  const { self, partitions, leaseMs, now, liveNodes, held, pending, owners, freeSince } = input;
  const share = fairShare(liveNodes, self, partitions);
  const free = [...freeSince.keys()].filter((p) => !held.has(p) && !pending.has(p));
  const deficit = share - held.size - pending.size;
  const acquire = deficit > 0 ? byPreference(self, free).slice(0, deficit) : ([] as number[]);
  const chosen = new Set(acquire);
  let wakeAt: number | undefined;
  let orphans = 0;
  for (const partition of free) {
    if (chosen.has(partition)) continue;
    const ripe = (freeSince.get(partition) ?? now) + 2 * leaseMs;
    if (ripe <= now) {
      acquire.push(partition);
      orphans += 1;
    } else {
      wakeAt = Math.min(wakeAt ?? Infinity, ripe);
    }
  }
  const release: number[] = [];
  const excess = held.size - share;
  if (excess > 0 && orphans === 0 && pending.size === 0) {
    if (now < input.holdUntil) {
      wakeAt = Math.min(wakeAt ?? Infinity, input.holdUntil);
    } else {
      const counts = new Map<string, number>();
      for (const owner of owners.values()) counts.set(owner, (counts.get(owner) ?? 0) + 1);
      const someoneBelow = liveNodes.some(
        (node) => node !== self && (counts.get(node) ?? 0) < fairShare(liveNodes, node, partitions),
      );
      if (someoneBelow) release.push(...byPreference(self, [...held]).slice(-excess));
    }
  }
  return { acquire, release, orphans, wakeAt };
}

/**
 * The number of partitions `node` should own when `nodes` are live: `partitions / nodes`, rounded
 * up for the first `partitions % nodes` nodes in sorted order and down for the rest, so the shares
 * add up to exactly `partitions`. 0 for a node not in the list.
 */
export function fairShare(nodes: readonly string[], node: string, partitions: number): number {
  const sorted = [...new Set(nodes)].sort();
  const index = sorted.indexOf(node);
  if (index < 0) return 0;
  return Math.floor(partitions / sorted.length) + (index < partitions % sorted.length ? 1 : 0);
}

/**
 * The partition of an aggregate instance: a 32-bit FNV-1a hash of the UTF-8 bytes of
 * `<Aggregate>/<id>`, mixed with murmur3's finaliser so every input bit reaches the low bits
 * (partition counts are often powers of two), modulo `partitions`. Stable across processes,
 * machines and versions: every node and client computes the same partition.
 *
 * @throws ConfigError `INVALID_OPTIONS` when `partitions` is not a positive integer.
 */
export function partitionOf(
  aggregate: string,
  id: string,
  partitions: number = DEFAULT_PARTITIONS,
): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new ConfigError(
      `partitionOf: partitions must be a positive integer, got ${String(partitions)}; use the count every node of the domain uses (default ${DEFAULT_PARTITIONS}).`,
    );
  }
  return hash32(aggregate, id) % partitions;
}

const encoder = new TextEncoder();

/** FNV-1a (32 bits) of the UTF-8 bytes of `head`, `/` and `tail`, then murmur3's fmix32. */
function hash32(head: string, tail: string): number {
  // ASCII text is its own UTF-8: hashed from its char codes, without joining or encoding it.
  let hash = fnvAscii(0x811c9dc5, head);
  if (hash !== undefined) hash = fnvAscii(Math.imul(hash ^ 0x2f, 0x01000193), tail);
  if (hash === undefined) {
    hash = 0x811c9dc5;
    for (const byte of encoder.encode(`${head}/${tail}`)) {
      hash ^= byte;
      hash = Math.imul(hash, 0x01000193);
    }
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** FNV-1a steps over the char codes of ASCII `text`; undefined when it is not ASCII. */
function fnvAscii(start: number, text: string): number | undefined {
  let hash = start;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code > 0x7f) return undefined;
    hash ^= code;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash;
}

/** Partitions ordered by how much `node` wants them (rendezvous hashing), most wanted first. */
function byPreference(node: string, partitions: readonly number[]): number[] {
  return partitions
    .map((partition) => ({ partition, score: hash32(node, String(partition)) }))
    .sort((a, b) => b.score - a.score || a.partition - b.partition)
    .map((entry) => entry.partition);
}

function partitionKey(partition: number): string {
  return `${partitionKeyPrefix}${partition}`;
}

function decodeValue(entry: KvEntry): LeaseValue | undefined {
  try {
    const value = entry.json<Partial<LeaseValue>>();
    if (typeof value.node !== 'string' || typeof value.instance !== 'string') return undefined;
    return value as LeaseValue;
  } catch {
    return undefined;
  }
}

/** JetStream refused a write because the key's revision is not the expected one. */
function isWrongLastSequence(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return error instanceof Error && (code === 10071 || code === 10164);
}

function unavailable(bucket: string, doing: string, error: unknown): JetactorError {
  if (isPermissionViolation(error))
    return permissionDenied(error, `${doing} lease bucket ${bucket}`);
  return new InfrastructureError(
    'LEASES_UNAVAILABLE',
    `JetStream did not answer while ${doing} lease bucket ${bucket} (${describeError(error)}); check that nats-server runs with JetStream enabled and start again.`,
    { cause: error },
  );
}

function defaultNodeId(): string {
  const host =
    hostname()
      .split('.')[0]
      ?.replace(/[^A-Za-z0-9_-]/g, '-') ?? 'node';
  return `${host.slice(0, 40) || 'node'}-${process.pid}-${randomBytes(3).toString('hex')}`;
}
