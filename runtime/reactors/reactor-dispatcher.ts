import type { CommandOptions, CommandRequest, CommandResult } from '../aggregate/command.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { AnyAggregateDefinition } from '../domain/define-aggregate.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type {
  ReactorContext,
  ReactorDefinition,
  ReactorHandler,
} from '../domain/define-reactor.js';
import type { StoredEvent } from '../domain/events.js';
import { readEvent } from '../domain/read-event.js';
import {
  InfrastructureError,
  RejectionError,
  describeError,
  isJetactorError,
  type JetactorError,
} from '../errors.js';
import type { Commit, StreamRef } from '../event-store/event-store.js';
import type { Logger } from '../logger.js';
import type { AggregateRef } from '../node/domain-node.js';
import type { DeadLetter, DeadLetterStore } from './dead-letter-store.js';
import {
  nextWorkerState,
  workerStates,
  type WorkerEvent,
  type WorkerState,
} from './reactor-worker.js';

/** One commit handed to a reactor, and what to tell its source once it is handled. */
export interface Delivery {
  /** Lane key: deliveries with the same key are handled one after another. */
  readonly key: string;
  /** Where the commit was read (the NATS subject, or `<domain>.<Aggregate>.<id>` in memory). */
  readonly subject: string;
  /** Position of the commit in its domain's stream. */
  readonly sequence: number;
  /** The aggregate, when the subject names one. */
  readonly stream: StreamRef | undefined;
  /** The commit; throws a `CORRUPT_DATA` error when the message is not one (poison). */
  decode(): Commit;
  /** Handled (or dead-lettered): the source may forget it. */
  ack(): void;
  /** Not handled: the source should deliver it again (to the next listener). */
  nak(): void;
  /** Still in progress: the source should not redeliver it yet. */
  working(): void;
}

/** Counters of one reactor, as `node.stats().reactors['<domain>.<reactor>']` shows them. */
export interface ReactorStats {
  /** Events whose handler succeeded since the reactor started listening. */
  handled: number;
  /** Handler runs that failed and were tried again, since it started listening. */
  retries: number;
  /** Events dead-lettered since it started listening. */
  deadLetters: number;
  /** Handlers running now. */
  inFlight: number;
  /** Aggregates whose later events wait behind a dead letter (`'wait'` policy). */
  blocked: number;
  /**
   * Commits received and not yet acknowledged: running, queued behind an earlier event of their
   * aggregate, waiting for a free slot, or held behind a dead letter.
   */
  unacknowledged: number;
  /**
   * Commits of the domain not yet acknowledged by the reactor: `unacknowledged` plus those the
   * server has not delivered yet (the consumer's pending count; 0 in memory).
   */
  lag: number;
  /** Workers (one per aggregate with events in hand) by state of `reactorWorkerMachine`. */
  workers: Record<WorkerState, number>;
  /**
   * Whether this node runs the reactor now: always in process; on JetStream while it holds the
   * reactor's lease (other nodes hosting it stand by, and their counters stand still).
   */
  here: boolean;
  /** The node that runs it, as last seen (JetStream: the lease holder's node id). */
  leader: string | undefined;
}

/** Who runs a reactor, as {@link ReactorStats} reports it. */
export type ReactorLeadership = Pick<ReactorStats, 'here' | 'leader'>;

/** One worker of a reactor, for inspectors. */
export interface ReactorWorkerView {
  /** Domain of the reactor. */
  domain: string;
  /** The reactor. */
  reactor: string;
  /** The lane: the aggregate's subject. */
  key: string;
  /** State of `reactorWorkerMachine`. */
  state: WorkerState;
  /** Commits waiting in the lane, the current one included. */
  queued: number;
  /** Id of the dead letter the lane waits behind (`'wait'` policy). */
  blockedBy?: number;
}

/** What a {@link ReactorDispatcher} needs from its host. */
export interface ReactorDispatcherDeps {
  /** The domain hosting the reactor. */
  domain: DomainDefinition;
  /** The reactor whose handlers run. */
  reactor: ReactorDefinition;
  /** Clock of the retry backoff and the close timeout. */
  clock: Clock;
  /** Logger; retries, dead letters and replays are logged with the reactor and the event. */
  logger: Logger;
  /** Sends a command from a handler (ids already derived). */
  send: (command: CommandRequest) => Promise<CommandResult>;
  /** Where dead letters go. */
  deadLetters: DeadLetterStore;
  /** Reads the commit a dead letter refers to, for a replay. */
  load: (deadLetter: DeadLetter) => Promise<Commit>;
}

