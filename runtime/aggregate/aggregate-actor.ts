import type { AnyMachineSnapshot, Snapshot } from 'xstate';
import type { Clock } from '../clock.js';
import type { AnyAggregateDefinition, DecideContext } from '../domain/define-aggregate.js';
import type { StoredEvent } from '../domain/events.js';
import {
  ConflictError,
  InfrastructureError,
  JetactorError,
  RejectionError,
  describeError,
  isConflictError,
} from '../errors.js';
import { pushed } from '../arrays.js';
import { readEvent } from '../domain/read-event.js';
import type {
  AppendRequest,
  AppendResult,
  AppendWaiter,
  CommandRecord,
  Commit,
  EventStore,
  StreamRef,
} from '../event-store/event-store.js';
import type { SnapshotStore } from '../event-store/snapshot-store.js';
import type { Logger } from '../logger.js';
import type { InspectionHook } from '../node/inspection-hook.js';
import {
  nextLifecycleState,
  type LifecycleEvent,
  type LifecycleState,
} from './aggregate-lifecycle.js';
import type { Command, CommandResult } from './command.js';
import { MachineSteps } from './machine-steps.js';
import { RecentCommands } from './recent-commands.js';

/** Tuning of aggregate actors. */
export interface AggregateActorOptions {
  /** Most commands decided into one commit (group commit). */
  maxBatch: number;
  /** How many times a command is decided again after a concurrency conflict before it fails. */
  maxConflictRetries: number;
  /** How many recent command ids (with their results) an actor remembers for idempotent replies. */
  recentCommands: number;
  /** Take a snapshot every this many events (0: never); needs a snapshot store. */
  snapshotEvery: number;
}

/** What an actor needs from its host. */
export interface AggregateActorDeps {
  domain: string;
  definition: AnyAggregateDefinition;
  id: string;
  store: EventStore;
  /** Where snapshots are loaded from and saved to, if anywhere. */
  snapshots?: SnapshotStore | undefined;
  clock: Clock;
  logger: Logger;
  options: AggregateActorOptions;
  /** Called once when the actor fails; the supervisor restarts it on its next command. */
  onFailed?: (actor: AggregateActor, error: JetactorError) => void;
  /** Called on every `ConflictError` from the store (another writer appended first). */
  onConflict?: (actor: AggregateActor) => void;
  /** Where stored commits are reported while an inspector is attached. */
  inspection?: InspectionHook | undefined;
}

/** What an actor shows of itself. */
export interface AggregateView {
  /** Lifecycle state of the actor. */
  lifecycle: LifecycleState;
  /** State value of the domain machine (confirmed state: stored events only). */
  value: unknown;
  /** Context of the domain machine (confirmed state). */
  context: unknown;
  /** Version: number of events applied. */
  version: number;
  /** Position of the last commit applied. */
  position: number;
  /** Commands waiting in the mailbox. */
  mailboxDepth: number;
}

interface Envelope {
  command: Command;
  resolve: (result: CommandResult) => void;
  reject: (error: unknown) => void;
  attempts: number;
}

/**
 * An empty mailbox, shared: `pushed` replaces it with a new array at the first command, and an
 * empty mailbox is never written to (no array per batch taken).
 */
const NO_ENVELOPES: Envelope[] = [];

/** A settled promise, whose reactions run as microtasks. */
const SETTLED = Promise.resolve();

/** The results recalled in a batch that needed none. */
const NOTHING_RECALLED: ReadonlyMap<string, CommandResult> = new Map();

/** `inBatch`: a duplicate of a command decided in the same batch, so stored by the same commit. */
type Outcome =
  { ok: true; result: CommandResult; inBatch?: true } | { ok: false; error: JetactorError };

interface Decided {
  events: StoredEvent[];
  records: CommandRecord[];
  outcomes: Outcome[];
}

/** A batch #begin decided, and how its append ended when it did not store the commit. */
interface FirstTry {
  decided: Decided;
  /** The store's answer: a duplicate. */
  result?: AppendResult;
  /** What the append threw. */
  error?: unknown;
}

/**
 * One aggregate instance: a mailbox of commands, executed strictly one at a time in arrival
 * order, on the state of the aggregate's machine rebuilt from its events ({@link MachineSteps}).
 *
 * Group commit: while a commit is in flight, later commands wait; when it is stored, everything
 * waiting is decided in order, each on top of the state left by the previous ones, and leaves in
 * one commit. A conflict restores the confirmed state, catches up from the store and decides the
 * whole batch again.
 */
export class AggregateActor {
  readonly stream: StreamRef;
  /** Last time a command arrived, by the injected clock. */
  lastActive: number;
  /** Why the actor failed, once it has. */
  failure: JetactorError | undefined;

