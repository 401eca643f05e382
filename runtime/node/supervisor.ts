import {
  AggregateActor,
  type AggregateActorOptions,
  type AggregateView,
} from '../aggregate/aggregate-actor.js';
import type { Command, CommandResult } from '../aggregate/command.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { AnyAggregateDefinition } from '../domain/define-aggregate.js';
import { InfrastructureError, type JetactorError } from '../errors.js';
import type { SnapshotStore } from '../event-store/snapshot-store.js';
import type { EventStore, StreamRef } from '../event-store/event-store.js';
import type { Logger } from '../logger.js';
import type { InspectionHook } from './inspection-hook.js';
import { RecencyList, type RecencyEntry } from './recency-list.js';

/** Tuning of the supervisor. */
export interface SupervisorOptions extends AggregateActorOptions {
  /** Passivate actors that received no command for this long, in milliseconds. */
  idleTimeoutMs: number;
  /** Most actors alive at once; the least recently used idle ones are passivated beyond it. */
  maxActive: number;
  /**
   * First restart delay after an actor fails, in milliseconds; doubles on each further failure,
   * except failures to reach the store (`STORE_UNAVAILABLE`, `STORE_TIMEOUT`), which always wait
   * this long.
   */
  restartBackoffMs: number;
  /** Longest restart delay, in milliseconds. */
  maxRestartBackoffMs: number;
}

/** Counters the inspector and the benchmark read. */
export interface SupervisorStats {
  /** Actors alive now. */
  active: number;
  /** Actors spawned since start. */
  spawned: number;
  /** Actors passivated since start (idle timeout, `maxActive` or shutdown). */
  passivated: number;
  /** Failed actors started again. */
  restarts: number;
  /** Actors currently failed and waiting for their next command. */
  failed: number;
  /** Commands waiting in all mailboxes. */
  mailboxDepth: number;
  /**
   * Appends the store refused since start because another writer (another node) had appended to
   * the aggregate first; each one was caught up and decided again. Divided by the commands served,
   * this is the conflict rate that partition affinity keeps low.
   */
  conflicts: number;
}

interface FailureRecord {
  count: number;
  retryAt: number;
}

/**
 * Keeps one actor per aggregate instance: spawns on the first command (virtual actors),
 * passivates idle and least recently used ones, restarts failed ones with backoff.
 *
 * Actors live in a list in order of use, so both the idle sweep and the LRU eviction look only at
 * the oldest entries, and are found through an index by domain, aggregate and id (no key string
 * per command) that holds their entries in the list, so a command moves its actor to the end
 * without hashing it.
 */
export class Supervisor {
  /** Live actors in order of use, least recent first. */
  readonly #actors = new RecencyList<AggregateActor>();
  /** The same actors' entries by domain, aggregate and id: no key string to build per command. */
  readonly #index = new Map<string, Map<string, Map<string, RecencyEntry<AggregateActor>>>>();
  readonly #failures = new Map<string, FailureRecord>();
  readonly #store: EventStore;
  readonly #snapshots: SnapshotStore | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #options: SupervisorOptions;
  readonly #inspection: InspectionHook | undefined;
  #sweep: TimerHandle | undefined;
  #stopping = false;
  #spawned = 0;
  #passivated = 0;
  #restarts = 0;
  #conflicts = 0;

  constructor(deps: {
    store: EventStore;
    snapshots?: SnapshotStore | undefined;
    clock: Clock;
    logger: Logger;
    options: SupervisorOptions;
    /** Passed to every actor: where commits are reported while an inspector is attached. */
    inspection?: InspectionHook;
  }) {
    this.#store = deps.store;
    this.#snapshots = deps.snapshots;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#options = deps.options;
    this.#inspection = deps.inspection;
  }