interface ReplayJob {
  kind: 'replay';
  deadLetter: DeadLetter;
  resolve: (deadLetter: DeadLetter) => void;
  reject: (error: unknown) => void;
}

type LaneItem = Delivery | ReplayJob;

interface Lane {
  key: string;
  items: LaneItem[];
  state: WorkerState;
  running: boolean;
  blockedBy: DeadLetter | undefined;
}

type Outcome = 'done' | 'blocked' | 'interrupted';

interface Sleep {
  handle: TimerHandle;
  wake: (completed: boolean) => void;
}

/**
 * Runs one reactor's handlers on the commits its host hands over: one lane per aggregate (events
 * of an aggregate one after another, also while one is retried), up to `concurrency` handlers at
 * once across aggregates, retries with doubling backoff through the injected clock, then a dead
 * letter and the reactor's policy (`'skip'` or `'wait'`). Shared by the in-process and the
 * JetStream hosts, which differ only in where commits come from and how they are acknowledged.
 */
export class ReactorDispatcher {
  /** The domain hosting the reactor. */
  readonly domain: DomainDefinition;
  /** The reactor. */
  readonly reactor: ReactorDefinition;
  readonly #deps: ReactorDispatcherDeps;
  readonly #handlers: Readonly<Record<string, ReactorHandler<StoredEvent> | undefined>>;
  readonly #aggregates: ReadonlySet<string>;
  readonly #lanes = new Map<string, Lane>();
  readonly #unfinished = new Set<Delivery>();
  readonly #runs = new Set<Promise<void>>();
  readonly #sleeps = new Set<Sleep>();
  readonly #slotWaiters: ((granted: boolean) => void)[] = [];
  readonly #drainWaiters: { limit: number; resolve: () => void }[] = [];
  #freeSlots: number;
  #closing = false;
  #closed = false;
  #handled = 0;
  #retries = 0;
  #deadLettered = 0;
  #inFlight = 0;

  constructor(deps: ReactorDispatcherDeps) {
    this.#deps = deps;
    this.domain = deps.domain;
    this.reactor = deps.reactor;
    this.#handlers = deps.reactor.on as Readonly<
      Record<string, ReactorHandler<StoredEvent> | undefined>
    >;
    this.#aggregates = new Set(
      Object.keys(this.#handlers).map((key) => key.slice(0, key.indexOf('.'))),
    );
    this.#freeSlots = deps.reactor.concurrency;
  }

  /** Aggregate types the reactor has handlers for. */
  get aggregates(): ReadonlySet<string> {
    return this.#aggregates;
  }

  /** Commits received and not yet acknowledged. */
  get unacknowledged(): number {
    return this.#unfinished.size;
  }

  /**
   * Takes a commit: queues it in its aggregate's lane and starts the lane if it is free. Returns
   * at once; the delivery is acknowledged when its events are handled or dead-lettered.
   */
  dispatch(delivery: Delivery): void {
    if (this.#closing) {
      // Given back by giveBack(), once the host has stopped fetching.
      this.#unfinished.add(delivery);
      return;
    }
    const lane = this.#lane(delivery.key);
    if (lane.blockedBy !== undefined && delivery.sequence <= lane.blockedBy.sequence) {
      // Delivered again after a crash between writing its dead letter and acknowledging it.
      delivery.ack();
      return;
    }
    lane.items.push(delivery);
    this.#unfinished.add(delivery);
    this.#kick(lane);
  }

  /** Blocks an aggregate's lane behind a dead letter written before (`'wait'` policy, at start). */
  block(deadLetter: DeadLetter): void {
    const lane = this.#lane(deadLetter.subject);
    if (lane.blockedBy !== undefined && lane.blockedBy.sequence <= deadLetter.sequence) return;
    lane.blockedBy = deadLetter;
    if (lane.state === 'idle') this.#transition(lane, 'DEAD_LETTER');
  }

