import {
  AckPolicy,
  DeliverPolicy,
  ReplayPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { CommandRequest, CommandResult } from '../aggregate/command.js';
import type { TimerHandle } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import {
  ConfigError,
  InfrastructureError,
  JetactorError,
  describeError,
  isJetactorError,
} from '../errors.js';
import { decodeEnvelope } from '../event-store/commit-envelope.js';
import { createClient, type JetactorClient } from '../messaging/client.js';
import type { Commit } from '../event-store/event-store.js';
import type { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import {
  aggregateEventSubjects,
  domainEventSubjects,
  parseEventSubject,
  reactorConsumerName,
  reactorControlSubject,
} from '../nats/subjects.js';
import type { DeadLetter } from './dead-letter-store.js';
import { JetStreamDeadLetterStore } from './jetstream-dead-letter-store.js';
import { deadLetterNotFound, type Delivery, type ReactorDispatcher } from './reactor-dispatcher.js';
import { ReactorHostBase, type ReactorHostDeps, type ReactorHostOptions } from './reactor-host.js';

/** What {@link JetStreamReactors} needs from the node. */
export interface JetStreamReactorsDeps extends Omit<ReactorHostDeps, 'deadLetters'> {
  /** The store: its connection, prefix, codec and streams are the reactors' too. */
  store: JetStreamEventStore;
  /** Acknowledgement tuning (`ackWaitMs`, `maxAckPending`). */
  options: Pick<ReactorHostOptions, 'ackWaitMs' | 'maxAckPending'>;
  /** Where dead letters go; default a `JetStreamDeadLetterStore` on the store's connection. */
  deadLetters?: JetStreamDeadLetterStore;
}

interface Listener {
  dispatcher: ReactorDispatcher;
  stream: string;
  consumer: string;
  loop: Promise<void> | undefined;
  /** Events the server has not delivered yet (from the last message or consumer info). */
  pending: number;
  /** Set while events a previous listener left unacknowledged are still to come back. */
  barrier: Barrier | undefined;
}

/**
 * Events delivered to a previous listener and never acknowledged (it crashed, or was closed with
 * events in hand) come back before anything of their aggregates may run: until they all did (or
 * `1.5 × ackWaitMs` passed), every message is held, then all are dispatched in stream order.
 */
interface Barrier {
  /** Redeliveries still expected. */
  remaining: number;
  /** Highest stream sequence delivered before this listener started. */
  upTo: number;
  held: Delivery[];
  timer: TimerHandle | undefined;
}

/** A request to the node hosting a reactor, and its answer. */
interface ControlReply {
  ok: boolean;
  deadLetter?: DeadLetter;
  error?: ReturnType<JetactorError['toJSON']>;
}

/** How long one pull request waits for messages; closing waits at most this for the last. */
const FETCH_EXPIRES_MS = 1_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Runs each reactor on a durable JetStream pull consumer, `<prefix>_<domain>_<reactor>`, on its
 * domain's stream: filtered to `<prefix>.evt.<domain>.<Aggregate>.*` when it handles one aggregate
 * type, else to the whole domain (other aggregates' commits are acknowledged at once; nats-server
 * 2.9 takes one filter subject per consumer).
 *
 * Explicit acknowledgement, only after every handled event of the commit succeeded or was
 * dead-lettered. Events in hand (running, retrying, queued behind their aggregate, held behind a
 * dead letter) are kept alive with `working()` by one sweep every `ackWaitMs / 3`, so the server
 * never redelivers behind the reactor's back; a crashed node's events are redelivered after
 * `ackWaitMs`. Dead letters go to `<prefix>_deadletters`; with the `'wait'` policy the blocked
 * aggregates are read back from there when listening starts. The node answers replay and discard
 * requests on `<prefix>.rx.<domain>.<reactor>.replay|discard` (`jetactor deadletters`).
 */
export class JetStreamReactors extends ReactorHostBase {
  readonly #store: JetStreamEventStore;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #dlq: JetStreamDeadLetterStore;
  readonly #options: JetStreamReactorsDeps['options'];
  readonly #listeners = new Map<string, Listener>();
  readonly #control: Subscription[] = [];
  #jsm: JetStreamManager | undefined;
  #client: JetactorClient | undefined;
  #sweep: TimerHandle | undefined;
  #stopped = false;

  constructor(deps: JetStreamReactorsDeps) {
    const dlq =
      deps.deadLetters ??
      new JetStreamDeadLetterStore({
        connection: deps.store.connection,
        prefix: deps.store.prefix,
      });
    super({ ...deps, deadLetters: dlq });
    this.#store = deps.store;
    this.#nc = deps.store.connection;
    this.#js = jetstream(this.#nc);
    this.#dlq = dlq;
    this.#options = deps.options;
  }

  /** The durable consumer's name of a subscribed reactor, e.g. `jetactor_bank_welcome`. */
  consumerName(domain: string, reactor: string): string {
    return reactorConsumerName(this.#store.prefix, domain, reactor);
  }

  /**
   * Sends a command to a domain other nodes host, over NATS on the store's connection and prefix
   * (a `JetactorClient`, created on first use and closed with the reactors): what handlers of a
   * JetStream node use for domains it does not host, unless `reactors.send` says otherwise.
   */
  sendRemote(command: CommandRequest): Promise<CommandResult> {
    this.#client ??= createClient({ connection: this.#nc, prefix: this.#store.prefix });
    return this.#client.execute(command);
  }

  protected async start(dispatchers: readonly ReactorDispatcher[]): Promise<void> {
    const active = dispatchers.filter((d) => d.aggregates.size > 0);
    if (active.length === 0) return;
    try {
      this.#jsm = await jetstreamManager(this.#nc);
    } catch (error) {
      throw unavailable('opening JetStream for the reactors', error);
    }
    await this.#store.ensureDomains([...new Set(active.map((d) => d.domain.name))]);
    await this.#dlq.ensure();
    try {
      for (const dispatcher of active) await this.#prepare(dispatcher);
      for (const listener of this.#listeners.values()) await this.#fetch(listener);
      for (const dispatcher of active) this.#answer(dispatcher);
    } catch (error) {
      // Undo what was started, so that listen() can be called again.
      this.#stopped = true;
      for (const subscription of this.#control.splice(0)) subscription.unsubscribe();
      for (const listener of this.#listeners.values()) {
        // What a barrier held is left unacknowledged: the server delivers it again.
        if (listener.barrier?.timer !== undefined)
          this.deps.clock.clearTimeout(listener.barrier.timer);
        listener.barrier = undefined;
      }
      await Promise.all([...this.#listeners.values()].map((l) => l.loop ?? Promise.resolve()));
      this.#listeners.clear();
      this.#stopped = false;
      throw error;
    }
    this.#scheduleSweep();
  }

  protected async stop(timeoutMs: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#sweep !== undefined) this.deps.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const subscription of this.#control.splice(0)) subscription.unsubscribe();
    const listeners = [...this.#listeners.values()];
    for (const listener of listeners) this.#release(listener);
    const closing = [...this.dispatchers.values()].map((d) => d.close(timeoutMs));
    // Events are given back only once no pull request of ours is left on the server: nats-server
    // 2.9 redelivers a given-back event to a pull request whose subscriber is gone, and then
    // rewinds the consumer (acknowledged events come again, the given-back one only after the ack
    // wait). A fetch ends within FETCH_EXPIRES_MS.
    await Promise.all(listeners.map((l) => l.loop ?? Promise.resolve()));
    await Promise.all(closing);
    for (const dispatcher of this.dispatchers.values()) dispatcher.giveBack();
    this.#client?.close();
    if (!this.#nc.isClosed()) await this.#nc.flush().catch(() => undefined);
  }

  protected async load(domain: DomainDefinition, deadLetter: DeadLetter): Promise<Commit> {
    const stream = parseEventSubject(this.#store.prefix, deadLetter.subject);
    const jsm = this.#jsm ?? (await jetstreamManager(this.#nc));
    let stored;
    try {
      stored = await jsm.streams.getMessage(this.#store.streamName(domain.name), {
        seq: deadLetter.sequence,
      });
    } catch (error) {
      throw unavailable(`reading sequence ${deadLetter.sequence} of ${domain.name}`, error);
    }
    if (stored === null || stored.subject !== deadLetter.subject) {
      throw new InfrastructureError(
        'CORRUPT_DATA',
        `Dead letter ${deadLetter.id} refers to sequence ${deadLetter.sequence} on "${deadLetter.subject}", which stream ${this.#store.streamName(domain.name)} no longer holds; discard it.`,
        { details: { subject: deadLetter.subject, sequence: deadLetter.sequence } },
      );
    }
    return this.#decode(stream, deadLetter.subject, deadLetter.sequence, stored.data);
  }

  protected pending(key: string): number {
    return this.#listeners.get(key)?.pending ?? 0;
  }

  /** Creates or updates the consumer and restores blocked aggregates. */
  async #prepare(dispatcher: ReactorDispatcher): Promise<void> {
    const domain = dispatcher.domain.name;
    const reactor = dispatcher.reactor.name;
    const stream = this.#store.streamName(domain);
    const name = this.consumerName(domain, reactor);
    const aggregates = [...dispatcher.aggregates];
    const filter =
      aggregates.length === 1
        ? aggregateEventSubjects(this.#store.prefix, domain, aggregates[0]!)
        : domainEventSubjects(this.#store.prefix, domain);
    const config: Partial<ConsumerConfig> = {
      durable_name: name,
      description: `jetactor reactor ${domain}.${reactor}`,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
      filter_subject: filter,
      ack_wait: this.#options.ackWaitMs * 1_000_000,
      max_ack_pending: this.#options.maxAckPending,
      max_deliver: -1,
    };
    let pending: number;
    let barrier: Barrier | undefined;
    try {
      const info = await this.#jsm!.consumers.add(stream, config);
      pending = info.num_pending + info.num_ack_pending;
      if (info.num_ack_pending > 0) {
        barrier = {
          remaining: info.num_ack_pending,
          upTo: info.delivered.stream_seq,
          held: [],
          timer: undefined,
        };
      }
    } catch (error) {
      throw new ConfigError(
        `The durable consumer ${name} of reactor "${reactor}" on stream ${stream} cannot be created or updated: ${describeError(error)}. If a consumer of that name exists with other settings (e.g. a push consumer), delete it (\`nats consumer rm ${stream} ${name}\`; the reactor then starts again from the beginning of the stream, and the commands it sends are deduplicated), or choose another prefix.`,
        { code: 'CONSUMER_CONFIG_CONFLICT', cause: error, details: { stream, consumer: name } },
      );
    }
    if (dispatcher.reactor.deadLetters === 'wait') {
      for (const deadLetter of await this.#dlq.list({ domain, reactor })) {
        dispatcher.block(deadLetter);
      }
    }
    const listener: Listener = {
      dispatcher,
      stream,
      consumer: name,
      loop: undefined,
      pending,
      barrier,
    };
    this.#listeners.set(`${domain}.${reactor}`, listener);
    if (barrier !== undefined) {
      const waitMs = Math.ceil(this.#options.ackWaitMs * 1.5);
      this.deps.logger.info(
        { reactor, domain, unacknowledged: barrier.remaining, waitMs },
        'reactor waits for the events a previous listener did not acknowledge before handling newer ones',
      );
      barrier.timer = this.deps.clock.setTimeout(() => {
        if (listener.barrier === barrier && barrier.remaining > 0) {
          this.deps.logger.warn(
            { reactor, domain, missing: barrier.remaining },
            'events a previous listener did not acknowledge did not all come back in time; going on',
          );
        }
        this.#release(listener);
      }, waitMs);
    }
  }

  /** Ends a listener's barrier: dispatches what it held, in stream order. */
  #release(listener: Listener): void {
    const { barrier } = listener;
    if (barrier === undefined) return;
    listener.barrier = undefined;
    if (barrier.timer !== undefined) this.deps.clock.clearTimeout(barrier.timer);
    barrier.held.sort((a, b) => a.sequence - b.sequence);
    for (const delivery of barrier.held) listener.dispatcher.dispatch(delivery);
  }

  /** Pulls the consumer's messages in batches until the host stops. */
  async #fetch(listener: Listener): Promise<void> {
    let consumer: Consumer;
    try {
      consumer = await this.#js.consumers.get(listener.stream, listener.consumer);
    } catch (error) {
      throw unavailable(`opening consumer ${listener.consumer}`, error);
    }
    const batch = Math.min(this.#options.maxAckPending, 256);
    listener.loop = (async () => {
      let failures = 0;
      while (!this.#stopped) {
        try {
          const messages = await consumer.fetch({
            max_messages: batch,
            expires: FETCH_EXPIRES_MS,
          });
          for await (const msg of messages) this.#receive(listener, msg);
          failures = 0;
        } catch (error) {
          if (this.#stopped) return;
          failures += 1;
          const delay = Math.min(100 * 2 ** Math.min(failures - 1, 6), 5_000);
          this.deps.logger.warn(
            { err: error, consumer: listener.consumer, retryInMs: delay },
            'reactor could not fetch events; trying again',
          );
          await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, delay));
        }
      }
    })();
  }

  #receive(listener: Listener, msg: JsMsg): void {
    const { dispatcher } = listener;
    listener.pending = msg.info.pending;
    const stream = parseEventSubject(this.#store.prefix, msg.subject);
    const { barrier } = listener;
    if (barrier !== undefined && msg.seq <= barrier.upTo && msg.info.redelivered) {
      barrier.remaining -= 1;
    }
    if (stream !== undefined && !dispatcher.aggregates.has(stream.aggregate)) {
      settle(msg, 'ack');
      if (barrier !== undefined && barrier.remaining <= 0) this.#release(listener);
      return;
    }
    const delivery: Delivery = {
      key: msg.subject,
      subject: msg.subject,
      sequence: msg.seq,
      stream,
      decode: () => this.#decode(stream, msg.subject, msg.seq, msg.data),
      ack: () => settle(msg, 'ack'),
      nak: () => settle(msg, 'nak'),
      working: () => settle(msg, 'working'),
    };
    if (barrier === undefined) {
      dispatcher.dispatch(delivery);
      return;
    }
    barrier.held.push(delivery);
    if (barrier.remaining <= 0) this.#release(listener);
  }

  #decode(
    stream: ReturnType<typeof parseEventSubject>,
    subject: string,
    sequence: number,
    data: Uint8Array,
  ): Commit {
    if (stream === undefined) {
      throw new InfrastructureError(
        'CORRUPT_DATA',
        `The message at sequence ${sequence} on "${subject}" is not on an aggregate subject (${this.#store.prefix}.evt.<domain>.<Aggregate>.<id>); it was not written by this runtime.`,
        { details: { subject, sequence } },
      );
    }
    return decodeEnvelope(this.#store.codec, stream, { subject, sequence }, data).commit;
  }

  /** Answers replay and discard requests for a reactor (one node of a queue group answers). */
  #answer(dispatcher: ReactorDispatcher): void {
    const domain = dispatcher.domain.name;
    const reactor = dispatcher.reactor.name;
    for (const operation of ['replay', 'discard'] as const) {
      const subject = reactorControlSubject(this.#store.prefix, domain, reactor, operation);
      this.#control.push(
        this.#nc.subscribe(subject, {
          queue: `${this.#store.prefix}_rx`,
          callback: (error, msg) => {
            if (error === null) void this.#onControlRequest(msg, dispatcher, operation);
          },
        }),
      );
    }
  }

  async #onControlRequest(
    msg: Msg,
    dispatcher: ReactorDispatcher,
    operation: 'replay' | 'discard',
  ): Promise<void> {
    let reply: ControlReply;
    try {
      const request = JSON.parse(decoder.decode(msg.data)) as { id?: unknown };
      const id = Number(request.id);
      const deadLetter = await this.deps.deadLetters.get(id);
      if (
        deadLetter === undefined ||
        deadLetter.domain !== dispatcher.domain.name ||
        deadLetter.reactor !== dispatcher.reactor.name
      ) {
        throw deadLetterNotFound(
          id,
          ` for reactor "${dispatcher.reactor.name}" of domain "${dispatcher.domain.name}"`,
        );
      }
      const done = operation === 'replay' ? await this.replay(id) : await this.discard(id);
      reply = { ok: true, deadLetter: done };
    } catch (error) {
      const typed = isJetactorError(error)
        ? error
        : new InfrastructureError('REACTOR_HANDLER_FAILED', describeError(error), {
            cause: error,
          });
      reply = { ok: false, error: typed.toJSON() };
    }
    try {
      msg.respond(encoder.encode(JSON.stringify(reply)));
    } catch (error) {
      this.deps.logger.warn({ err: error }, 'could not answer a dead-letter request');
    }
  }

  /** Keeps events in hand alive and refreshes the lag, every `ackWaitMs / 3`. */
  #scheduleSweep(): void {
    if (this.#stopped) return;
    this.#sweep = this.deps.clock.setTimeout(
      () => {
        this.#sweep = undefined;
        for (const listener of this.#listeners.values()) {
          listener.dispatcher.forEachUnacknowledged((delivery) => delivery.working());
          for (const delivery of listener.barrier?.held ?? []) delivery.working();
          void this.#refreshPending(listener);
        }
        this.#scheduleSweep();
      },
      Math.max(50, Math.floor(this.#options.ackWaitMs / 3)),
    );
  }

  async #refreshPending(listener: Listener): Promise<void> {
    try {
      const info = await this.#jsm!.consumers.info(listener.stream, listener.consumer);
      const inHand = listener.dispatcher.unacknowledged;
      listener.pending = info.num_pending + Math.max(0, info.num_ack_pending - inHand);
    } catch {
      // The lag stays as last known; the next sweep tries again.
    }
  }
}

/** Acknowledges, gives back or keeps alive a message; a closed connection makes it a no-op. */
function settle(msg: JsMsg, how: 'ack' | 'nak' | 'working'): void {
  try {
    if (how === 'ack') msg.ack();
    else if (how === 'nak') msg.nak();
    else msg.working();
  } catch {
    // The connection is gone: the server redelivers after ack_wait.
  }
}

function unavailable(what: string, error: unknown): InfrastructureError {
  if (error instanceof InfrastructureError) return error;
  return new InfrastructureError(
    'STORE_UNAVAILABLE',
    `JetStream did not answer while ${what}: ${describeError(error)}. Check that nats-server is up with JetStream.`,
    { cause: error },
  );
}
