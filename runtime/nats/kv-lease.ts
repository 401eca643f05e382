import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Clock, TimerHandle } from '../clock.js';
import { ConfigError, describeError } from '../errors.js';
import { isPermissionViolation, permissionDenied } from './permission-denied.js';
import type { Logger } from '../logger.js';
import { projectionLeaseBucket } from './subjects.js';

/** Options of {@link KvLease}. */
export interface KvLeaseOptions {
  /** The lease bucket (its max age is the lease time). */
  kv: KV;
  /** The key: `<domain>.<projection>` or `<domain>.reactor.<reactor>`. */
  key: string;
  /** What runs under the lease, in log lines: `'projection'` or `'reactor'`. */
  kind: string;
  /** Who this node is, written as the value: `<host>-<pid>-<random>`. */
  owner: string;
  /** Lease time, in milliseconds: the bucket's max age. */
  leaseMs: number;
  /** Clock of every timer. */
  clock: Clock;
  /** Logger. */
  logger: Logger;
  /** This node now holds the lease: run what it guards. */
  onAcquired: () => void;
  /** This node no longer holds it: stop at once. */
  onLost: (reason: 'expired' | 'refused') => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * One node at a time runs a projection or a reactor: the one holding its key in the KV bucket
 * `<prefix>_rm_leases`, whose max age is the lease time. Acquire is `kv.create` (fails while
 * someone holds it), renew is `kv.update` at the revision last written (fails when anyone else
 * wrote since), every third of the lease time; release (on a graceful stop) deletes it at that
 * revision, so another node takes over at once. A node that dies stops renewing and the server
 * expires the key; a standby then acquires it. The holder counts its lease from the moment it
 * sent the last acknowledged write and stops at once when it runs out, so it gives up before the
 * server lets anyone else in.
 */
export class KvLease {
  readonly #options: KvLeaseOptions;
  #revision = 0;
  #validUntil = 0;
  #held = false;
  #timer: TimerHandle | undefined;
  #expiry: TimerHandle | undefined;
  #stopped = true;
  #holder: string | undefined;
  /** The write in flight, if any: a release waits for it, to delete at the latest revision. */
  #ticking: Promise<void> | undefined;

  constructor(options: KvLeaseOptions) {
    this.#options = options;
  }

  /** True while this node holds the lease. */
  get held(): boolean {
    return this.#held && this.#options.clock.now() < this.#validUntil;
  }

  /** Who holds it, as last seen (this node's owner string when it does). */
  get holder(): string | undefined {
    return this.#held ? this.#options.owner : this.#holder;
  }

  /**
   * Starts trying to acquire it (and renewing it once held). Resolves after the first attempt,
   * so `held` (and `onAcquired`, called before) says whether this node got it at once.
   */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    await this.#run();
  }

  /** Stops renewing; deletes the key when held, so another node takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clear();
    await this.#ticking;
    if (!this.#held) return;
    this.#held = false;
    try {
      await this.#options.kv.delete(this.#options.key, { previousSeq: this.#revision });
    } catch {
      // Someone else wrote it, or the server is gone: the lease expires by itself.
    }
  }

  /** Gives the lease up (if held) and tries again after a lease time. */
  async yieldLease(): Promise<void> {
    await this.stop();
    this.#stopped = false;
    this.#schedule(this.#options.leaseMs);
  }

