import type { Clock, TimerHandle } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type { AnyProjectionDefinition, ProjectionHandler } from '../domain/define-projection.js';
import type { StoredEvent } from '../domain/events.js';
import { readEvent } from '../domain/read-event.js';
import { InfrastructureError, JetactorError, describeError, isJetactorError } from '../errors.js';
import type { Commit, StreamRef } from '../event-store/event-store.js';
import type { Logger } from '../logger.js';
import type { DeadLetter, DeadLetterStore } from '../reactors/dead-letter-store.js';
import { HandlerFailure, type ProjectionUnit, type ReadModelStore } from './read-model-store.js';

/** One commit handed to a projection by its source, in stream order. */
export interface ProjectionDelivery {
  /** Position of the commit in its domain's stream. */
  readonly sequence: number;
  /** Where it was read (the NATS subject, or `<domain>.<Aggregate>.<id>` in memory). */
  readonly subject: string;
  /** The aggregate, when the subject names one. */
  readonly stream: StreamRef | undefined;
  /** The commit; throws a `CORRUPT_DATA` error when the message is not one (poison). */
  decode(): Commit;
  /** Applied: the source may forget it and everything before it. */
  ack(): void;
  /** Still in hand: the source should not deliver it again yet. */
  working(): void;
}

/**
 * Where a projection is:
 * - `stopped`: not running here;
 * - `standby`: another node holds its lease and runs it (JetStream);
 * - `opening`: its read model is being opened (migration, recovery of an interrupted batch);
 * - `running`: applying commits as they come (or caught up, waiting for more);
 * - `retrying`: a handler or the read model's storage failed and is tried again after a backoff;
 * - `blocked`: an event was dead-lettered with the `'wait'` policy; nothing more is applied until
 *   it is replayed or discarded;
 * - `rebuilding`: its read model is being dropped and built again from the start;
 * - `failed`: it cannot run (a broken migration, or another node wrote its read model); see the logs.
 */
export type ProjectionState =
  'stopped' | 'standby' | 'opening' | 'running' | 'retrying' | 'blocked' | 'rebuilding' | 'failed';

/** A projection's progress, as `node.stats().projections['<domain>.<projection>']` shows it. */
export interface ProjectionStats {
  /** Where it is. */
  state: ProjectionState;
  /** `kv`, `memory` or `postgres`. */
  store: 'kv' | 'memory' | 'postgres';
  /** The bucket or schema. */
  location: string;
  /** Position of the last applied commit (the checkpoint). */
  position: number;
  /** Commits of the domain stored and not applied yet (received and queued, or not delivered). */
  lag: number;
  /** Events applied since it started here. */
  applied: number;
  /** Batches written since it started here. */
  batches: number;
  /** Handler runs that failed and were tried again. */
  retries: number;
  /** Events dead-lettered since it started here. */
  deadLetters: number;
  /** Id of the dead letter it waits behind (`'wait'` policy). */
  blockedBy?: number;
  /** The last failure, when it is retrying or failed. */
  lastError?: string;
}

/** What a {@link ProjectionRunner} needs. */
export interface ProjectionRunnerDeps {
  /** The domain hosting the projection. */
  domain: DomainDefinition;
  /** The projection. */
  projection: AnyProjectionDefinition;
  /** Its read model. */
  store: ReadModelStore<any, any>;
  /** Clock of backoffs and timeouts. */
  clock: Clock;
  /** The node's logger. */
  logger: Logger;
  /** Where dead letters go (shared with the reactors). */
  deadLetters: DeadLetterStore;
  /** Most commits applied in one batch. */
  maxBatch: number;
  /** Reads the commit a dead letter refers to (for a replay after the projection went on). */
  load: (deadLetter: DeadLetter) => Promise<Commit>;
}

interface Built {
  unit: ProjectionUnit;
  handlers: ProjectionHandler<StoredEvent, unknown>[];
  delivery: ProjectionDelivery | undefined;
}

type Job =
  | {
      kind: 'replay';
      deadLetter: DeadLetter;
      resolve: (d: DeadLetter) => void;
      reject: (e: unknown) => void;
    }
  | {
      kind: 'discard';
      deadLetter: DeadLetter;
      resolve: (d: DeadLetter) => void;
      reject: (e: unknown) => void;
    };