  /** Resolves once fewer than `limit` commits are unacknowledged (back-pressure for hosts). */
  whenBelow(limit: number): Promise<void> {
    if (this.#unfinished.size < limit || this.#closing) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push({ limit, resolve }));
  }

  /** Calls `fn` with every commit received and not yet acknowledged. */
  forEachUnacknowledged(fn: (delivery: Delivery) => void): void {
    for (const delivery of this.#unfinished) fn(delivery);
  }

  /**
   * Runs a dead letter's event through the handler again, once, in its aggregate's lane (with the
   * `'wait'` policy also the rest of its commit), then removes the dead letter and lets the lane
   * go on. When the handler fails again the dead letter stays and the error is thrown.
   */
  replay(deadLetter: DeadLetter): Promise<DeadLetter> {
    if (this.#closing) return Promise.reject(notListening(this.domain.name, this.reactor.name));
    return new Promise<DeadLetter>((resolve, reject) => {
      const lane = this.#lane(deadLetter.subject);
      const job: ReplayJob = { kind: 'replay', deadLetter, resolve, reject };
      // A blocked lane runs nothing else, so the replay goes first; otherwise it waits its turn
      // behind the aggregate's events already in hand.
      if (lane.blockedBy !== undefined) lane.items.unshift(job);
      else lane.items.push(job);
      this.#kick(lane);
    });
  }

  /** Removes a dead letter without running it; its aggregate's lane goes on if it waited for it. */
  async discard(deadLetter: DeadLetter): Promise<boolean> {
    const removed = await this.#deps.deadLetters.remove(deadLetter.id);
    this.#unblock(deadLetter.id);
    return removed;
  }

  /**
   * A dispatcher for the same reactor with nothing in hand and this one's counters, for a host
   * that starts delivering again after {@link ReactorDispatcher.close} (a node that lost a
   * reactor's lease and took it back). What this one still runs stays with it.
   */
  successor(): ReactorDispatcher {
    const next = new ReactorDispatcher(this.#deps);
    next.#handled = this.#handled;
    next.#retries = this.#retries;
    next.#deadLettered = this.#deadLettered;
    return next;
  }

  /** True once {@link ReactorDispatcher.close} was called: it starts nothing again. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Counters; `pending` is what the source has not delivered yet. */
  stats(
    pending = 0,
    leadership: ReactorLeadership = { here: true, leader: undefined },
  ): ReactorStats {
    const workers = Object.fromEntries(workerStates.map((s) => [s, 0])) as Record<
      WorkerState,
      number
    >;
    let blocked = 0;
    for (const lane of this.#lanes.values()) {
      workers[lane.state] += 1;
      if (lane.blockedBy !== undefined) blocked += 1;
    }
    return {
      handled: this.#handled,
      retries: this.#retries,
      deadLetters: this.#deadLettered,
      inFlight: this.#inFlight,
      blocked,
      unacknowledged: this.#unfinished.size,
      lag: this.#unfinished.size + pending,
      workers,
      ...leadership,
    };
  }

  /** The workers now, for inspectors. */
  workers(): ReactorWorkerView[] {
    return [...this.#lanes.values()].map((lane) => ({
      domain: this.domain.name,
      reactor: this.reactor.name,
      key: lane.key,
      state: lane.state,
      queued: lane.items.length,
      ...(lane.blockedBy === undefined ? {} : { blockedBy: lane.blockedBy.id }),
    }));
  }

  /**
   * Starts nothing new, stops waiting retries, and lets running handlers finish within
   * `timeoutMs` (their commits are acknowledged when they complete in time). What it did not
   * finish stays unacknowledged; {@link ReactorDispatcher.giveBack} returns it to the source.
   */
  async close(timeoutMs: number): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      for (const waiter of this.#slotWaiters.splice(0)) waiter(false);
      for (const sleep of [...this.#sleeps]) {
        this.#deps.clock.clearTimeout(sleep.handle);
        sleep.wake(false);
      }
      for (const waiter of this.#drainWaiters.splice(0)) waiter.resolve();
      for (const lane of this.#lanes.values()) {
        for (const item of lane.items) {
          if (!isDelivery(item)) item.reject(notListening(this.domain.name, this.reactor.name));
        }
        lane.items = lane.items.filter(isDelivery);
      }
    }
    let timer: TimerHandle | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = this.#deps.clock.setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all([...this.#runs]), timedOut]);
    if (timer !== undefined) this.#deps.clock.clearTimeout(timer);
    this.#closed = true;
    if (this.#inFlight > 0) {
      this.#deps.logger.warn(
        { reactor: this.reactor.name, domain: this.domain.name, running: this.#inFlight },
        'reactor closed while handlers were still running; their events are not acknowledged and will be delivered again',
      );
    }
  }

  /**
   * After {@link ReactorDispatcher.close}: gives every commit not finished back to the source
   * (`nak`), so the next listener gets it at once, before newer ones. Returns how many.
   */
  giveBack(): number {
    const unfinished = [...this.#unfinished];
    this.#unfinished.clear();
    for (const delivery of unfinished) delivery.nak();
    return unfinished.length;
  }

  #drained(): void {
    const size = this.#unfinished.size;
    const still = this.#drainWaiters.filter((waiter) => size >= waiter.limit);
    for (const waiter of this.#drainWaiters) if (size < waiter.limit) waiter.resolve();
    this.#drainWaiters.splice(0, this.#drainWaiters.length, ...still);
  }

  #lane(key: string): Lane {
    let lane = this.#lanes.get(key);
    if (lane === undefined) {
      lane = { key, items: [], state: 'idle', running: false, blockedBy: undefined };
      this.#lanes.set(key, lane);
    }
    return lane;
  }

  #kick(lane: Lane): void {
    if (lane.running || this.#closing || !this.#canRun(lane)) return;
    lane.running = true;
    const run = this.#run(lane)
      .catch((error: unknown) => {
        this.#deps.logger.error(
          { err: error, reactor: this.reactor.name, lane: lane.key },
          'reactor lane stopped by an unexpected error; its commits will be delivered again',
        );
      })
      .finally(() => {
        this.#runs.delete(run);
        lane.running = false;
        if (lane.items.length === 0 && lane.blockedBy === undefined && lane.state === 'idle') {
          this.#lanes.delete(lane.key);
        } else if (!this.#closing && this.#canRun(lane)) {
          this.#kick(lane);
        }
      });
    this.#runs.add(run);
  }

  #canRun(lane: Lane): boolean {
    const next = lane.items[0];
    return next !== undefined && (lane.blockedBy === undefined || !isDelivery(next));
  }

  async #run(lane: Lane): Promise<void> {
    while (!this.#closing && this.#canRun(lane)) {
      const item = lane.items[0]!;
      if (!isDelivery(item)) {
        lane.items.shift();
        await this.#replay(lane, item);
        continue;
      }
      const outcome = await this.#process(lane, item);
      if (outcome === 'interrupted' || this.#closed) return;
      lane.items.shift();
      this.#unfinished.delete(item);
      item.ack();
      if (this.#drainWaiters.length > 0) this.#drained();
    }
  }

  /** Handles the events of one commit; dead-letters what cannot be handled. */
  async #process(lane: Lane, delivery: Delivery): Promise<Outcome> {
    let commit: Commit;
    try {
      commit = delivery.decode();
    } catch (error) {
      return this.#giveUp(lane, delivery, undefined, error, 0, true);
    }
    const definition = this.domain.aggregates[commit.stream.aggregate];
    for (const raw of commit.events) {
      const handler = this.#handlers[`${commit.stream.aggregate}.${raw.type}`];
      if (handler === undefined) continue;
      const event = this.#read(definition, delivery, raw);
      if (!('type' in event)) {
        const outcome = await this.#giveUp(lane, delivery, raw, event.error, 0, true);
        if (outcome !== 'done') return outcome;
        continue;
      }
      const result = await this.#handle(lane, delivery, handler, event);
      if (result === 'interrupted') return 'interrupted';
      if (result !== 'done') {
        const outcome = await this.#giveUp(lane, delivery, event, result.error, result.attempts);
        if (outcome !== 'done') return outcome;
      }
    }
    return 'done';
  }

  #read(
    definition: AnyAggregateDefinition | undefined,
    delivery: Delivery,
    raw: StoredEvent,
  ): StoredEvent | { error: JetactorError } {
    const read =
      definition === undefined
        ? { ok: false as const, why: `domain "${this.domain.name}" has no such aggregate` }
        : readEvent(definition, raw);
    if (read.ok) return read.event;
    return {
      error: new InfrastructureError(
        'CORRUPT_DATA',
        `Event ${raw.meta?.version} ("${raw.type}") of the commit at sequence ${delivery.sequence} on "${delivery.subject}" cannot be read: ${read.why}. Reactor "${this.reactor.name}" dead-lettered it without running the handler; deploy a definition that reads it (e.g. an upcaster), then replay it, or discard it.`,
        { details: { subject: delivery.subject, sequence: delivery.sequence } },
      ),
    };
  }

