import type { CommandRequest, CommandResult } from '../aggregate/command.js';
import type { Clock } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type {
  ReactorContext,
  ReactorDefinition,
  ReactorHandler,
} from '../domain/define-reactor.js';
import type { StoredEvent } from '../domain/events.js';
import { describeError } from '../errors.js';
import type { Commit, EventStore, StoreSubscription } from '../event-store/event-store.js';
import type { Logger } from '../logger.js';

/** What {@link InProcessReactors} needs from the node. */
export interface InProcessReactorsDeps {
  store: EventStore;
  clock: Clock;
  logger: Logger;
  send: (command: CommandRequest) => Promise<CommandResult>;
}

/**
 * Runs reactors in the node's process on the store's subscription: each reactor sees every
 * commit of its domain in order, handlers are retried with backoff, and an event that still fails
 * after the last try is logged as dead-lettered and passed over.
 *
 * This is the embedded runner; durable JetStream consumers take its place on a NATS server.
 */
export class InProcessReactors {
  readonly #deps: InProcessReactorsDeps;
  readonly #subscriptions: StoreSubscription[] = [];
  #deadLetters = 0;

  constructor(deps: InProcessReactorsDeps) {
    this.#deps = deps;
  }

  /** Starts every reactor of the domains. */
  start(domains: readonly DomainDefinition[]): void {
    for (const domain of domains) {
      for (const reactor of domain.reactors) {
        this.#subscriptions.push(
          this.#deps.store.subscribe(domain.name, (commit) => this.#handle(reactor, commit)),
        );
      }
    }
  }

  /** Events given up on since start. */
  get deadLetters(): number {
    return this.#deadLetters;
  }

  /** Stops delivery; lets the handler in progress finish. */
  async close(): Promise<void> {
    await Promise.all(this.#subscriptions.splice(0).map((s) => s.close()));
  }

  async #handle(reactor: ReactorDefinition, commit: Commit): Promise<void> {
    const handlers = reactor.on as Readonly<
      Record<string, ReactorHandler<StoredEvent> | undefined>
    >;
    for (const event of commit.events) {
      const handler = handlers[`${event.meta.aggregate}.${event.type}`];
      if (handler === undefined) continue;
      await this.#run(reactor, handler, event);
    }
  }

  async #run(
    reactor: ReactorDefinition,
    handler: ReactorHandler<StoredEvent>,
    event: StoredEvent,
  ): Promise<void> {
    const { clock } = this.#deps;
    const eventRef = `${event.meta.domain}/${event.meta.aggregate}/${event.meta.aggregateId}@${event.meta.version}`;
    const logger = this.#deps.logger.child({
      reactor: reactor.name,
      event: eventRef,
      type: event.type,
    });
    for (let attempt = 1; ; attempt += 1) {
      let sends = 0;
      const ctx: ReactorContext = {
        logger,
        clock,
        send: (command) => {
          sends += 1;
          return this.#deps.send({
            ...command,
            commandId: command.commandId ?? `${reactor.name}:${eventRef}:${sends}`,
            correlationId: command.correlationId ?? event.meta.correlationId,
            causationId: command.causationId ?? eventRef,
          });
        },
      };
      try {
        await handler(event, ctx);
        return;
      } catch (error) {
        if (attempt >= reactor.retry.attempts) {
          this.#deadLetters += 1;
          logger.error(
            { err: error, attempts: attempt },
            `reactor gave up on the event after ${attempt} tries: ${describeError(error)}`,
          );
          return;
        }
        const delay = reactor.retry.backoffMs * 2 ** (attempt - 1);
        logger.warn({ err: error, attempt, retryInMs: delay }, 'reactor handler failed; retrying');
        await new Promise<void>((resolve) => clock.setTimeout(resolve, delay));
      }
    }
  }
}