interface Waiter {
  position: number;
  resolve: (reached: boolean) => void;
  timer: TimerHandle | undefined;
}

class Interrupted extends Error {}

/**
 * Applies one projection's commits in stream order, in batches, each written atomically with the
 * checkpoint by its read-model store. Commits at or below the checkpoint are skipped, so a commit
 * delivered again is never applied twice. A failing handler is retried with doubling backoff (the
 * batch before it is written first); after the last try its event is dead-lettered, then left out
 * (`'skip'`) or waited on (`'wait'`) until the dead letter is replayed or discarded. A failing
 * store is retried without end, re-opening it first (which finishes an interrupted batch).
 *
 * The source (a durable JetStream consumer, or the in-memory store's subscription) pushes
 * deliveries; {@link ProjectionRunner.push} reports gaps so the source can read again.
 */
export class ProjectionRunner {
  /** The projection. */
  readonly projection: AnyProjectionDefinition;
  /** Its domain. */
  readonly domain: DomainDefinition;
  readonly #deps: ProjectionRunnerDeps;
  readonly #handled: ReadonlySet<string>;
  readonly #logger: Logger;
  #state: ProjectionState = 'stopped';
  #position = 0;
  #received = 0;
  #queue: ProjectionDelivery[] = [];
  #jobs: Job[] = [];
  #blockedBy: DeadLetter | undefined;
  readonly #exclusions = new Map<number, Set<number> | 'all'>();
  readonly #waiters = new Set<Waiter>();
  readonly #drainWaiters: { limit: number; resolve: () => void }[] = [];
  #wake: (() => void) | undefined;
  #sleep: { handle: TimerHandle; done: (completed: boolean) => void } | undefined;
  #loop: Promise<void> | undefined;
  #stopping = false;
  #attempt = 1;
  #applied = 0;
  #batches = 0;
  #retries = 0;
  #deadLettered = 0;
  #lastError: string | undefined;
  /** Commits the source holds and has not delivered yet (set by the source). */
  pending = 0;
  /** Called when the runner stops because another writer moved the checkpoint. */
  onFenced: ((error: JetactorError) => void) | undefined;