  #lifecycle: LifecycleState = 'spawning';
  /** The machine's state with every event decided so far applied (confirmed or not). */
  #state: AnyMachineSnapshot;
  readonly #steps: MachineSteps;
  #confirmed: AnyMachineSnapshot;
  #version = 0;
  #position = 0;
  #mailbox: Envelope[] = NO_ENVELOPES;
  #head = 0;
  /** Set while the mailbox is drained (`true`) or a refresh catches up (its promise). */
  #running: Promise<void> | true | undefined;
  #ready: Promise<void> | undefined;
  /** True once the replay that {@link start} began has ended (well or not). */
  #replayed = false;
  /**
   * The last `recentCommands` commands that stored events, by id and commit position. A command
   * sent again is answered with its first result, read back from its commit: an actor keeps no
   * command's events or response.
   */
  readonly #recent: RecentCommands;
  #idleWaiters: (() => void)[] = [];
  /** Version of the last snapshot taken, restored, or tried (a failed save waits as long). */
  #snapshotVersion = 0;
  #snapshotting = false;
  readonly #deps: AggregateActorDeps;

  constructor(deps: AggregateActorDeps) {
    this.#deps = deps;
    this.#recent = new RecentCommands(deps.options.recentCommands);
    this.stream = Object.freeze({
      domain: deps.domain,
      aggregate: deps.definition.name,
      id: deps.id,
    });
    this.lastActive = deps.clock.now();
    this.#steps = MachineSteps.of(deps.definition.machine);
    this.#state = this.#steps.initial();
    this.#confirmed = this.#state;
  }

  /** Replays the aggregate's commits; commands sent meanwhile wait. Never rejects. */
  start(): Promise<void> {
    this.#ready ??= this.#replay();
    return this.#ready;
  }

  /** Lifecycle state. */
  get lifecycle(): LifecycleState {
    return this.#lifecycle;
  }

  /** Version of the confirmed state. */
  get version(): number {
    return this.#version;
  }

  /** Commands waiting for their turn (not counting the batch being committed). */
  get mailboxDepth(): number {
    return this.#mailbox.length - this.#head;
  }

  /** True when nothing is queued or being committed. */
  get idle(): boolean {
    return this.#running === undefined && this.mailboxDepth === 0;
  }