  /** Runs the handler with retries; 'done', 'interrupted', or why it gave up. */
  async #handle(
    lane: Lane,
    delivery: Delivery,
    handler: ReactorHandler<StoredEvent>,
    event: StoredEvent,
  ): Promise<'done' | 'interrupted' | { error: unknown; attempts: number }> {
    const { retry } = this.reactor;
    for (let attempt = 1; ; attempt++) {
      if (!(await this.#acquire())) {
        if (lane.state === 'retrying') this.#transition(lane, 'STOP');
        return 'interrupted';
      }
      this.#transition(lane, attempt === 1 ? 'HANDLE' : 'RETRY');
      const failure = await this.#invoke(handler, event, attempt);
      if (failure === undefined) {
        this.#handled += 1;
        this.#transition(lane, 'SUCCEED');
        return 'done';
      }
      if (this.#closing) {
        this.#transition(lane, 'STOP');
        return 'interrupted';
      }
      if (attempt >= retry.attempts) return { error: failure.error, attempts: attempt };
      const delay = Math.min(retry.backoffMs * 2 ** (attempt - 1), retry.maxBackoffMs);
      this.#retries += 1;
      this.#transition(lane, 'FAIL');
      delivery.working();
      this.#eventLogger(event).warn(
        { err: failure.error, attempt, retryInMs: delay },
        'reactor handler failed; retrying',
      );
      if (!(await this.#sleep(delay))) {
        this.#transition(lane, 'STOP');
        return 'interrupted';
      }
    }
  }

  /** One handler run; undefined when it succeeded. */
  async #invoke(
    handler: ReactorHandler<StoredEvent>,
    event: StoredEvent,
    attempt: number,
  ): Promise<{ error: unknown } | undefined> {
    this.#inFlight += 1;
    try {
      await handler(event, this.#context(event, attempt));
      return undefined;
    } catch (error) {
      return { error };
    } finally {
      this.#inFlight -= 1;
      this.#release();
    }
  }

  /** Writes the dead letter and applies the policy: 'done' (skip) or 'blocked' (wait). */
  async #giveUp(
    lane: Lane,
    delivery: Delivery,
    event: StoredEvent | undefined,
    error: unknown,
    attempts: number,
    poison = false,
  ): Promise<Outcome> {
    const code = isJetactorError(error) ? error.code : 'REACTOR_HANDLER_FAILED';
    const record: Omit<DeadLetter, 'id'> = {
      domain: this.domain.name,
      reactor: this.reactor.name,
      subject: delivery.subject,
      sequence: delivery.sequence,
      ...(delivery.stream === undefined
        ? {}
        : { aggregate: delivery.stream.aggregate, aggregateId: delivery.stream.id }),
      ...(event === undefined ? {} : { eventType: event.type, version: event.meta?.version }),
      error: { code, message: describeError(error) },
      attempts,
      poison,
      policy: this.reactor.deadLetters,
      time: new Date(this.#deps.clock.now()).toISOString(),
    };
    const dedupId = `${this.domain.name}.${this.reactor.name}.${delivery.sequence}.${event?.meta?.version ?? 0}`;
    const stored = await this.#store(record, dedupId, delivery);
    if (stored === undefined) {
      if (lane.state !== 'idle') this.#transition(lane, 'STOP');
      return 'interrupted';
    }
    this.#deadLettered += 1;
    this.#transition(lane, 'DEAD_LETTER');
    const logger = this.#deps.logger.child({
      reactor: this.reactor.name,
      event:
        event === undefined
          ? `${delivery.subject}#${delivery.sequence}`
          : eventRef(event, this.domain.name),
      type: event?.type,
    });
    const wait = this.reactor.deadLetters === 'wait';
    logger.error(
      {
        err: error,
        attempts,
        deadLetter: stored.id,
        subject: delivery.subject,
        sequence: delivery.sequence,
      },
      poison
        ? `reactor dead-lettered a commit it cannot read (sequence ${delivery.sequence} on ${delivery.subject}): ${describeError(error)}`
        : `reactor gave up on the event after ${attempts} tries: ${describeError(error)}; dead letter ${stored.id}${wait ? ', later events of the aggregate wait for its replay or discard' : ''}`,
    );
    if (wait) {
      lane.blockedBy = stored;
      return 'blocked';
    }
    this.#transition(lane, 'RESUME');
    return 'done';
  }

  /** Stores a dead letter, trying again with backoff while the store fails; undefined if closing. */
  async #store(
    record: Omit<DeadLetter, 'id'>,
    dedupId: string,
    delivery: Delivery,
  ): Promise<DeadLetter | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#deps.deadLetters.add(record, dedupId);
      } catch (error) {
        if (this.#closing) return undefined;
        const delay = Math.min(
          Math.max(this.reactor.retry.backoffMs, 100) * 2 ** (attempt - 1),
          Math.max(this.reactor.retry.maxBackoffMs, 1_000),
        );
        delivery.working();
        this.#deps.logger.error(
          { err: error, reactor: this.reactor.name, subject: record.subject, retryInMs: delay },
          'cannot store a dead letter; the event stays unacknowledged and is tried again',
        );
        if (!(await this.#sleep(delay))) return undefined;
      }
    }
  }

  async #replay(lane: Lane, job: ReplayJob): Promise<void> {
    const { deadLetter } = job;
    const wait = this.reactor.deadLetters === 'wait';
    try {
      const commit = await this.#deps.load(deadLetter);
      const definition = this.domain.aggregates[commit.stream.aggregate];
      const delivery: Delivery = {
        key: lane.key,
        subject: deadLetter.subject,
        sequence: deadLetter.sequence,
        stream: commit.stream,
        decode: () => commit,
        ack: () => undefined,
        nak: () => undefined,
        working: () => undefined,
      };
      for (const raw of commit.events) {
        const version = raw.meta?.version ?? 0;
        if (deadLetter.version !== undefined) {
          if (version < deadLetter.version || (!wait && version > deadLetter.version)) continue;
        }
        const handler = this.#handlers[`${commit.stream.aggregate}.${raw.type}`];
        if (handler === undefined) continue;
        const event = this.#read(definition, delivery, raw);
        if (!('type' in event)) throw event.error;
        if (!(await this.#acquire())) throw notListening(this.domain.name, this.reactor.name);
        this.#transition(lane, 'HANDLE');
        const failure = await this.#invoke(handler, event, deadLetter.attempts + 1);
        if (failure !== undefined) {
          this.#transition(lane, 'DEAD_LETTER');
          throw this.#replayFailed(deadLetter, failure.error);
        }
        this.#handled += 1;
        this.#transition(lane, 'SUCCEED');
      }
      await this.#deps.deadLetters.remove(deadLetter.id);
      this.#settle(lane);
      this.#unblock(deadLetter.id);
      this.#deps.logger.info(
        { reactor: this.reactor.name, deadLetter: deadLetter.id, subject: deadLetter.subject },
        'dead letter replayed',
      );
      job.resolve(deadLetter);
    } catch (error) {
      this.#settle(lane);
      job.reject(isJetactorError(error) ? error : this.#replayFailed(deadLetter, error));
    }
  }

  #replayFailed(deadLetter: DeadLetter, error: unknown): InfrastructureError {
    const code = isJetactorError(error) ? error.code : undefined;
    const what =
      deadLetter.eventType === undefined
        ? 'a commit'
        : `${deadLetter.eventType} version ${deadLetter.version}`;
    return new InfrastructureError(
      'REACTOR_HANDLER_FAILED',
      `Replaying dead letter ${deadLetter.id} (${what} at sequence ${deadLetter.sequence} on "${deadLetter.subject}") through reactor "${this.reactor.name}" failed again: ${describeError(error)}${code === undefined ? '' : ` (${code})`}. The dead letter stays; fix the cause and replay it again, or discard it.`,
      { cause: error, details: { id: deadLetter.id, ...(code === undefined ? {} : { code }) } },
    );
  }

  /** Puts a lane back in the state its block says: dead-lettered while blocked, else idle. */
  #settle(lane: Lane): void {
    if (lane.blockedBy !== undefined && lane.state === 'idle')
      this.#transition(lane, 'DEAD_LETTER');
    if (lane.blockedBy === undefined && lane.state === 'deadLettered') {
      this.#transition(lane, 'RESUME');
    }
  }

  #unblock(id: number): void {
    for (const lane of this.#lanes.values()) {
      if (lane.blockedBy?.id !== id) continue;
      lane.blockedBy = undefined;
      if (lane.state === 'deadLettered') this.#transition(lane, 'RESUME');
      if (lane.items.length === 0 && !lane.running) this.#lanes.delete(lane.key);
      else this.#kick(lane);
    }
  }

  #context(event: StoredEvent, attempt: number): ReactorContext {
    const ref = eventRef(event, this.domain.name);
    let sends = 0;
    const send = (command: CommandRequest): Promise<CommandResult> => {
      sends += 1;
      return this.#deps.send({
        ...command,
        commandId: command.commandId ?? `${this.reactor.name}:${ref}:${sends}`,
        correlationId: command.correlationId ?? event.meta.correlationId,
        causationId: command.causationId ?? ref,
      });
    };
    // The event's child logger is made only when the handler uses it (a pino child with
    // redaction costs more than many handlers).
    const eventLogger = (): Logger => this.#eventLogger(event);
    let logger: Logger | undefined;
    return {
      get logger(): Logger {
        return (logger ??= eventLogger());
      },
      clock: this.#deps.clock,
      attempt,
      send,
      aggregate: <T extends AnyAggregateDefinition>(
        definition: T,
        id: string,
        domain?: string,
      ): AggregateRef<T> => {
        const domainName =
          domain ??
          (this.domain.aggregates[definition.name] === definition ? this.domain.name : undefined);
        const ref: Record<string, unknown> = {};
        for (const name of Object.keys(definition.commands)) {
          ref[name] = (input: unknown, options: CommandOptions = {}) =>
            send({
              ...options,
              ...(domainName === undefined ? {} : { domain: domainName }),
              aggregate: definition.name,
              id,
              command: name,
              input,
            });
        }
        return ref as AggregateRef<T>;
      },
    };
  }

  #eventLogger(event: StoredEvent): Logger {
    return this.#deps.logger.child({
      reactor: this.reactor.name,
      event: eventRef(event, this.domain.name),
      type: event.type,
    });
  }

  #transition(lane: Lane, event: WorkerEvent): void {
    lane.state = nextWorkerState(lane.state, event);
  }

  #acquire(): Promise<boolean> {
    if (this.#closing) return Promise.resolve(false);
    if (this.#freeSlots > 0) {
      this.#freeSlots -= 1;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.#slotWaiters.push(resolve));
  }

  #release(): void {
    const next = this.#slotWaiters.shift();
    if (next !== undefined) next(true);
    else this.#freeSlots += 1;
  }

  /** Waits `ms` on the clock; false when woken early by close. */
  #sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const sleep: Sleep = {
        handle: this.#deps.clock.setTimeout(() => sleep.wake(true), ms),
        wake: (completed) => {
          this.#sleeps.delete(sleep);
          resolve(completed);
        },
      };
      this.#sleeps.add(sleep);
    });
  }
}

function isDelivery(item: LaneItem): item is Delivery {
  return !('kind' in item);
}

function eventRef(event: StoredEvent, domain: string): string {
  const meta = event.meta;
  return `${meta?.domain ?? domain}/${meta?.aggregate}/${meta?.aggregateId}@${meta?.version}`;
}

/** The error of a request to a reactor that is not (or no longer) listening. */
export function notListening(domain: string, reactor: string): InfrastructureError {
  return new InfrastructureError(
    'REACTOR_UNAVAILABLE',
    `Reactor "${reactor}" of domain "${domain}" is not listening here (its node is stopping or stopped); try again on a running node.`,
  );
}

/** The error for a dead letter id that does not exist or belongs to another reactor. */
export function deadLetterNotFound(id: number, where: string): RejectionError {
  return new RejectionError(
    'DEAD_LETTER_NOT_FOUND',
    `No dead letter ${JSON.stringify(id)}${where}: it was replayed or discarded already, or the id is wrong. List them with \`jetactor deadletters list\`.`,
    { details: { id } },
  );
}