  constructor(deps: ProjectionRunnerDeps) {
    this.#deps = deps;
    this.projection = deps.projection;
    this.domain = deps.domain;
    this.#handled = new Set(Object.keys(deps.projection.on).map((k) => k.slice(0, k.indexOf('.'))));
    this.#logger = deps.logger.child({
      projection: deps.projection.name,
      domain: deps.domain.name,
    });
  }

  /** Where it is. */
  get state(): ProjectionState {
    return this.#state;
  }

  /** Sets the state shown while it does not run here (`standby`, `rebuilding`, `failed`, …). */
  set state(state: ProjectionState) {
    this.#state = state;
  }

  /** Position of the last applied commit. */
  get position(): number {
    return this.#position;
  }

  /** Position of the last commit received. */
  get received(): number {
    return this.#received;
  }

  /** True while the loop runs. */
  get running(): boolean {
    return this.#loop !== undefined && !this.#stopping;
  }

  /**
   * Opens the read model (migration, recovery), restores the block of a `'wait'` dead letter and
   * starts applying. Resolves with the checkpoint: the source delivers from the next position.
   */
  async start(): Promise<number> {
    if (this.#loop !== undefined) await this.stop(0);
    this.#stopping = false;
    this.#state = 'opening';
    let position: number;
    try {
      position = await this.#deps.store.open((why) =>
        this.#logger.warn(
          { why, location: this.#deps.store.location },
          'read model dropped; it is built again from the start of the stream',
        ),
      );
    } catch (error) {
      this.#state = 'failed';
      this.#lastError = describeError(error);
      throw error;
    }
    this.#position = position;
    this.#received = position;
    this.#queue = [];
    this.#exclusions.clear();
    this.#blockedBy = undefined;
    if (this.projection.deadLetters === 'wait') {
      const letters = await this.#deps.deadLetters.list({
        domain: this.domain.name,
        reactor: this.projection.name,
      });
      for (const letter of letters) {
        if (letter.sequence <= position) continue;
        if (this.#blockedBy === undefined || letter.sequence < this.#blockedBy.sequence) {
          this.#blockedBy = letter;
        }
      }
    }
    this.#state = this.#blockedBy === undefined ? 'running' : 'blocked';
    this.#lastError = undefined;
    this.#loop = this.#run().catch((error: unknown) => {
      this.#logger.error({ err: error }, 'projection stopped by an unexpected error');
      this.#state = 'failed';
      this.#lastError = describeError(error);
    });
    this.#notify();
    return position;
  }

  /**
   * Takes a delivery: `'ok'` when queued, `'duplicate'` when at or below what it received already
   * (delivered again: ignored), `'gap'` when commits are missing before it (the source should read
   * again from {@link ProjectionRunner.received}; with `acceptGap`, they are taken as gone).
   */
  push(delivery: ProjectionDelivery, acceptGap = false): 'ok' | 'duplicate' | 'gap' {
    if (this.#loop === undefined || this.#stopping || delivery.sequence <= this.#received) {
      return 'duplicate';
    }
    if (delivery.sequence > this.#received + 1 && !acceptGap) return 'gap';
    this.#queue.push(delivery);
    this.#received = delivery.sequence;
    this.#kick();
    return 'ok';
  }

  /** Resolves once fewer than `limit` commits are in hand, or the runner stops (back-pressure). */
  whenBelow(limit: number): Promise<void> {
    if (this.#queue.length < limit || this.#loop === undefined || this.#stopping) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#drainWaiters.push({ limit, resolve }));
  }

  /** Commits received and not applied yet. */
  get inHand(): number {
    return this.#queue.length;
  }

  /** Calls `fn` with every delivery received and not applied yet. */
  forEachInHand(fn: (delivery: ProjectionDelivery) => void): void {
    for (const delivery of this.#queue) fn(delivery);
  }

  /**
   * Resolves true once the checkpoint reaches `position`, false after `timeoutMs`, and
   * `'stopped'` when the runner stops first.
   */
  waitFor(position: number, timeoutMs: number): Promise<boolean | 'stopped'> {
    if (this.#position >= position) return Promise.resolve(true);
    if (this.#loop === undefined || this.#stopping) return Promise.resolve('stopped');
    return new Promise<boolean>((resolve) => {
      const waiter: Waiter = {
        position,
        resolve: (reached) => {
          if (waiter.timer !== undefined) this.#deps.clock.clearTimeout(waiter.timer);
          this.#waiters.delete(waiter);
          resolve(reached);
        },
        timer: undefined,
      };
      waiter.timer = this.#deps.clock.setTimeout(() => waiter.resolve(false), timeoutMs);
      this.#waiters.add(waiter);
    }).then((reached) => (reached === true || this.#loop !== undefined ? reached : 'stopped'));
  }

  /**
   * Replays a dead letter of this projection: with `'wait'`, the commit it blocks is applied (once,
   * no retries) and the projection goes on; with `'skip'`, its event is applied out of order, at
   * most once (the read model records the replay). The dead letter stays when it fails again.
   */
  replay(deadLetter: DeadLetter): Promise<DeadLetter> {
    return this.#enqueue('replay', deadLetter);
  }

  /** Drops a dead letter; when the projection waits behind it, it goes on without its event. */
  discard(deadLetter: DeadLetter): Promise<DeadLetter> {
    return this.#enqueue('discard', deadLetter);
  }

  /** Counters. */
  stats(): ProjectionStats {
    return {
      state: this.#state,
      store: this.#deps.store.kind,
      location: this.#deps.store.location,
      position: this.#position,
      lag: this.pending + this.#queue.length,
      applied: this.#applied,
      batches: this.#batches,
      retries: this.#retries,
      deadLetters: this.#deadLettered,
      ...(this.#blockedBy === undefined ? {} : { blockedBy: this.#blockedBy.id }),
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  /**
   * Stops applying: the batch being written finishes (within `timeoutMs`), nothing else starts.
   * What was received and not applied is forgotten (the source delivers it again from the
   * checkpoint next time).
   */
  async stop(timeoutMs = 10_000): Promise<void> {
    const loop = this.#loop;
    if (loop === undefined) return;
    this.#stopping = true;
    this.#wake?.();
    if (this.#sleep !== undefined) {
      this.#deps.clock.clearTimeout(this.#sleep.handle);
      this.#sleep.done(false);
    }
    for (const job of this.#jobs.splice(0)) job.reject(this.#unavailable());
    let timer: TimerHandle | undefined;
    await Promise.race([
      loop,
      new Promise<void>((resolve) => {
        timer = this.#deps.clock.setTimeout(resolve, timeoutMs);
      }),
    ]);
    if (timer !== undefined) this.#deps.clock.clearTimeout(timer);
    this.#loop = undefined;
    this.#queue = [];
    for (const waiter of [...this.#waiters]) waiter.resolve(false);
    this.#drain();
    if (this.#state !== 'failed') this.#state = 'stopped';
  }

  #enqueue(kind: Job['kind'], deadLetter: DeadLetter): Promise<DeadLetter> {
    if (this.#loop === undefined || this.#stopping) return Promise.reject(this.#unavailable());
    return new Promise((resolve, reject) => {
      this.#jobs.push({ kind, deadLetter, resolve, reject });
      this.#kick();
    });
  }

  #kick(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      const job = this.#jobs[0];
      if (job !== undefined) {
        const done = await this.#runJob(job);
        if (done) {
          this.#jobs.shift();
          continue;
        }
      }
      const items = this.#take();
      if (items.length === 0) {
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        continue;
      }
      try {
        await this.#process(items);
        failures = 0;
        if (this.#state === 'retrying') this.#state = this.#blockedBy ? 'blocked' : 'running';
      } catch (error) {
        if (error instanceof Interrupted || this.#stopping) return;
        if (isJetactorError(error) && error.code === 'PROJECTION_FENCED') {
          this.#logger.error(
            { err: error },
            'another node wrote the read model; this node stops running the projection',
          );
          this.#state = 'failed';
          this.#lastError = error.message;
          this.#stopping = true;
          this.onFenced?.(error);
          return;
        }
        failures += 1;
        const delay = Math.min(100 * 2 ** Math.min(failures - 1, 9), 30_000);
        this.#state = 'retrying';
        this.#lastError = describeError(error);
        this.#logger.warn(
          { err: error, retryInMs: delay },
          'projection could not write its read model; trying again',
        );
        if (!(await this.#pause(delay))) return;
        try {
          this.#advance(await this.#deps.store.open(), undefined);
        } catch (reopen) {
          this.#lastError = describeError(reopen);
        }
      } finally {
        const rest = items.filter((item) => item.sequence > this.#position);
        this.#queue.unshift(...rest);
      }
    }
  }

  /** The next batch: queued commits in order, up to `maxBatch`, none at or after a block. */
  #take(): ProjectionDelivery[] {
    let count = 0;
    const limit = Math.min(this.#queue.length, this.#deps.maxBatch);
    while (count < limit) {
      const next = this.#queue[count]!;
      if (this.#blockedBy !== undefined && next.sequence >= this.#blockedBy.sequence) break;
      count += 1;
    }
    const taken = this.#queue.splice(0, count).filter((item) => item.sequence > this.#position);
    this.#drain();
    return taken;
  }

  async #process(items: readonly ProjectionDelivery[]): Promise<void> {
    const units: Built[] = [];
    for (const item of items) {
      const built = await this.#build(item);
      if (built === 'blocked') break;
      units.push(built);
    }
    await this.#applyUnits(units);
  }

  async #applyUnits(units: Built[]): Promise<'done' | 'blocked'> {
    if (units.length === 0) return 'done';
    try {
      await this.#apply(units);
      return 'done';
    } catch (error) {
      if (!(error instanceof HandlerFailure)) throw error;
      if (error.unit > 0 && (await this.#applyUnits(units.slice(0, error.unit))) === 'blocked') {
        return 'blocked';
      }
      return this.#retry(units[error.unit]!, error);
    }
  }

  /** Retries one commit whose handler failed; dead-letters after the last try. */
  async #retry(built: Built, failure: HandlerFailure): Promise<'done' | 'blocked'> {
    const { retry } = this.projection;
    let current = failure;
    let tries = 1;
    let unit = built;
    for (;;) {
      const event = unit.unit.events[current.event]!;
      if (tries >= retry.attempts) {
        const letter = await this.#deadLetter(unit, event, current.cause, tries, false);
        if (this.projection.deadLetters === 'wait') {
          this.#block(letter);
          return 'blocked';
        }
        this.#exclude(unit.unit.position, event.meta?.version);
        unit = this.#without(unit, current.event);
        tries = 0;
      } else {
        const delay = Math.min(retry.backoffMs * 2 ** (tries - 1), retry.maxBackoffMs);
        this.#retries += 1;
        this.#state = 'retrying';
        this.#lastError = describeError(current.cause);
        this.#eventLogger(event).warn(
          { err: current.cause, attempt: tries, retryInMs: delay },
          'projection handler failed; retrying',
        );
        unit.delivery?.working();
        if (!(await this.#pause(delay))) throw new Interrupted();
        this.#state = 'running';
      }
      tries += 1;
      try {
        await this.#apply([unit], tries);
        return 'done';
      } catch (error) {
        if (!(error instanceof HandlerFailure)) throw error;
        current = error;
      }
    }
  }

  /** Writes units as one batch and moves the checkpoint past the last. */
  async #apply(units: readonly Built[], attempt = 1): Promise<void> {
    const last = units[units.length - 1]!;
    this.#attempt = attempt;
    await this.#deps.store.apply(
      units.map((u) => u.unit),
      (writer, u, e) => this.#invoke(units[u]!, e, writer),
      { expected: this.#position, to: last.unit.position },
    );
    this.#batches += 1;
    for (const unit of units) this.#applied += unit.unit.events.length;
    this.#advance(last.unit.position, last.delivery);
  }

  async #invoke(built: Built, index: number, writer: unknown): Promise<void> {
    const event = built.unit.events[index]!;
    const handler = built.handlers[index]!;
    // The event's child logger is made only when the handler uses it (a pino child with
    // redaction costs more than most handlers).
    const eventLogger = (): Logger => this.#eventLogger(event);
    let logger: Logger | undefined;
    await handler(event, {
      ...(writer as object),
      get logger(): Logger {
        return (logger ??= eventLogger());
      },
      clock: this.#deps.clock,
      position: built.unit.position,
      attempt: this.#attempt,
    });
  }

  #advance(position: number, delivery: ProjectionDelivery | undefined): void {
    if (position < this.#position) return;
    this.#position = position;
    if (this.#received < position) this.#received = position;
    delivery?.ack();
    for (const key of this.#exclusions.keys()) if (key <= position) this.#exclusions.delete(key);
    this.#notify();
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) {
      if (this.#position >= waiter.position) waiter.resolve(true);
    }
    this.#drain();
  }

  #drain(): void {
    if (this.#drainWaiters.length === 0) return;
    const size = this.#loop === undefined || this.#stopping ? -1 : this.#queue.length;
    for (let i = this.#drainWaiters.length - 1; i >= 0; i--) {
      const waiter = this.#drainWaiters[i]!;
      if (size < waiter.limit) {
        this.#drainWaiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }

  /**
   * The unit of a commit: its events that have handlers, read (upcast, validated). Events that
   * cannot be read are dead-lettered at once (`strict`: thrown instead, for replays).
   */
  async #build(item: ProjectionDelivery, strict = false): Promise<Built | 'blocked'> {
    const empty: Built = {
      unit: { position: item.sequence, events: [] },
      handlers: [],
      delivery: item,
    };
    const excluded = this.#exclusions.get(item.sequence);
    if (excluded === 'all') return empty;
    if (item.stream !== undefined && !this.#handled.has(item.stream.aggregate)) return empty;
    let commit: Commit;
    try {
      commit = item.decode();
    } catch (error) {
      if (strict) throw error;
      const letter = await this.#deadLetter(empty, undefined, error, 0, true);
      if (this.projection.deadLetters === 'wait') {
        this.#block(letter);
        return 'blocked';
      }
      this.#exclusions.set(item.sequence, 'all');
      return empty;
    }
    const definition = this.domain.aggregates[commit.stream.aggregate];
    const events: StoredEvent[] = [];
    const handlers: ProjectionHandler<StoredEvent, unknown>[] = [];
    const on = this.projection.on as Readonly<
      Record<string, ProjectionHandler<StoredEvent, unknown> | undefined>
    >;
    for (const raw of commit.events) {
      const handler = on[`${commit.stream.aggregate}.${raw.type}`];
      if (handler === undefined) continue;
      if (excluded?.has(raw.meta?.version)) continue;
      const read =
        definition === undefined
          ? { ok: false as const, why: `domain "${this.domain.name}" has no such aggregate` }
          : readEvent(definition, raw);
      if (!read.ok) {
        const error = new InfrastructureError(
          'CORRUPT_DATA',
          `Event ${raw.meta?.version} ("${raw.type}") of the commit at sequence ${item.sequence} on "${item.subject}" cannot be read: ${read.why}. Projection "${this.projection.name}" dead-lettered it without running the handler; deploy a definition that reads it (e.g. an upcaster), then replay it, or discard it.`,
          { details: { subject: item.subject, sequence: item.sequence } },
        );
        if (strict) throw error;
        const letter = await this.#deadLetter(empty, raw, error, 0, true);
        if (this.projection.deadLetters === 'wait') {
          this.#block(letter);
          return 'blocked';
        }
        this.#exclude(item.sequence, raw.meta?.version);
        continue;
      }
      events.push(read.event);
      handlers.push(handler);
    }
    return { unit: { position: item.sequence, events }, handlers, delivery: item };
  }

  #without(built: Built, index: number): Built {
    return {
      unit: {
        position: built.unit.position,
        events: built.unit.events.filter((_, i) => i !== index),
      },
      handlers: built.handlers.filter((_, i) => i !== index),
      delivery: built.delivery,
    };
  }

  #exclude(position: number, version: number | undefined): void {
    if (version === undefined) {
      this.#exclusions.set(position, 'all');
      return;
    }
    const known = this.#exclusions.get(position);
    if (known === 'all') return;
    if (known === undefined) this.#exclusions.set(position, new Set([version]));
    else known.add(version);
  }

  #block(letter: DeadLetter): void {
    this.#blockedBy = letter;
    this.#state = 'blocked';
  }

  async #deadLetter(
    built: Built,
    event: StoredEvent | undefined,
    error: unknown,
    attempts: number,
    poison: boolean,
  ): Promise<DeadLetter> {
    const delivery = built.delivery;
    const code = isJetactorError(error) ? error.code : 'PROJECTION_HANDLER_FAILED';
    const record: Omit<DeadLetter, 'id'> = {
      domain: this.domain.name,
      reactor: this.projection.name,
      subject: delivery?.subject ?? '',
      sequence: built.unit.position,
      ...(delivery?.stream === undefined
        ? {}
        : { aggregate: delivery.stream.aggregate, aggregateId: delivery.stream.id }),
      ...(event === undefined ? {} : { eventType: event.type, version: event.meta?.version }),
      error: { code, message: describeError(error) },
      attempts,
      poison,
      policy: this.projection.deadLetters,
      time: new Date(this.#deps.clock.now()).toISOString(),
    };
    const dedupId = `${this.domain.name}.${this.projection.name}.${built.unit.position}.${event?.meta?.version ?? 0}`;
    for (let attempt = 1; ; attempt++) {
      try {
        const stored = await this.#deps.deadLetters.add(record, dedupId);
        this.#deadLettered += 1;
        this.#logger.error(
          {
            err: error,
            attempts,
            deadLetter: stored.id,
            subject: record.subject,
            sequence: record.sequence,
          },
          poison
            ? `projection dead-lettered a commit it cannot read (sequence ${record.sequence} on ${record.subject}): ${describeError(error)}`
            : `projection gave up on ${event?.type ?? 'an event'} at sequence ${record.sequence} after ${attempts} tries: ${describeError(error)}; dead letter ${stored.id}${this.projection.deadLetters === 'wait' ? ', the projection waits for its replay or discard' : ', the projection goes on without it'}`,
        );
        return stored;
      } catch (failure) {
        const delay = Math.min(100 * 2 ** (attempt - 1), 30_000);
        this.#logger.error(
          { err: failure, retryInMs: delay },
          'cannot store a dead letter; trying again',
        );
        delivery?.working();
        if (!(await this.#pause(delay))) throw new Interrupted();
      }
    }
  }

  /** Runs a replay or discard; false when it must wait for its commit to arrive. */
  async #runJob(job: Job): Promise<boolean> {
    const letter = job.deadLetter;
    try {
      if (job.kind === 'discard') {
        await this.#deps.deadLetters.remove(letter.id);
        if (this.#blockedBy?.id === letter.id) {
          this.#exclude(letter.sequence, letter.version);
          this.#blockedBy = undefined;
          this.#state = 'running';
        }
        job.resolve(letter);
        return true;
      }
      if (this.#blockedBy?.id === letter.id) {
        const item = this.#queue[0];
        if (item === undefined || item.sequence < letter.sequence) return false;
        let built: Built | 'blocked';
        if (item.sequence === letter.sequence) {
          built = await this.#build(item, true);
        } else {
          // The commit is already behind the source (it was delivered before a restart).
          built = await this.#loaded(letter, false);
        }
        if (built === 'blocked') throw new Error('unreachable');
        this.#attempt = letter.attempts + 1;
        try {
          await this.#apply([built], letter.attempts + 1);
        } catch (error) {
          throw this.#replayFailed(letter, error);
        }
        if (item.sequence === letter.sequence) this.#queue.shift();
        await this.#deps.deadLetters.remove(letter.id);
        this.#blockedBy = undefined;
        this.#state = 'running';
      } else if (letter.sequence <= this.#position) {
        const built = await this.#loaded(letter, true);
        this.#attempt = letter.attempts + 1;
        try {
          await this.#deps.store.apply(
            [built.unit],
            (writer, u, e) => this.#invoke(built, e, writer),
            { expected: this.#position, to: this.#position, mark: letter.id },
          );
        } catch (error) {
          throw this.#replayFailed(letter, error);
        }
        await this.#deps.deadLetters.remove(letter.id);
      } else {
        throw new InfrastructureError(
          'PROJECTION_UNAVAILABLE',
          `Dead letter ${letter.id} (sequence ${letter.sequence}) is ahead of projection "${this.projection.name}" (at ${this.#position}) and it does not wait behind it; it is applied when the projection gets there. Discard it if it should not be.`,
        );
      }
      this.#logger.info(
        { deadLetter: letter.id, sequence: letter.sequence },
        'dead letter replayed',
      );
      job.resolve(letter);
    } catch (error) {
      job.reject(error);
    }
    return true;
  }

  /** The unit of a dead letter's commit read from the store; only its event when `onlyEvent`. */
  async #loaded(letter: DeadLetter, onlyEvent: boolean): Promise<Built> {
    const commit = await this.#deps.load(letter);
    const item: ProjectionDelivery = {
      sequence: letter.sequence,
      subject: letter.subject,
      stream: commit.stream,
      decode: () =>
        onlyEvent && letter.version !== undefined
          ? { ...commit, events: commit.events.filter((e) => e.meta?.version === letter.version) }
          : commit,
      ack: () => undefined,
      working: () => undefined,
    };
    const built = await this.#build(item, true);
    if (built === 'blocked') throw new Error('unreachable');
    return { ...built, delivery: undefined };
  }

  #replayFailed(letter: DeadLetter, error: unknown): JetactorError {
    if (isJetactorError(error) && !(error instanceof HandlerFailure)) return error;
    const cause = error instanceof HandlerFailure ? error.cause : error;
    const code = isJetactorError(cause) ? cause.code : undefined;
    return new InfrastructureError(
      'PROJECTION_HANDLER_FAILED',
      `Replaying dead letter ${letter.id} (${letter.eventType ?? 'a commit'} at sequence ${letter.sequence} on "${letter.subject}") through projection "${this.projection.name}" failed again: ${describeError(cause)}${code === undefined ? '' : ` (${code})`}. The dead letter stays; fix the cause and replay it again, or discard it.`,
      { cause, details: { id: letter.id, ...(code === undefined ? {} : { code }) } },
    );
  }

  #unavailable(): InfrastructureError {
    return new InfrastructureError(
      'PROJECTION_UNAVAILABLE',
      `Projection "${this.projection.name}" of domain "${this.domain.name}" is not running here (its node is stopping, stopped, or stands by); try again on the node that runs it.`,
    );
  }

  #eventLogger(event: StoredEvent): Logger {
    const meta = event.meta;
    return this.#logger.child({
      event: `${meta?.domain ?? this.domain.name}/${meta?.aggregate}/${meta?.aggregateId}@${meta?.version}`,
      type: event.type,
    });
  }

  /** Waits `ms` on the clock; false when woken by stop. */
  #pause(ms: number): Promise<boolean> {
    if (this.#stopping) return Promise.resolve(false);
    return new Promise((resolve) => {
      const sleep = {
        handle: this.#deps.clock.setTimeout(() => sleep.done(true), ms),
        done: (completed: boolean) => {
          if (this.#sleep === sleep) this.#sleep = undefined;
          resolve(completed);
        },
      };
      this.#sleep = sleep;
    });
  }
}