  #clear(): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    if (this.#expiry !== undefined) this.#options.clock.clearTimeout(this.#expiry);
    this.#timer = undefined;
    this.#expiry = undefined;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = this.#options.clock.setTimeout(() => {
      this.#timer = undefined;
      void this.#run();
    }, ms);
  }

  #run(): Promise<void> {
    const tick = this.#tick().finally(() => {
      if (this.#ticking === tick) this.#ticking = undefined;
    });
    this.#ticking = tick;
    return tick;
  }

  async #tick(): Promise<void> {
    const { kv, key, kind, owner, leaseMs, clock } = this.#options;
    const value = encoder.encode(JSON.stringify({ owner }));
    const sentAt = clock.now();
    if (this.#held) {
      try {
        this.#revision = await kv.update(key, value, this.#revision);
        if (this.#stopped) return;
        const until = sentAt + leaseMs;
        if (this.#held && clock.now() < this.#validUntil) {
          this.#extend(until);
        } else {
          // The lease ran out here while the write was on its way: its expiry timer fired and
          // told what it guards to stop, or has not fired yet (timers ran late) and `held` read
          // false meanwhile, so what it guards may have stopped pulling or acknowledging without
          // being told. Either way that term ends, and as the write succeeded at the expected
          // revision (no one else held it in between), another starts while it is still valid.
          if (this.#held) this.#lose('expired');
          if (clock.now() < until) {
            this.#held = true;
            this.#extend(until);
            this.#options.logger.info({ lease: key, owner }, `${kind} lease acquired`);
            this.#options.onAcquired();
          }
        }
      } catch (error) {
        if (this.#stopped) return;
        // Lost meanwhile (its expiry timer fired): nothing more to stop, try for it again below.
        if (this.#held) {
          this.#options.logger.warn({ err: error, lease: key }, `${kind} lease renewal refused`);
          this.#lose('refused');
        }
      }
    } else {
      try {
        this.#revision = await kv.create(key, value);
        if (this.#stopped) {
          await kv.delete(key, { previousSeq: this.#revision }).catch(() => undefined);
          return;
        }
        this.#held = true;
        this.#extend(sentAt + leaseMs);
        this.#options.logger.info({ lease: key, owner }, `${kind} lease acquired`);
        this.#options.onAcquired();
      } catch {
        const entry = await kv.get(key).catch(() => null);
        this.#holder = entry?.operation === 'PUT' ? ownerOf(entry.value) : undefined;
      }
    }
    this.#schedule(Math.max(50, Math.floor(leaseMs / 3)));
  }

  #extend(until: number): void {
    this.#validUntil = until;
    if (this.#expiry !== undefined) this.#options.clock.clearTimeout(this.#expiry);
    this.#expiry = this.#options.clock.setTimeout(
      () => {
        this.#expiry = undefined;
        if (this.#held && this.#options.clock.now() >= this.#validUntil) this.#lose('expired');
      },
      Math.max(0, until - this.#options.clock.now()),
    );
  }

  #lose(reason: 'expired' | 'refused'): void {
    this.#held = false;
    this.#options.logger.warn(
      { lease: this.#options.key, reason },
      `${this.#options.kind} lease lost`,
    );
    this.#options.onLost(reason);
  }
}

/**
 * Creates (or opens) the lease bucket `<prefix>_rm_leases` that projections and reactors share,
 * with `leaseMs` as its max age, and returns it with the lease time in force: an existing bucket
 * keeps the lease time it was created with (every node must use the same; a warning says so).
 */
export async function openLeaseBucket(
  connection: NatsConnection,
  prefix: string,
  leaseMs: number,
  logger: Logger,
): Promise<{ kv: KV; leaseMs: number }> {
  const kvm = new Kvm(connection);
  const name = projectionLeaseBucket(prefix);
  try {
    return { kv: await kvm.create(name, { history: 1, ttl: leaseMs }), leaseMs };
  } catch (error) {
    try {
      const kv = await kvm.open(name);
      const status = await kv.status();
      const inForce = status.ttl > 0 ? status.ttl : leaseMs;
      if (inForce !== leaseMs) {
        logger.warn(
          { bucket: name, leaseMs: inForce, asked: leaseMs },
          'the lease bucket exists with another lease time; using it',
        );
      }
      return { kv, leaseMs: inForce };
    } catch {
      if (isPermissionViolation(error)) {
        throw permissionDenied(
          error,
          `creating the lease bucket ${name} (which node runs each projection and reactor)`,
        );
      }
      throw new ConfigError(
        `The lease bucket ${name} (which node runs each projection and reactor) cannot be created or opened: ${describeError(error)}. Check that JetStream is enabled.`,
        { cause: error },
      );
    }
  }
}

function ownerOf(value: Uint8Array): string | undefined {
  try {
    const owner = (JSON.parse(decoder.decode(value)) as { owner?: unknown }).owner;
    return typeof owner === 'string' ? owner : undefined;
  } catch {
    return undefined;
  }
}