  /** Queues a validated command; resolves with its reply once its commit is stored. */
  execute(command: Command): Promise<CommandResult> {
    this.lastActive = this.#deps.clock.now();
    if (this.#lifecycle === 'failed' && this.failure) return Promise.reject(this.failure);
    return new Promise<CommandResult>((resolve, reject) => {
      this.#mailbox = pushed(this.#mailbox, { command, resolve, reject, attempts: 0 });
      this.#kick();
    });
  }

  /** The confirmed state. */
  view(): AggregateView {
    return {
      lifecycle: this.#lifecycle,
      value: this.#confirmed.value,
      context: this.#confirmed.context,
      version: this.#version,
      position: this.#position,
      mailboxDepth: this.mailboxDepth,
    };
  }

  /** Resolves when the mailbox is empty and no commit is in flight. */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Applies the commits stored after the last one this actor applied (written by another node,
   * say), once no command is queued or committing, so {@link view} shows what the store holds. It
   * runs where a batch would: commands that arrive meanwhile wait for it. Never rejects; a read
   * that fails fails the actor, as a replay would.
   */
  async refresh(): Promise<void> {
    await this.start();
    for (;;) {
      await this.whenIdle();
      if (this.#lifecycle !== 'ready') return;
      if (this.#running === undefined && this.mailboxDepth === 0) break;
    }
    const caughtUp = this.#catchUp().then(() => undefined);
    this.#running = caughtUp;
    void caughtUp.finally(() => {
      if (this.#running !== caughtUp) return;
      this.#running = undefined;
      if (this.mailboxDepth > 0) {
        this.#kick();
      } else {
        const waiters = this.#idleWaiters;
        this.#idleWaiters = [];
        for (const wake of waiters) wake();
      }
    });
    await caughtUp;
  }

  /** Rejects every command still waiting (not the batch in flight); returns how many. */
  rejectQueued(error: JetactorError): number {
    const waiting = this.#mailbox.splice(this.#head);
    for (const envelope of waiting) envelope.reject(error);
    return waiting.length;
  }

  /** Stops the actor; only when idle. Its state comes back by replay on the next command. */
  passivate(): void {
    if (this.#lifecycle === 'ready') this.#transition('PASSIVATE');
  }

  #kick(): void {
    if (this.#running !== undefined) return;
    this.#running = true;
    if (this.#replayed) this.#pump();
    else void this.start().then(() => this.#pump());
  }

  /**
   * Runs the mailbox until it is empty, a batch at a time, then wakes whoever waits for the actor
   * to be idle. The usual batch (nothing to read back first, events to store, stored at the first
   * try) is decided and appended by {@link AggregateActor.#begin} and the next one is taken when
   * its commit is stored, without an async function: the suspended frames of two of them were the
   * largest allocation of a command. Every other batch goes on in {@link AggregateActor.#process}.
   */
  #pump(): void {
    while (this.mailboxDepth > 0) {
      if (this.#lifecycle === 'failed') {
        this.rejectQueued(this.failure ?? this.#unavailable());
        break;
      }
      let batch: Envelope[];
      const { maxBatch } = this.#deps.options;
      if (this.#head === 0 && this.#mailbox.length <= maxBatch) {
        // All of it: the mailbox itself is the batch, and a new one takes what comes next.
        batch = this.#mailbox;
        this.#mailbox = NO_ENVELOPES;
      } else {
        const end = Math.min(this.#mailbox.length, this.#head + maxBatch);
        batch = this.#mailbox.slice(this.#head, end);
        this.#head = end;
      }
      // True when the batch goes on asynchronously: its end pumps again (#next).
      if (this.#begin(batch)) return;
      this.#compact();
    }
    this.#running = undefined;
    // Most actors go idle after each batch with nobody waiting: no new array then.
    if (this.#idleWaiters.length === 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /** After a batch: lets go of the envelopes taken, and runs the mailbox on. */
  #next(): void {
    this.#compact();
    this.#pump();
  }

  #compact(): void {
    if (this.#head === 0) return;
    if (this.#head === this.#mailbox.length) {
      // All taken and settled: let go of the envelopes (and the results they reach).
      this.#mailbox.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#mailbox.length) {
      this.#mailbox = this.#mailbox.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * Decides a batch and appends its commit. False when the batch is settled already (its commands
   * expired); true when it goes on asynchronously and pumps again at its end.
   */
  #begin(taken: Envelope[]): boolean {
    const batch = this.#dropExpired(taken);
    if (batch.length === 0) return false;
    if (this.#recent.size > 0 && this.#mustRecall(batch, NOTHING_RECALLED)) {
      this.#resume(batch, this.#process(batch));
      return true;
    }
    const decided = this.#decideBatch(batch, NOTHING_RECALLED);
    if (decided.events.length === 0) {
      this.#resume(batch, this.#process(batch, { decided }));
      return true;
    }
    const waiter = new AggregateActor.#Appending(this, batch, decided);
    const { store } = this.#deps;
    try {
      if (store.appendWith !== undefined) {
        this.#transition('COMMIT');
        store.appendWith(this.#appendRequest(decided), waiter);
      } else {
        this.#append(decided).then(
          (result) => waiter.stored(result),
          (error: unknown) => waiter.failed(error),
        );
      }
    } catch (error) {
      waiter.failed(error);
    }
    return true;
  }

  /**
   * The usual batch waiting for its append (one object, where two callbacks and their context
   * held more while the command waits).
   */
  static readonly #Appending = class Appending implements AppendWaiter {
    constructor(
      readonly actor: AggregateActor,
      readonly batch: Envelope[],
      readonly decided: Decided,
    ) {}

    stored(result: AppendResult): void {
      this.actor.#appended(this.batch, this.decided, result);
    }

    failed(error: unknown): void {
      const { actor, batch, decided } = this;
      actor.#resume(batch, actor.#process(batch, { decided, error }));
    }
  };

  /** The usual batch's append ended: stored (its commands are answered) or a duplicate. */
  #appended(batch: Envelope[], decided: Decided, result: AppendResult): void {
    try {
      if (result.duplicate) {
        this.#resume(batch, this.#process(batch, { decided, result }));
        return;
      }
      this.#stored(batch, decided, result);
    } catch (error) {
      this.#broken(batch, error);
      return;
    }
    // A microtask later, so that commands sent as soon as their sender had its answer (a caller
    // in this process) join the next batch instead of leaving alone before it. A reaction to a
    // settled promise rather than `queueMicrotask`, which makes an async resource per call (twice
    // the cost); both go to the same queue, in the same order.
    void SETTLED.then(() => this.#next());
  }

  /** Runs the mailbox on once `processing` has settled the batch. */
  #resume(batch: Envelope[], processing: Promise<void>): void {
    processing.then(
      () => this.#next(),
      (error: unknown) => this.#broken(batch, error),
    );
  }

  /**
   * A batch ended in an error nothing expected (a defect): the actor fails (the supervisor
   * restarts it on its next command) and the batch's commands are rejected, instead of waiting
   * for ever.
   */
  #broken(batch: Envelope[], error: unknown): void {
    const failure =
      error instanceof JetactorError
        ? error
        : new InfrastructureError(
            'AGGREGATE_UNAVAILABLE',
            `${label(this.stream)}: a command failed unexpectedly (${describeError(error)}); the aggregate restarts on its next command, send the command again.`,
            { cause: error },
          );
    if (this.#lifecycle !== 'passivated') this.#fail(failure);
    this.#rejectAll(batch, failure);
    this.#next();
  }

  #append(decided: Decided): Promise<AppendResult> {
    this.#transition('COMMIT');
    return this.#deps.store.append(this.#appendRequest(decided));
  }

  #appendRequest(decided: Decided): AppendRequest {
    return {
      stream: this.stream,
      expectedPosition: this.#position,
      dedupId: commitId(this.stream, decided.records),
      events: decided.events,
      commands: decided.records,
    };
  }

  /** The batch's commit is stored: its state is confirmed and its commands answered. */
  #stored(batch: Envelope[], decided: Decided, result: AppendResult): void {
    this.#position = result.position;
    for (const outcome of decided.outcomes) {
      if (outcome.ok && (!outcome.result.duplicate || outcome.inBatch)) {
        outcome.result.position = result.position;
      }
    }
    this.#version += decided.events.length;
    this.#confirmed = this.#state;
    this.#transition('COMMITTED');
    this.#deps.inspection?.emit?.({
      kind: 'commit',
      at: this.#deps.clock.now(),
      ...this.stream,
      position: result.position,
      version: this.#version,
      events: decided.events,
      value: this.#confirmed.value,
    });
    this.#remember(decided.outcomes);
    this.#settle(batch, decided.outcomes);
    this.#maybeSnapshot();
  }

  /**
   * Decides and commits a batch that cannot go the usual way: commands to read back first, no
   * events to store, or (`first`) an append that #begin tried and that did not store the commit.
   */
  async #process(taken: Envelope[], first?: FirstTry): Promise<void> {
    const { options } = this.#deps;
    let checks = 0;
    let batch = taken;
    // First results read back from their commits, for commands sent again (made when needed).
    let recalled: Map<string, CommandResult> | undefined;
    let tried = first;
    for (;;) {
      let decided: Decided;
      if (tried !== undefined) {
        decided = tried.decided;
      } else {
        // Commands whose sender stopped waiting are not started (see CommandOptions.timeoutMs).
        batch = this.#dropExpired(batch);
        if (batch.length === 0) return;
        // Commands known only by id (replayed, or caught up after a conflict) are answered with
        // their first result: read it back before deciding.
        if (this.#recent.size > 0 && this.#mustRecall(batch, recalled ?? NOTHING_RECALLED)) {
          recalled ??= new Map();
          const unread = await this.#recallKnown(batch, recalled);
          if (unread !== undefined) {
            // Stored once already: deciding it again could refuse it, or apply it twice.
            this.#rejectAll(
              batch,
              new InfrastructureError(
                'AGGREGATE_UNAVAILABLE',
                `${label(this.stream)}: command "${unread}" was stored before, but its result could not be read back; send it again with the same command id.`,
              ),
            );
            return;
          }
        }
        decided = this.#decideBatch(batch, recalled ?? NOTHING_RECALLED);
      }
      if (decided.events.length === 0) {
        tried = undefined;
        // Nothing to store, so no expected-sequence check confirms the state these answers were
        // decided on (a refusal, a read such as a status): another node may have appended since.
        // Catch up first, and decide again on what is new.
        const answeredBefore = decided.outcomes.every((o) => o.ok && o.result.duplicate);
        if (!answeredBefore && checks < options.maxConflictRetries) {
          checks += 1;
          const position = this.#position;
          if (!(await this.#catchUp())) {
            this.#rejectAll(batch, this.failure ?? this.#unavailable());
            return;
          }
          if (this.#position !== position) continue;
        }
        this.#settle(batch, decided.outcomes);
        return;
      }
      let error: unknown;
      let duplicate = false;
      let duplicateAt = 0;
      let result: AppendResult | undefined;
      let failed = false;
      if (tried !== undefined) {
        // #begin appended already: its result was a duplicate, or it failed.
        ({ result, error } = tried);
        failed = result === undefined;
        tried = undefined;
      } else {
        try {
          result = await this.#append(decided);
        } catch (caught) {
          error = caught;
          failed = true;
        }
      }
      if (!failed) {
        // A store that answers nothing is a defect: reading it throws, and the actor fails.
        const answer = result as AppendResult;
        if (!answer.duplicate) {
          this.#stored(batch, decided, answer);
          return;
        }
        duplicate = true;
        duplicateAt = answer.position;
      } else if (isConflictError(error)) {
        this.#deps.onConflict?.(this);
      }
      // Stored by someone else first, or not at all: back to what the store has.
      this.#state = this.#confirmed;
      this.#transition('CONFLICT');
      const caughtUp = await this.#catchUp();
      if (!caughtUp) {
        this.#rejectAll(batch, this.failure ?? this.#unavailable());
        return;
      }
      this.#transition('REPLAYED');
      if (duplicate) await this.#recall(duplicateAt, decided.records, (recalled ??= new Map()));
      const conflict = duplicate || isConflictError(error);
      if (!conflict) {
        this.#rejectAll(batch, storeFailed(this.stream, error));
        return;
      }
      let exhausted = false;
      for (const envelope of batch) {
        envelope.attempts += 1;
        if (envelope.attempts > options.maxConflictRetries) exhausted = true;
      }
      if (exhausted) {
        this.#rejectAll(
          batch,
          new ConflictError(
            'CONCURRENCY_CONFLICT',
            `${label(this.stream)}: another writer kept appending first; gave up after ${options.maxConflictRetries} retries. Send the command again.`,
            { cause: error },
          ),
        );
        return;
      }
      this.#deps.logger.debug(
        { stream: label(this.stream) },
        'conflict: caught up, deciding again',
      );
    }
  }

  /**
   * Answers `DEADLINE_EXCEEDED` to the commands of the batch whose deadline has passed, and
   * returns the others. Their senders have given up, and may have sent them again elsewhere: a
   * copy decided now, after more than `recentCommands` newer commands, would be stored twice.
   */
  #dropExpired(batch: Envelope[]): Envelope[] {
    let now: number | undefined;
    let kept: Envelope[] | undefined;
    for (let index = 0; index < batch.length; index++) {
      const envelope = batch[index] as Envelope;
      const { deadline } = envelope.command;
      if (deadline !== undefined && deadline < (now ??= this.#deps.clock.now())) {
        kept ??= batch.slice(0, index);
        envelope.reject(
          new InfrastructureError(
            'DEADLINE_EXCEEDED',
            `${label(this.stream)}: command "${envelope.command.id}" had not started when its sender stopped waiting ${now - deadline} ms ago; it was not run. Send it again with the same command id.`,
            { details: { commandId: envelope.command.id, lateMs: now - deadline } },
          ),
        );
      } else {
        kept?.push(envelope);
      }
    }
    return kept ?? batch;
  }

  #decideBatch(batch: Envelope[], recalled: ReadonlyMap<string, CommandResult>): Decided {
    const { definition, clock } = this.#deps;
    // Grown with `pushed`: most batches hold one command, with one event.
    let events: StoredEvent[] = [];
    let records: CommandRecord[] = [];
    let outcomes: Outcome[] = [];
    // Results decided in this batch by command id; made when a second command comes.
    let inBatch: Map<string, CommandResult> | undefined;
    let only: CommandResult | undefined;
    // The result's events of the command whose events `events` is (no copy while one command
    // has events): copied before another command's are added.
    let firstEvents: StoredEvent[] | undefined;
    const timestamp = clock.now();
    let version = this.#version;
    for (const { command } of batch) {
      const recent = recalled.get(command.id);
      if (recent !== undefined) {
        outcomes = pushed(outcomes, { ok: true, result: { ...recent, duplicate: true } });
        continue;
      }
      const sameBatch =
        inBatch !== undefined
          ? inBatch.get(command.id)
          : only?.commandId === command.id
            ? only
            : undefined;
      if (sameBatch !== undefined) {
        outcomes = pushed(outcomes, {
          ok: true,
          result: { ...sameBatch, duplicate: true },
          inBatch: true,
        });
        continue;
      }
      if (command.expectedVersion !== undefined && command.expectedVersion !== version) {
        outcomes = pushed(outcomes, {
          ok: false,
          error: new RejectionError(
            'WRONG_EXPECTED_VERSION',
            `${label(this.stream)} is at version ${version}, but the command expected version ${command.expectedVersion}; read the aggregate again and resend with expectedVersion ${version}.`,
            { details: { expected: command.expectedVersion, actual: version } },
          ),
        });
        continue;
      }
      const before = this.#state;
      const about: DecideContext['command'] = {
        id: command.id,
        name: command.name,
        correlationId: command.correlationId,
        causationId: command.causationId,
      };
      if (command.actor !== undefined) about.actor = command.actor;
      const ctx: DecideContext = { aggregateId: this.stream.id, version, command: about, clock };
      const handler = definition.commands[command.name];
      let produced: { events: readonly { type: string; data: unknown }[]; response: unknown };
      try {
        if (handler === undefined) {
          throw new RejectionError('UNKNOWN_COMMAND', `Unknown command "${command.name}".`);
        }
        produced = normalise(handler.decide(before, command.input, ctx));
      } catch (error) {
        outcomes = pushed(outcomes, {
          ok: false,
          error: decideError(this.stream, command.name, error),
        });
        continue;
      }
      let commandEvents: StoredEvent[] = [];
      let failure: JetactorError | undefined;
      for (let index = 0; index < produced.events.length; index++) {
        const event = produced.events[index] as { type: string; data: unknown };
        const stored = this.#validateNew(command, event, version + index + 1, timestamp);
        if (stored instanceof JetactorError) {
          failure = stored;
          break;
        }
        failure = this.#apply(stored, command.name);
        if (failure) break;
        commandEvents = pushed(commandEvents, stored);
      }
      if (failure) {
        this.#state = before;
        outcomes = pushed(outcomes, { ok: false, error: failure });
        continue;
      }
      version += commandEvents.length;
      if (events.length === 0) {
        // The first command's events are the commit's until a second command adds to them.
        events = commandEvents;
        firstEvents = commandEvents;
      } else {
        if (events === firstEvents) events = events.slice();
        for (const event of commandEvents) events.push(event);
      }
      const result: CommandResult = {
        commandId: command.id,
        version,
        events: commandEvents,
        response: produced.response,
        duplicate: false,
        position: this.#position,
      };
      if (commandEvents.length > 0) {
        records = pushed(
          records,
          produced.response === undefined
            ? { id: command.id }
            : { id: command.id, response: produced.response },
        );
        if (only === undefined) {
          only = result;
        } else {
          inBatch ??= new Map([[only.commandId, only]]);
          inBatch.set(command.id, result);
        }
      }
      outcomes = pushed(outcomes, { ok: true, result });
    }
    return { events, records, outcomes };
  }

