import { z } from 'zod';
import type { CommandRequest, CommandResult } from '../aggregate/command.js';
import type { Clock } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type { ReactorDefinition } from '../domain/define-reactor.js';
import { ConfigError, DefinitionError } from '../errors.js';
import type { Commit } from '../event-store/event-store.js';
import type { Logger } from '../logger.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterStore } from './dead-letter-store.js';
import {
  ReactorDispatcher,
  deadLetterNotFound,
  notListening,
  type ReactorLeadership,
  type ReactorStats,
  type ReactorWorkerView,
} from './reactor-dispatcher.js';

/**
 * Runs reactors with the lifecycle of an event bus: subscribe each reactor, then `listen()`, then
 * `close(timeoutMs)`. Subscriptions are frozen once listening. Implementations:
 * `InProcessReactors` (on any event store's subscription, in memory) and `JetStreamReactors`
 * (durable JetStream consumers). A node drives its host from `start()` and `stop()`.
 */
export interface ReactorHost {
  /** True between `listen()` and `close()`. */
  readonly listening: boolean;
  /** Adds a reactor of a domain; only before `listen()`. */
  subscribe(domain: DomainDefinition, reactor: ReactorDefinition): void;
  /** Starts delivering events to every subscribed reactor. */
  listen(): Promise<void>;
  /**
   * Stops fetching, lets running handlers finish within `timeoutMs`, and acknowledges nothing it
   * did not finish (it is delivered again to the next listener).
   */
  close(timeoutMs?: number): Promise<void>;
  /** Counters per reactor, keyed `<domain>.<reactor>`. */
  stats(): Record<string, ReactorStats>;
  /** Events dead-lettered since listening, all reactors together. */
  readonly deadLettered: number;
  /** The workers (one per aggregate with events in hand) and their states, for inspectors. */
  workers(): ReactorWorkerView[];
  /** Dead letters of every reactor (of every node sharing the store), oldest first. */
  deadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]>;
  /**
   * Runs a dead letter's event through its reactor again (the reactor must be subscribed here and
   * listening, and on JetStream run here: a node standing by for another refuses); on success
   * removes it and lets its aggregate's later events go on. Rejects with `DEAD_LETTER_NOT_FOUND`,
   * `REACTOR_UNAVAILABLE`, or the handler's error (the dead letter stays).
   */
  replay(id: number): Promise<DeadLetter>;
  /**
   * Removes a dead letter without running it; its aggregate's later events go on. On JetStream
   * only the node running its reactor does it (`REACTOR_UNAVAILABLE` on a standby).
   */
  discard(id: number): Promise<DeadLetter>;
}

/** Options of a node's reactor host (`createNode({ reactors })`). */
export interface ReactorHostOptions {
  /**
   * Sends commands that handlers address to domains this node does not host (e.g. a NATS client's
   * `execute`). Without it such commands are rejected with `UNKNOWN_DOMAIN`.
   */
  send?: (command: CommandRequest) => Promise<CommandResult>;
  /**
   * JetStream: how long the server waits for an acknowledgement before it delivers an event again,
   * in milliseconds. Events in hand are kept alive (`working`) at a third of it. Default 30000.
   */
  ackWaitMs: number;
  /**
   * JetStream: most events a reactor holds unacknowledged (running, queued behind their aggregate,
   * or held behind a dead letter). When reached, the server sends no more until some are
   * acknowledged. Default 1000.
   */
  maxAckPending: number;
}

/** Zod schema of {@link ReactorHostOptions}, with its defaults. */
export const reactorHostOptionsSchema = z
  .object({
    send: z
      .custom<(command: CommandRequest) => Promise<CommandResult>>(
        (f) => typeof f === 'function',
        'expected a function (command) => Promise<CommandResult>',
      )
      .optional(),
    ackWaitMs: z.number().int().min(100).default(30_000),
    maxAckPending: z.number().int().min(1).max(1_000_000).default(1_000),
  })
  .strict();

/** What every reactor host needs from its node. */
export interface ReactorHostDeps {
  /** Clock of retries, timeouts and keep-alives. */
  clock: Clock;
  /** The node's logger. */
  logger: Logger;
  /** Sends a command from a handler. */
  send: (command: CommandRequest) => Promise<CommandResult>;
  /** Where dead letters go. */
  deadLetters: DeadLetterStore;
}

/**
 * The part both hosts share: subscriptions, the frozen configuration, one dispatcher per reactor,
 * counters, and dead letters (list, replay, discard).
 */
export abstract class ReactorHostBase implements ReactorHost {
  /** What the host was given. */
  protected readonly deps: ReactorHostDeps;
  /** One dispatcher per subscribed reactor, keyed `<domain>.<reactor>`. */
  protected readonly dispatchers = new Map<string, ReactorDispatcher>();
  #state: 'configuring' | 'listening' | 'closed' = 'configuring';
  #listening: Promise<void> | undefined;