  /** Routes a validated command to its aggregate's actor. */
  execute(
    domain: string,
    definition: AnyAggregateDefinition,
    command: Command,
  ): Promise<CommandResult> {
    if (this.#stopping) return Promise.reject(shuttingDown());
    const actor = this.#actorFor(domain, definition, command.aggregateId);
    if (actor instanceof InfrastructureError) return Promise.reject(actor);
    const result = actor.execute(command);
    this.#evictBeyondMax();
    return result;
  }

  /**
   * The confirmed state of an aggregate as stored: spawns (replays) the actor when needed, else
   * applies the commits stored since it last looked.
   */
  async view(
    domain: string,
    definition: AnyAggregateDefinition,
    id: string,
  ): Promise<AggregateView> {
    if (this.#stopping) throw shuttingDown();
    const actor = this.#actorFor(domain, definition, id);
    if (actor instanceof InfrastructureError) throw actor;
    // Another node may have appended since this actor last looked: catch up first.
    await actor.refresh();
    if (actor.failure) throw actor.failure;
    return actor.view();
  }

  /** The live actors, least recently used first (for inspectors; do not keep them). */
  actors(): IterableIterator<AggregateActor> {
    return this.#actors.values();
  }

  /** Current counters. */
  stats(): SupervisorStats {
    let mailboxDepth = 0;
    for (const actor of this.#actors) mailboxDepth += actor.mailboxDepth;
    return {
      active: this.#actors.size,
      spawned: this.#spawned,
      passivated: this.#passivated,
      restarts: this.#restarts,
      failed: [...this.#actors].filter((a) => a.lifecycle === 'failed').length,
      mailboxDepth,
      conflicts: this.#conflicts,
    };
  }

  /**
   * Passivates the actors whose aggregate matches `predicate` (e.g. those of a partition this node
   * no longer owns): idle ones at once, busy ones as soon as they are idle, unless they were
   * passivated or replaced meanwhile. Returns how many actors matched.
   */
  passivateWhere(predicate: (stream: StreamRef) => boolean): number {
    let matched = 0;
    for (const actor of [...this.#actors]) {
      if (!predicate(actor.stream)) continue;
      matched += 1;
      if (passivatable(actor)) {
        this.#passivate(actor);
        continue;
      }
      void actor
        .start()
        .then(() => actor.whenIdle())
        .then(() => {
          if (!this.#stopping && this.#entryOf(actor) !== undefined && passivatable(actor)) {
            this.#passivate(actor);
          }
        });
    }
    return matched;
  }

  /**
   * Stops taking commands, waits up to `timeoutMs` for queued and in-flight ones, then rejects
   * what is still queued with a retryable `SHUTTING_DOWN`, logs what was interrupted, and
   * passivates every actor. Returns how many commands were interrupted.
   */
  async stop(timeoutMs: number): Promise<{ interrupted: number }> {
    this.#stopping = true;
    if (this.#sweep !== undefined) this.#clock.clearTimeout(this.#sweep);
    let timer: TimerHandle | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = this.#clock.setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const idle = Promise.all([...this.#actors].map((a) => a.start().then(() => a.whenIdle())));
    const outcome = await Promise.race([idle.then(() => 'idle' as const), timedOut]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    let interrupted = 0;
    if (outcome === 'timeout') {
      for (const actor of this.#actors) {
        const rejected = actor.rejectQueued(shuttingDown());
        const inFlight = actor.idle ? 0 : 1;
        if (rejected + inFlight > 0) {
          interrupted += rejected;
          this.#logger.warn(
            { stream: actor.stream, rejected, commitInFlight: inFlight === 1 },
            'shutdown interrupted commands: queued ones were rejected with SHUTTING_DOWN; a commit in flight may or may not be stored (clients retry with the same command id)',
          );
        }
      }
    }
    for (const actor of this.#actors) {
      if (actor.idle) {
        actor.passivate();
        this.#passivated += 1;
      }
    }
    this.#actors.clear();
    this.#index.clear();
    return { interrupted };
  }

  #actorFor(
    domain: string,
    definition: AnyAggregateDefinition,
    id: string,
  ): AggregateActor | InfrastructureError {
    const entry = this.#index.get(domain)?.get(definition.name)?.get(id);
    const existing = entry?.value;
    if (entry !== undefined && entry.value.lifecycle !== 'failed') {
      this.#actors.touch(entry);
      return entry.value;
    }
    const key = `${domain}/${definition.name}/${id}`;
    const failure = this.#failures.get(key);
    if (failure !== undefined) {
      const wait = failure.retryAt - this.#clock.now();
      if (wait > 0) {
        return new InfrastructureError(
          'AGGREGATE_UNAVAILABLE',
          `${definition.name} "${id}" failed and restarts in ${wait} ms; send the command again after that.`,
          { details: { retryAfterMs: wait }, cause: existing?.failure },
        );
      }
      this.#restarts += 1;
    }
    if (existing !== undefined) this.#remove(existing);
    const actor = new AggregateActor({
      domain,
      definition,
      id,
      store: this.#store,
      snapshots: this.#snapshots,
      clock: this.#clock,
      logger: this.#logger,
      options: this.#options,
      onFailed: (failed, error) => this.#onFailed(key, failed, error),
      onConflict: () => {
        this.#conflicts += 1;
      },
      inspection: this.#inspection,
    });
    this.#insert(actor);
    this.#spawned += 1;
    void actor.start().then(() => {
      if (actor.lifecycle !== 'failed') this.#failures.delete(key);
    });
    this.#scheduleSweep();
    return actor;
  }

  #onFailed(key: string, actor: AggregateActor, error: JetactorError): void {
    const previous = this.#failures.get(key);
    // The store being away is not the aggregate's fault: try again after the first delay, without
    // doubling, so the aggregate serves again as soon as the store is back (a doubling backoff
    // grown during a short outage kept aggregates away for many seconds after it).
    const transient = error.code === 'STORE_UNAVAILABLE' || error.code === 'STORE_TIMEOUT';
    const count = (previous?.count ?? 0) + (transient ? 0 : 1);
    const delay = transient
      ? this.#options.restartBackoffMs
      : Math.min(
          this.#options.restartBackoffMs * 2 ** (count - 1),
          this.#options.maxRestartBackoffMs,
        );
    this.#failures.set(key, { count, retryAt: this.#clock.now() + delay });
    this.#logger.warn(
      { stream: actor.stream, failures: count, restartInMs: delay, code: error.code },
      'aggregate actor failed; it restarts on its next command',
    );
  }

  #evictBeyondMax(): void {
    if (this.#actors.size <= this.#options.maxActive) return;
    for (const actor of this.#actors) {
      if (this.#actors.size <= this.#options.maxActive) break;
      if (passivatable(actor)) {
        this.#passivate(actor);
      }
    }
  }

  #scheduleSweep(): void {
    if (this.#sweep !== undefined || this.#stopping) return;
    const interval = Math.max(10, Math.min(this.#options.idleTimeoutMs / 2, 1000));
    this.#sweep = this.#clock.setTimeout(() => {
      this.#sweep = undefined;
      this.#sweepIdle();
      if (this.#actors.size > 0) this.#scheduleSweep();
    }, interval);
  }

  #sweepIdle(): void {
    const cutoff = this.#clock.now() - this.#options.idleTimeoutMs;
    for (const actor of this.#actors) {
      if (actor.lastActive > cutoff) break;
      if (passivatable(actor)) this.#passivate(actor);
    }
  }

  #insert(actor: AggregateActor): void {
    const { domain, aggregate, id } = actor.stream;
    let byAggregate = this.#index.get(domain);
    if (byAggregate === undefined) {
      byAggregate = new Map();
      this.#index.set(domain, byAggregate);
    }
    let byId = byAggregate.get(aggregate);
    if (byId === undefined) {
      byId = new Map();
      byAggregate.set(aggregate, byId);
    }
    byId.set(id, this.#actors.add(actor));
  }

  #remove(actor: AggregateActor): void {
    const entry = this.#entryOf(actor);
    if (entry === undefined) return;
    const { domain, aggregate, id } = actor.stream;
    this.#index.get(domain)?.get(aggregate)?.delete(id);
    this.#actors.remove(entry);
  }

  /** `actor`'s entry, when it is the live actor of its aggregate. */
  #entryOf(actor: AggregateActor): RecencyEntry<AggregateActor> | undefined {
    const { domain, aggregate, id } = actor.stream;
    const entry = this.#index.get(domain)?.get(aggregate)?.get(id);
    return entry?.value === actor ? entry : undefined;
  }

  #passivate(actor: AggregateActor): void {
    this.#remove(actor);
    if (actor.lifecycle === 'failed') return;
    actor.passivate();
    this.#passivated += 1;
  }
}

/**
 * Idle and not replaying: passivating an actor in the middle of its replay would stop the machine
 * under it (and fail the replay).
 */
function passivatable(actor: AggregateActor): boolean {
  return actor.idle && (actor.lifecycle === 'ready' || actor.lifecycle === 'failed');
}

/** The error for commands that arrive while the node is stopping. */
export function shuttingDown(): InfrastructureError {
  return new InfrastructureError(
    'SHUTTING_DOWN',
    'The node is shutting down and takes no new commands; send the command to another node or retry shortly with the same command id.',
  );
}