  #validateNew(
    command: Command,
    event: { type: string; data: unknown },
    version: number,
    timestamp: number,
  ): StoredEvent | JetactorError {
    const { definition, domain } = this.#deps;
    const schema =
      typeof event?.type === 'string' && Object.hasOwn(definition.events, event.type)
        ? definition.events[event.type]
        : undefined;
    if (schema === undefined) {
      return new RejectionError(
        'INVALID_EVENT',
        `Command "${command.name}" returned event ${JSON.stringify(event?.type)}, which aggregate "${definition.name}" does not declare; declared: ${Object.keys(definition.events).join(', ')}.`,
      );
    }
    const parsed = schema.safeParse(event.data);
    if (!parsed.success) {
      return new RejectionError(
        'INVALID_EVENT',
        `Command "${command.name}" returned a "${event.type}" event whose data fails its schema: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}. Fix decide.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    const schemaVersion = definition.eventVersions[event.type] ?? 1;
    const meta: StoredEvent['meta'] = {
      domain,
      aggregate: definition.name,
      aggregateId: this.stream.id,
      version,
      timestamp,
      commandId: command.id,
      correlationId: command.correlationId,
      causationId: command.causationId,
    };
    if (command.actor !== undefined) meta.actor = command.actor;
    if (schemaVersion !== 1) meta.schemaVersion = schemaVersion;
    return { type: event.type, data: parsed.data, meta };
  }

  /** Applies one event to the live machine; returns why it could not. */
  #apply(event: StoredEvent, commandName: string | undefined): JetactorError | undefined {
    const snapshot = this.#state;
    if (!this.#steps.accepts(snapshot, event)) {
      const state = JSON.stringify(snapshot.value);
      const why = snapshot.status === 'done' ? ` (${state} is a final state)` : '';
      return new RejectionError(
        'INVALID_TRANSITION',
        `${label(this.stream)} is in state ${state}${why}, where event "${event.type}" is not accepted` +
          (commandName === undefined ? '.' : `, so command "${commandName}" cannot run now.`),
        { details: { state: snapshot.value, event: event.type } },
      );
    }
    let after: AnyMachineSnapshot;
    try {
      after = this.#steps.transition(snapshot, event);
    } catch (error) {
      return new RejectionError(
        'EVOLVE_FAILED',
        `${label(this.stream)}: the machine threw while applying "${event.type}": ${describeError(error)}. Fix the machine's assign actions.`,
        { cause: error },
      );
    }
    if (hasKeys(after.children)) {
      return new RejectionError(
        'EVOLVE_FAILED',
        `${label(this.stream)}: applying "${event.type}" spawned an actor; aggregate machines must not spawn (replay must be deterministic).`,
      );
    }
    this.#state = after;
    return undefined;
  }

  async #replay(): Promise<void> {
    this.#transition('REPLAY');
    try {
      const fromSnapshot = await this.#loadSnapshot();
      if (await this.#catchUp()) {
        this.#transition('REPLAYED');
        // A snapshot that was missing, stale or unreadable is rewritten once replay is done.
        if (!fromSnapshot) this.#snapshotVersion = 0;
        this.#maybeSnapshot();
      }
    } finally {
      this.#replayed = true;
    }
  }

  /** Restores the snapshot when there is a trustworthy one; true when it did. */
  async #loadSnapshot(): Promise<boolean> {
    const { snapshots, definition, logger } = this.#deps;
    if (snapshots === undefined || this.#deps.options.snapshotEvery <= 0) return false;
    const where = { stream: label(this.stream) };
    try {
      const snapshot = await snapshots.load(this.stream);
      if (snapshot === undefined) return false;
      if (snapshot.fingerprint !== definition.fingerprint) {
        logger.info(where, 'snapshot taken by another machine definition; replaying all events');
        return false;
      }
      if (
        !Number.isSafeInteger(snapshot.version) ||
        !Number.isSafeInteger(snapshot.position) ||
        snapshot.version < 1 ||
        snapshot.position < 1
      ) {
        throw new Error(`version ${snapshot.version} / position ${snapshot.position} are invalid`);
      }
      let restored: AnyMachineSnapshot;
      try {
        restored = this.#steps.restore(snapshot.state as Snapshot<unknown>);
      } catch (error) {
        throw new Error(`the machine cannot restore it: ${describeError(error)}`, { cause: error });
      }
      if (restored.status === 'error' || hasKeys(restored.children)) {
        throw new Error(
          restored.status === 'error'
            ? `the machine cannot restore it: ${describeError(restored.error)}`
            : 'it holds child actors, which aggregate machines do not have',
        );
      }
      this.#state = restored;
      this.#confirmed = restored;
      this.#version = snapshot.version;
      this.#position = snapshot.position;
      this.#snapshotVersion = snapshot.version;
      this.#recent.clear();
      for (const entry of Array.isArray(snapshot.commands) ? snapshot.commands : []) {
        if (
          Array.isArray(entry) &&
          typeof entry[0] === 'string' &&
          Number.isSafeInteger(entry[1]) &&
          entry[1] > 0 &&
          entry[1] <= snapshot.position
        ) {
          this.#recent.know(entry[0], entry[1]);
        }
      }
      return true;
    } catch (error) {
      logger.warn(
        { ...where, err: error },
        'snapshot cannot be used; ignored, replaying all events',
      );
      return false;
    }
  }

  /** Saves a snapshot off the command path when enough events came since the last one. */
  #maybeSnapshot(): void {
    const { snapshots, definition, options, logger } = this.#deps;
    if (snapshots === undefined || options.snapshotEvery <= 0 || this.#snapshotting) return;
    if (this.#version === 0 || this.#version - this.#snapshotVersion < options.snapshotEvery) {
      return;
    }
    const version = this.#version;
    const snapshot = {
      fingerprint: definition.fingerprint,
      version,
      position: this.#position,
      state: definition.machine.getPersistedSnapshot(this.#confirmed),
      commands: this.#recent.entries(),
    };
    this.#snapshotting = true;
    snapshots
      .save(this.stream, snapshot)
      .then(() => {
        this.#snapshotVersion = Math.max(this.#snapshotVersion, version);
      })
      .catch((error: unknown) => {
        // Tried again after as many events again, not at once: a snapshot store that is down
        // would be asked in a loop as fast as it fails.
        this.#snapshotVersion = Math.max(this.#snapshotVersion, version);
        logger.warn({ stream: label(this.stream), err: error }, 'snapshot not saved');
      })
      .finally(() => {
        this.#snapshotting = false;
        // Events may have come while this one was being saved.
        if (this.#lifecycle !== 'passivated' && this.#lifecycle !== 'failed') this.#maybeSnapshot();
      });
  }

  /**
   * Commands of the batch known only by id (from the snapshot, a replay or a catch-up): their
   * results are read from their commits, so {@link AggregateActor.#decideBatch} answers them as
   * duplicates. (A commit holding several commands is deduplicated by the store under one id
   * only, so the store alone cannot catch a resend of one of them.) Returns the id of a command
   * whose commit could not be read, if any.
   */
  async #recallKnown(
    batch: readonly Envelope[],
    recalled: Map<string, CommandResult>,
  ): Promise<string | undefined> {
    for (const { command } of batch) {
      const position = this.#recent.positionOf(command.id);
      if (position === undefined || recalled.has(command.id)) continue;
      await this.#recall(position, [{ id: command.id }], recalled);
      if (!recalled.has(command.id)) return command.id;
    }
    return undefined;
  }

  /**
   * The store said a commit was a duplicate of one stored at `position`. When its commands are
   * not remembered (replayed from a snapshot, or forgotten), reads that commit to learn their
   * results into `recalled`, so they are answered as duplicates instead of being decided again.
   */
  async #recall(
    position: number,
    records: readonly CommandRecord[],
    recalled: Map<string, CommandResult>,
  ): Promise<void> {
    if (position <= 0) return;
    let missing = false;
    for (const { id } of records) {
      if (!recalled.has(id)) missing = true;
    }
    if (!missing) return;
    try {
      for await (const commit of this.#deps.store.read(this.stream, position - 1)) {
        if (commit.position === position) {
          const byCommand = new Map<string, StoredEvent[]>();
          for (const raw of commit.events) {
            const read = readEvent(this.#deps.definition, raw);
            if (!read.ok) return;
            const list = byCommand.get(read.event.meta.commandId);
            if (list) list.push(read.event);
            else byCommand.set(read.event.meta.commandId, [read.event]);
          }
          const outcomes = this.#outcomesOf(commit.commands, byCommand, commit.position);
          for (const outcome of outcomes) {
            if (outcome.ok) recalled.set(outcome.result.commandId, outcome.result);
          }
          this.#remember(outcomes);
        }
        return;
      }
    } catch (error) {
      this.#deps.logger.warn(
        { stream: label(this.stream), err: error, position },
        'could not read the original of a duplicate commit',
      );
    }
  }

  /** Applies every commit after the known position; false (and failed) when that fails. */
  async #catchUp(): Promise<boolean> {
    try {
      for await (const commit of this.#deps.store.read(this.stream, this.#position)) {
        this.#applyCommit(commit);
      }
      return true;
    } catch (error) {
      this.#fail(
        error instanceof JetactorError
          ? error
          : new InfrastructureError(
              'REPLAY_FAILED',
              `${label(this.stream)}: reading its events failed: ${describeError(error)}. The command can be sent again.`,
              { cause: error },
            ),
      );
      return false;
    }
  }

  #applyCommit(commit: Commit): void {
    const { definition, store } = this.#deps;
    const corrupt = (why: string, cause?: unknown): InfrastructureError => {
      const subject = store.subject?.(this.stream);
      const where =
        subject === undefined
          ? `commit at position ${commit.position}`
          : `commit at position ${commit.position} (sequence ${commit.position} on "${subject}")`;
      return new InfrastructureError(
        'REPLAY_FAILED',
        `${label(this.stream)}: ${where} cannot be replayed: ${why} The aggregate takes no commands until the definition reads it (e.g. an upcaster) or the message is removed.`,
        {
          cause,
          details:
            subject === undefined
              ? { position: commit.position }
              : { position: commit.position, subject, sequence: commit.position },
        },
      );
    };
    for (const raw of commit.events ?? []) {
      const expected = this.#version + 1;
      if (raw?.meta?.version !== expected) {
        throw corrupt(`expected version ${expected}, found ${JSON.stringify(raw?.meta?.version)}.`);
      }
      const read = readEvent(definition, raw);
      if (!read.ok) throw corrupt(`${read.why}.`);
      const { event } = read;
      const failure = this.#apply(event, undefined);
      if (failure) throw corrupt(failure.message, failure);
      this.#version = expected;
    }
    this.#position = commit.position;
    this.#confirmed = this.#state;
    this.#rememberReplayed(commit.commands ?? [], commit.position);
  }

  /** Remembers the commands of a replayed commit by id and position (results read on demand). */
  #rememberReplayed(records: readonly CommandRecord[], position: number): void {
    for (const record of records) this.#recent.know(record.id, position);
  }

  /** True when a command of the batch is known: its first result must be read back first. */
  #mustRecall(batch: readonly Envelope[], recalled: ReadonlyMap<string, CommandResult>): boolean {
    for (const { command } of batch) {
      if (this.#recent.knows(command.id) && !recalled.has(command.id)) return true;
    }
    return false;
  }

  #outcomesOf(
    records: readonly CommandRecord[],
    byCommand: ReadonlyMap<string, StoredEvent[]>,
    position: number,
  ): Outcome[] {
    return records.map((record) => {
      const events = byCommand.get(record.id) ?? [];
      const last = events[events.length - 1];
      return {
        ok: true,
        result: {
          commandId: record.id,
          version: last?.meta.version ?? this.#version,
          events,
          response: record.response,
          duplicate: false,
          position,
        },
      };
    });
  }

  #remember(outcomes: Outcome[]): void {
    for (const outcome of outcomes) {
      if (!outcome.ok || outcome.result.duplicate || outcome.result.events.length === 0) continue;
      this.#recent.know(outcome.result.commandId, outcome.result.position);
    }
  }

  #settle(batch: Envelope[], outcomes: Outcome[]): void {
    for (let index = 0; index < batch.length; index++) {
      const envelope = batch[index] as Envelope;
      const outcome = outcomes[index];
      if (outcome?.ok) envelope.resolve(outcome.result);
      else envelope.reject(outcome?.error);
    }
  }

  #rejectAll(batch: Envelope[], error: JetactorError): void {
    for (const envelope of batch) envelope.reject(error);
  }

  #fail(error: JetactorError): void {
    if (this.#lifecycle === 'failed') return;
    this.failure = error;
    this.#transition('FAIL');
    this.#deps.logger.error({ stream: label(this.stream), err: error }, 'aggregate actor failed');
    this.#deps.onFailed?.(this, error);
  }

  #unavailable(): InfrastructureError {
    return new InfrastructureError(
      'AGGREGATE_UNAVAILABLE',
      `${label(this.stream)} is not available; send the command again.`,
    );
  }

  #transition(event: LifecycleEvent): void {
    this.#lifecycle = nextLifecycleState(this.#lifecycle, event);
  }
}

