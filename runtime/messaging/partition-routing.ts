import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Clock } from '../clock.js';
import { describeError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { DomainNode } from '../node/domain-node.js';
import { PartitionLeases, type PartitionLeaseStats } from '../node/partition-leases.js';
import { forwardSubject } from '../nats/subjects.js';

/**
 * Why a request a node meant to forward was served by that node itself:
 * - `refused`: the owner no longer holds the partition under the token sent (`NOT_PARTITION_OWNER`);
 * - `noResponders`: nobody listens on the partition's forward subject (the owner died or just let
 *   the partition go);
 * - `timeout`: the owner did not answer within the forward timeout;
 * - `failed`: the forward could not be sent, or its answer was not a reply of this protocol.
 */
export type ForwardFallbackReason = 'refused' | 'noResponders' | 'timeout' | 'failed';

/** Counters of how a router served requests (per endpoint, and summed per domain). */
export interface RoutingCounters {
  /**
   * Requests received from clients and executed on this node: its own partitions, partitions
   * without owner, every request when affinity is off, and forwards that fell back.
   */
  servedLocally: number;
  /** Requests received from clients, forwarded to their partition's owner, its reply relayed. */
  forwarded: number;
  /** Forwards that got no usable answer, by reason; each was then served locally. */
  fallbacks: Record<ForwardFallbackReason, number>;
  /** Requests other nodes forwarded here as the partition's owner, and served. */
  servedForOthers: number;
  /** Requests other nodes forwarded here with a token this node does not hold now: refused. */
  refusedForOthers: number;
}

/** Partition affinity of one domain on one node: its leases and the requests routed. */
export interface RoutingStats extends RoutingCounters, PartitionLeaseStats {
  /** This node's id in the lease bucket. */
  nodeId: string;
  /** Partitions of the domain. */
  partitions: number;
}

/** Where a request of a partitioned domain is served. */
export type Route =
  | { readonly forward: false; readonly partition: number }
  | {
      readonly forward: true;
      readonly partition: number;
      /** Fencing token of the owner's lease, sent with the request. */
      readonly token: number;
      /** Id of the owning node. */
      readonly owner: string;
    };

/** Options of {@link PartitionRouting}. */
export interface PartitionRoutingOptions {
  /** The router's connection. */
  connection: NatsConnection;
  /** Subject and bucket prefix. */
  prefix: string;
  /** The partitioned domain. */
  domain: string;
  /** The node whose actors are passivated when a partition is lost. */
  node: DomainNode;
  /** Partitions of the domain (the same on every node). */
  partitions?: number | undefined;
  /** Lease time in milliseconds (the same on every node). */
  leaseMs?: number | undefined;
  /** This node's id; default `<host>-<pid>-<random>`. */
  nodeId?: string | undefined;
  /** Clock of the leases. */
  clock?: Clock | undefined;
  /** Logger of the leases and of forward subscriptions. */
  logger: Logger;
  /** Handles a request forwarded to this node on a partition it owns. */
  onForwarded: (partition: number, msg: Msg) => void;
}

/**
 * Partition affinity of one domain on one node: holds the node's {@link PartitionLeases}, says
 * where each request goes ({@link PartitionRouting.route}), subscribes to
 * `<prefix>.fwd.<domain>.<partition>` for each partition it acquires and unsubscribes at once when
 * it loses one, then passivates that partition's actors (another node writes them from now on).
 */
export class PartitionRouting {
  /** The domain. */
  readonly domain: string;
  /** The leases of this node on the domain's partitions. */
  readonly leases: PartitionLeases;
  readonly #options: PartitionRoutingOptions;
  readonly #subscriptions = new Map<number, Subscription>();
  readonly #lost = new Set<number>();
  readonly #local: Route[] = [];
  #active = false;
  #passivationQueued = false;

  /** @throws ConfigError `INVALID_OPTIONS` for a bad node id, partition count or lease time. */
  constructor(options: PartitionRoutingOptions) {
    this.#options = options;
    this.domain = options.domain;
    this.leases = new PartitionLeases({
      connection: options.connection,
      domain: options.domain,
      prefix: options.prefix,
      logger: options.logger,
      ...(options.partitions === undefined ? {} : { partitions: options.partitions }),
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
      ...(options.nodeId === undefined ? {} : { nodeId: options.nodeId }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    });
    this.leases.on('acquired', ({ partition }) => this.#subscribe(partition));
    this.leases.on('lost', ({ partition }) => this.#unsubscribe(partition));
  }

  /** This node's id in the lease bucket. */
  get nodeId(): string {
    return this.leases.nodeId;
  }

  /** The partition of an aggregate instance. */
  partitionOf(aggregate: string, id: string): number {
    return this.leases.partitionOf(aggregate, id);
  }

  /** Starts the leases (registers the node; partitions are acquired in the background). */
  async start(): Promise<void> {
    this.#active = true;
    try {
      await this.leases.start();
    } catch (error) {
      this.#active = false;
      throw error;
    }
  }

  /** Stops the leases: every owned partition is handed over (and unsubscribed) at once. */
  async stop(): Promise<void> {
    await this.leases.stop();
    this.#active = false;
    for (const partition of [...this.#subscriptions.keys()]) this.#unsubscribe(partition);
  }

  /**
   * Where a request for `<aggregate>/<id>` goes: served here when this node owns its partition,
   * when the partition has no live owner, or when the owner is this node's id (an earlier run of
   * it); forwarded to the owner otherwise.
   */
  route(aggregate: string, id: string): Route {
    const partition = this.leases.partitionOf(aggregate, id);
    if (this.leases.owns(partition)) return this.#here(partition);
    const owner = this.leases.ownerOf(partition);
    const token = this.leases.tokenOf(partition);
    if (owner === undefined || token === undefined || owner === this.leases.nodeId) {
      return this.#here(partition);
    }
    return { forward: true, partition, token, owner };
  }

  /** The route "served here" of a partition, made once per partition. */
  #here(partition: number): Route {
    let route = this.#local[partition];
    if (route === undefined) {
      route = Object.freeze({ forward: false, partition });
      this.#local[partition] = route;
    }
    return route;
  }

  /** Whether this node owns the partition now under exactly this token. */
  isCurrent(partition: number, token: number): boolean {
    return this.leases.isCurrent(partition, token);
  }

  /** The lease counters, with the node id and partition count. */
  leaseStats(): PartitionLeaseStats & { nodeId: string; partitions: number } {
    return {
      nodeId: this.leases.nodeId,
      partitions: this.leases.partitions,
      ...this.leases.stats(),
    };
  }

  #subscribe(partition: number): void {
    if (!this.#active || this.#options.connection.isClosed()) return;
    this.#subscriptions.get(partition)?.unsubscribe();
    const subject = forwardSubject(this.#options.prefix, this.domain, partition);
    try {
      this.#subscriptions.set(
        partition,
        this.#options.connection.subscribe(subject, {
          callback: (error, msg) => {
            if (error !== null) {
              this.#options.logger.warn({ err: error, subject }, 'forward subscription error');
              return;
            }
            this.#options.onForwarded(partition, msg);
          },
        }),
      );
    } catch (error) {
      this.#options.logger.warn(
        { subject, err: describeError(error) },
        'cannot subscribe to forwarded requests; other nodes serve this partition themselves',
      );
    }
  }

  /** Stops taking forwarded requests of the partition now; passivates its actors soon after. */
  #unsubscribe(partition: number): void {
    const subscription = this.#subscriptions.get(partition);
    this.#subscriptions.delete(partition);
    try {
      subscription?.unsubscribe();
    } catch {
      // The connection is closing: the subscription goes with it.
    }
    this.#lost.add(partition);
    if (this.#passivationQueued) return;
    this.#passivationQueued = true;
    // Partitions are often lost together (a rebalance, a stop): one pass over the actors for all.
    queueMicrotask(() => {
      this.#passivationQueued = false;
      const lost = new Set(this.#lost);
      this.#lost.clear();
      const passivated = this.#options.node.passivateWhere(
        (stream) =>
          stream.domain === this.domain &&
          lost.has(this.leases.partitionOf(stream.aggregate, stream.id)),
      );
      if (passivated > 0) {
        this.#options.logger.debug(
          { domain: this.domain, partitions: [...lost], actors: passivated },
          'passivated the actors of partitions this node no longer owns',
        );
      }
    });
  }
}