  /** A host with nothing subscribed yet. */
  constructor(deps: ReactorHostDeps) {
    this.deps = deps;
  }

  get listening(): boolean {
    return this.#state === 'listening';
  }

  subscribe(domain: DomainDefinition, reactor: ReactorDefinition): void {
    if (this.#state !== 'configuring') {
      throw new ConfigError(
        `Cannot subscribe reactor "${reactor.name}" of domain "${domain.name}": the reactors are ${this.#state === 'closed' ? 'closed' : 'listening'} and their configuration is frozen. Subscribe every reactor before listen() (a node subscribes its domains' reactors when it is created).`,
      );
    }
    if (!domain.reactors.includes(reactor)) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Reactor "${reactor.name}" is not part of domain "${domain.name}"; add it with defineDomain({ reactors }).`,
      );
    }
    const key = `${domain.name}.${reactor.name}`;
    if (this.dispatchers.has(key)) {
      throw new DefinitionError(
        'DUPLICATE_NAME',
        `Reactor "${reactor.name}" of domain "${domain.name}" is subscribed twice; each reactor runs once per host.`,
      );
    }
    this.dispatchers.set(
      key,
      new ReactorDispatcher({
        domain,
        reactor,
        clock: this.deps.clock,
        logger: this.deps.logger,
        send: this.deps.send,
        deadLetters: this.deps.deadLetters,
        load: (deadLetter) => this.load(domain, deadLetter),
      }),
    );
  }

  listen(): Promise<void> {
    if (this.#state === 'closed') {
      return Promise.reject(
        new ConfigError(
          'These reactors were closed; a closed host does not listen again. Create a new node.',
        ),
      );
    }
    this.#listening ??= this.start([...this.dispatchers.values()]).then(
      () => {
        if (this.#state === 'configuring') this.#state = 'listening';
      },
      (error: unknown) => {
        this.#listening = undefined;
        throw error;
      },
    );
    return this.#listening;
  }

  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#state === 'closed') return;
    const wasListening = this.#listening;
    this.#state = 'closed';
    await wasListening?.catch(() => undefined);
    await this.stop(timeoutMs);
  }

  get deadLettered(): number {
    let total = 0;
    for (const dispatcher of this.dispatchers.values()) total += dispatcher.stats().deadLetters;
    return total;
  }

  stats(): Record<string, ReactorStats> {
    const stats: Record<string, ReactorStats> = {};
    for (const [key, dispatcher] of this.dispatchers)
      stats[key] = dispatcher.stats(this.pending(key), this.leadership(key));
    return stats;
  }

  workers(): ReactorWorkerView[] {
    return [...this.dispatchers.values()].flatMap((d) => d.workers());
  }

  deadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]> {
    return this.deps.deadLetters.list(filter);
  }

  async replay(id: number): Promise<DeadLetter> {
    const { deadLetter, dispatcher } = await this.resolve(id);
    if (!this.listening) throw notListening(deadLetter.domain, deadLetter.reactor);
    return dispatcher.replay(deadLetter);
  }

  async discard(id: number): Promise<DeadLetter> {
    const deadLetter = await this.deps.deadLetters.get(id);
    if (deadLetter === undefined) throw deadLetterNotFound(id, '');
    const dispatcher = this.dispatchers.get(`${deadLetter.domain}.${deadLetter.reactor}`);
    if (dispatcher === undefined) await this.deps.deadLetters.remove(id);
    else await dispatcher.discard(deadLetter);
    return deadLetter;
  }

  /** The dead letter and the dispatcher of its reactor. */
  protected async resolve(
    id: number,
  ): Promise<{ deadLetter: DeadLetter; dispatcher: ReactorDispatcher }> {
    const deadLetter = await this.deps.deadLetters.get(id);
    if (deadLetter === undefined) throw deadLetterNotFound(id, '');
    const dispatcher = this.dispatchers.get(`${deadLetter.domain}.${deadLetter.reactor}`);
    if (dispatcher === undefined) {
      throw notListening(deadLetter.domain, deadLetter.reactor);
    }
    return { deadLetter, dispatcher };
  }

  /** Starts delivering to the dispatchers. */
  protected abstract start(dispatchers: readonly ReactorDispatcher[]): Promise<void>;
  /** Stops delivering and closes the dispatchers within `timeoutMs`. */
  protected abstract stop(timeoutMs: number): Promise<void>;
  /** Reads the commit a dead letter refers to. */
  protected abstract load(domain: DomainDefinition, deadLetter: DeadLetter): Promise<Commit>;
  /** Events of a reactor the source has not delivered yet. */
  protected abstract pending(key: string): number;

  /** Who runs a reactor; this host, unless it stands by for another node. */
  protected leadership(_key: string): ReactorLeadership {
    return { here: true, leader: undefined };
  }
}