function normalise(result: unknown): {
  events: readonly { type: string; data: unknown }[];
  response: unknown;
} {
  if (Array.isArray(result)) return { events: result, response: undefined };
  if (typeof result === 'object' && result !== null) {
    if ('type' in result)
      return { events: [result as { type: string; data: unknown }], response: undefined };
    if ('events' in result && Array.isArray(result.events)) {
      return { events: result.events, response: (result as { response?: unknown }).response };
    }
  }
  throw new RejectionError(
    'DECIDE_FAILED',
    `decide returned ${JSON.stringify(result)}; return an event { type, data }, an array of events, or { events, response }.`,
  );
}

function decideError(stream: StreamRef, command: string, error: unknown): JetactorError {
  if (error instanceof JetactorError && error.kind === 'rejection') return error;
  return new RejectionError(
    'DECIDE_FAILED',
    `${label(stream)}: decide of "${command}" threw ${describeError(error)}. decide must return events or throw a DomainError; fix the command handler.`,
    { cause: error },
  );
}

function storeFailed(stream: StreamRef, error: unknown): JetactorError {
  if (error instanceof JetactorError && error.retryable) return error;
  return new InfrastructureError(
    'STORE_FAILED',
    `${label(stream)}: storing the commit failed: ${describeError(error)}. Send the command again with the same command id; it is applied at most once.`,
    { cause: error },
  );
}

/**
 * Dedup id of a commit: the aggregate and its command id (first and last ids and count when it
 * holds several). Scoped to the aggregate because the store deduplicates per domain, while a
 * command id only has to be unique per aggregate.
 */
function commitId(stream: StreamRef, records: CommandRecord[]): string {
  const first = records[0]?.id ?? '';
  const ids =
    records.length === 1
      ? first
      : `${first}..${records[records.length - 1]?.id ?? ''}#${records.length}`;
  return `${stream.aggregate}.${stream.id}.${ids}`;
}

/** True when the object has an own enumerable key (without making the array of its keys). */
function hasKeys(object: object): boolean {
  for (const key in object) if (Object.hasOwn(object, key)) return true;
  return false;
}

function label(stream: StreamRef): string {
  return `${stream.aggregate} "${stream.id}"`;
}
