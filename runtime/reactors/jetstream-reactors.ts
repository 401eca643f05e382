import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  AckPolicy,
  DeliverPolicy,
  ReplayPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerConfig,
  type ConsumerInfo,
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
import { jetstreamUnavailable } from '../nats/permission-denied.js';
import { decodeEnvelope } from '../event-store/commit-envelope.js';
import { createClient, type JetactorClient } from '../messaging/client.js';
import type { Commit } from '../event-store/event-store.js';
import type { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import { KvLease, openLeaseBucket } from '../nats/kv-lease.js';
import {
  aggregateEventSubjects,
  domainEventSubjects,
  parseEventSubject,
  reactorConsumerName,
  reactorControlSubject,
  reactorLeaseKey,
} from '../nats/subjects.js';
import type { DeadLetter } from './dead-letter-store.js';
import { JetStreamDeadLetterStore } from './jetstream-dead-letter-store.js';
import {
  deadLetterNotFound,
  type Delivery,
  type ReactorDispatcher,
  type ReactorLeadership,
} from './reactor-dispatcher.js';
import { ReactorHostBase, type ReactorHostDeps, type ReactorHostOptions } from './reactor-host.js';

/** What {@link JetStreamReactors} needs from the node. */
export interface JetStreamReactorsDeps extends Omit<ReactorHostDeps, 'deadLetters'> {
  /** The store: its connection, prefix, codec and streams are the reactors' too. */
  store: JetStreamEventStore;
  /**
   * Acknowledgement tuning (`ackWaitMs`, `maxAckPending`), and `leaseMs`: the lease time of the
   * lease bucket the reactors share with the projections (a node passes its
   * `projections.leaseMs`; default 5000).
   */
  options: Pick<ReactorHostOptions, 'ackWaitMs' | 'maxAckPending'> & { leaseMs?: number };
  /** Where dead letters go; default a `JetStreamDeadLetterStore` on the store's connection. */
  deadLetters?: JetStreamDeadLetterStore;
  /** This node's name in the leases; default `<host>-<pid>-<random>`. */
  nodeId?: string;
}

/** One subscribed reactor: its lease, and the listener while this node runs it. */
interface Slot {
  /** `<domain>.<reactor>`. */
  key: string;
  lease: KvLease;
  /** The listener while this node holds the lease (from the moment it got it). */
  term: Term | undefined;
  /** Listeners of leases lost or given up, until they have given back what they held. */
  retiring: Set<Term>;
  /** Taking the lead and retiring run one after the other. */
  chain: Promise<void>;
  /** True until listen() made its first try for the lease. */
  initial: boolean;
  /** Why taking the lead at the first try failed: listen() then fails with it. */
  failure: unknown;
}

/** What a node does for a reactor while it holds the reactor's lease. */
interface Term {
  dispatcher: ReactorDispatcher;
  lease: KvLease;
  stream: string;
  consumer: string;
  loop: Promise<void> | undefined;
  /** Events the server has not delivered yet (from the last message or consumer info). */
  pending: number;
  /** Set while events a previous listener left unacknowledged are still to come back. */
  barrier: Barrier | undefined;
  /** False once the lease is lost or the host stops: no new pull request. */
  fetching: boolean;
  /** False once the lease is lost: events handled after that are given back, not acknowledged. */
  acking: boolean;
  /** Events handled after the lease was lost, given back with the rest. */
  returned: JsMsg[];
  /** The replay and discard subscriptions. */
  control: Subscription[];
  /** Fetching and answering requests. */
  ready: boolean;
}

/**
 * Events delivered to a previous listener and never acknowledged (it crashed, lost its lease, or
 * was closed with events in hand) come back before anything of their aggregates may run: until
 * they all did (or `1.5 × ackWaitMs` passed), every message is held, then all are dispatched in
 * stream order.
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

/** How often a listener behind a barrier reads the consumer's ack floor. */
const ACK_FLOOR_POLL_MS = 200;

/** How often a new lease holder looks whether the former holder's last pull request ended. */
const WAITING_POLL_MS = 100;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Runs each reactor on a durable JetStream pull consumer, `<prefix>_<domain>_<reactor>`, on its
 * domain's stream: filtered to `<prefix>.evt.<domain>.<Aggregate>.*` when it handles one aggregate
 * type, else to the whole domain (other aggregates' commits are acknowledged at once; nats-server
 * 2.9 takes one filter subject per consumer).
 *
 * One node at a time runs a reactor: the one holding its lease, the key
 * `<domain>.reactor.<reactor>` in the KV bucket `<prefix>_rm_leases` the projections use too (same
 * lease time). The others hosting it stand by, pull nothing, and take over when the lease is
 * released (a graceful stop) or expires (a crash). So events of one aggregate never run on two
 * nodes at once. A holder that loses its lease pulls no more at once, lets the handlers it runs
 * finish, acknowledges nothing from then on and gives every event it held back; a new holder
 * waits until the former one's last pull request ended, then holds back newer events until those
 * the former holder left unacknowledged came back (see the barrier), so order per aggregate holds
 * across a takeover.
 *
 * Explicit acknowledgement, only after every handled event of the commit succeeded or was
 * dead-lettered. Events in hand (running, retrying, queued behind their aggregate, held behind a
 * dead letter) are kept alive with `working()` by one sweep every `ackWaitMs / 3`, so the server
 * never redelivers behind the reactor's back; a crashed node's events are redelivered after
 * `ackWaitMs`. Dead letters go to `<prefix>_deadletters`; with the `'wait'` policy the blocked
 * aggregates are read back from there whenever a node takes the lead. The node running a reactor
 * answers replay and discard requests on `<prefix>.rx.<domain>.<reactor>.replay|discard`
 * (`jetactor deadletters`); standbys do not subscribe them.
 */
export class JetStreamReactors extends ReactorHostBase {
  readonly #store: JetStreamEventStore;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #dlq: JetStreamDeadLetterStore;
  readonly #options: JetStreamReactorsDeps['options'];
  readonly #nodeId: string;
  readonly #slots = new Map<string, Slot>();
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
    this.#nodeId = deps.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  /** The durable consumer's name of a subscribed reactor, e.g. `jetactor_bank_welcome`. */
  consumerName(domain: string, reactor: string): string {
    return reactorConsumerName(this.#store.prefix, domain, reactor);
  }

  /** This node's id in the reactors' leases. */
  get nodeId(): string {
    return this.#nodeId;
  }

  /** Whether this node runs the reactor now (holds its lease and listens). */
  leads(domain: string, reactor: string): boolean {
    const slot = this.#slots.get(`${domain}.${reactor}`);
    return slot?.term?.ready === true && slot.lease.held;
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

  /** Runs a dead letter again; only on the node that runs its reactor (else `REACTOR_UNAVAILABLE`). */
  override async replay(id: number): Promise<DeadLetter> {
    await this.#mustRun(id);
    return super.replay(id);
  }

  /** Removes a dead letter; only on the node that runs its reactor (else `REACTOR_UNAVAILABLE`). */
  override async discard(id: number): Promise<DeadLetter> {
    await this.#mustRun(id);
    return super.discard(id);
  }

  protected async start(dispatchers: readonly ReactorDispatcher[]): Promise<void> {
    const active = dispatchers.filter((d) => d.aggregates.size > 0);
    if (active.length === 0) return;
    try {
      this.#jsm = await jetstreamManager(this.#nc);
    } catch (error) {
      throw jetstreamUnavailable('opening JetStream for the reactors', error);
    }
    await this.#store.ensureDomains([...new Set(active.map((d) => d.domain.name))]);
    await this.#dlq.ensure();
    const { kv, leaseMs } = await openLeaseBucket(
      this.#nc,
      this.#store.prefix,
      this.#options.leaseMs ?? 5_000,
      this.deps.logger,
    );
    this.#stopped = false;
    const slots = active.map((dispatcher) => {
      const domain = dispatcher.domain.name;
      const reactor = dispatcher.reactor.name;
      const slot: Slot = {
        key: `${domain}.${reactor}`,
        lease: new KvLease({
          kv,
          key: reactorLeaseKey(domain, reactor),
          kind: 'reactor',
          owner: this.#nodeId,
          leaseMs,
          clock: this.deps.clock,
          logger: this.deps.logger,
          onAcquired: () => {
            const { initial } = slot;
            void this.#queue(slot, () => this.#lead(slot, initial));
          },
          onLost: () => this.#lost(slot),
        }),
        term: undefined,
        retiring: new Set(),
        chain: Promise.resolve(),
        initial: true,
        failure: undefined,
      };
      this.#slots.set(slot.key, slot);
      return slot;
    });
    try {
      // Whoever gets a lease at once listens before listen() resolves; the others stand by.
      await Promise.all(slots.map((slot) => slot.lease.start()));
      for (const slot of slots) slot.initial = false;
      await Promise.all(slots.map((slot) => slot.chain));
      const failed = slots.find((slot) => slot.failure !== undefined);
      if (failed !== undefined) throw failed.failure;
    } catch (error) {
      // Undo what was started, so that listen() can be called again.
      this.#stopped = true;
      await Promise.all(
        slots.map(async (slot) => {
          await this.#queue(slot, () => this.#retire(slot, 0));
          await slot.lease.stop();
        }),
      );
      this.#slots.clear();
      throw error;
    }
    this.#scheduleSweep();
  }

  protected async stop(timeoutMs: number): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#sweep !== undefined) this.deps.clock.clearTimeout(this.#sweep);
    this.#sweep = undefined;
    await Promise.all(
      [...this.#slots.values()].map(async (slot) => {
        if (slot.term !== undefined) slot.term.fetching = false;
        await this.#queue(slot, () => this.#retire(slot, timeoutMs));
        // Released only once everything is acknowledged or given back: the next node takes over
        // at once and gets what this one did not finish first.
        await slot.lease.stop();
      }),
    );
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
      throw jetstreamUnavailable(
        `reading sequence ${deadLetter.sequence} of ${domain.name}`,
        error,
      );
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
    return this.#slots.get(key)?.term?.pending ?? 0;
  }

  protected override leadership(key: string): ReactorLeadership {
    const slot = this.#slots.get(key);
    if (slot === undefined) return { here: false, leader: undefined };
    return { here: slot.term?.ready === true && slot.lease.held, leader: slot.lease.holder };
  }

  /** Runs lead and retire steps of a reactor one after the other; returns when `step` is done. */
  #queue(slot: Slot, step: () => Promise<void>): Promise<void> {
    const run = slot.chain.then(step).catch((error: unknown) => {
      this.deps.logger.error({ err: error, reactor: slot.key }, 'reactor lease step failed');
    });
    slot.chain = run;
    return run;
  }

  /**
   * This node got the lease: create the consumer, wait for the former holder, listen, answer.
   * When that fails at listen()'s first try, listen() fails; later, the lease is given up.
   */
  async #lead(slot: Slot, initial: boolean): Promise<void> {
    if (this.#stopped || slot.term !== undefined || !slot.lease.held) return;
    let dispatcher = this.dispatchers.get(slot.key)!;
    if (dispatcher.closing) {
      // A former term closed it (some of its handlers may still be finishing there).
      dispatcher = dispatcher.successor();
      this.dispatchers.set(slot.key, dispatcher);
    }
    const domain = dispatcher.domain.name;
    const term: Term = {
      dispatcher,
      lease: slot.lease,
      stream: this.#store.streamName(domain),
      consumer: this.consumerName(domain, dispatcher.reactor.name),
      loop: undefined,
      pending: 0,
      barrier: undefined,
      fetching: true,
      acking: true,
      returned: [],
      control: [],
      ready: false,
    };
    slot.term = term;
    try {
      await this.#prepare(term);
      if (!term.fetching) return;
      await this.#fetch(term);
      this.#answer(term);
      term.ready = true;
      this.deps.logger.info(
        { reactor: slot.key, node: this.#nodeId },
        'reactor running on this node',
      );
    } catch (error) {
      if (initial) {
        slot.failure = error;
        return;
      }
      this.deps.logger.error(
        { err: error, reactor: slot.key },
        'reactor cannot run on this node; giving its lease up and trying again after a lease time',
      );
      await this.#retire(slot, 0);
      await slot.lease.yieldLease();
    }
  }

  /** The lease is gone: pull nothing more, acknowledge nothing more, give back what is held. */
  #lost(slot: Slot): void {
    const { term } = slot;
    if (term !== undefined) {
      term.fetching = false;
      term.acking = false;
    }
    this.deps.logger.warn(
      { reactor: slot.key },
      'reactor lease lost: fetching stopped, events in hand are given back to the next holder',
    );
    void this.#queue(slot, () => this.#retire(slot, this.#options.ackWaitMs));
  }

  /**
   * Ends this node's term of a reactor: no pull request any more, no requests answered, running
   * handlers finish within `timeoutMs`, and everything not acknowledged is given back once the
   * last pull request ended (nats-server 2.9 redelivers a given-back event to a pull request whose
   * subscriber is gone, and then rewinds the consumer; a fetch ends within FETCH_EXPIRES_MS).
   */
  async #retire(slot: Slot, timeoutMs: number): Promise<void> {
    const { term } = slot;
    if (term === undefined) return;
    slot.term = undefined;
    slot.retiring.add(term);
    term.fetching = false;
    term.ready = false;
    for (const subscription of term.control.splice(0)) subscription.unsubscribe();
    const closing = term.dispatcher.close(timeoutMs);
    // What a barrier held goes to the closing dispatcher, which keeps it to be given back.
    this.#release(term);
    await (term.loop ?? Promise.resolve());
    await closing;
    // A handler that finishes after the timeout acknowledges nothing: it was given back.
    term.acking = false;
    term.dispatcher.giveBack();
    for (const msg of term.returned.splice(0)) settle(msg, 'nak');
    slot.retiring.delete(term);
    if (!this.#nc.isClosed()) await this.#nc.flush().catch(() => undefined);
  }

  /** Rejects a dead-letter request for a reactor this node stands by for. */
  async #mustRun(id: number): Promise<void> {
    const deadLetter = await this.deps.deadLetters.get(id);
    if (deadLetter === undefined) return;
    const slot = this.#slots.get(`${deadLetter.domain}.${deadLetter.reactor}`);
    if (slot === undefined || this.leads(deadLetter.domain, deadLetter.reactor)) return;
    const holder = slot.lease.holder;
    throw new InfrastructureError(
      'REACTOR_UNAVAILABLE',
      `Reactor "${deadLetter.reactor}" of domain "${deadLetter.domain}" runs on ${holder === undefined ? 'no node right now' : `node ${holder}`}, not here; send the request over NATS (jetactor deadletters replay|discard), which reaches the node that runs it.`,
      { details: { reactor: slot.key, leader: holder } },
    );
  }

  /** Creates or updates the consumer, sets up the barrier and restores blocked aggregates. */
  async #prepare(term: Term): Promise<void> {
    const { dispatcher, stream, consumer: name } = term;
    const domain = dispatcher.domain.name;
    const reactor = dispatcher.reactor.name;
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
    let info: ConsumerInfo;
    try {
      info = await this.#jsm!.consumers.add(stream, config);
    } catch (error) {
      throw new ConfigError(
        `The durable consumer ${name} of reactor "${reactor}" on stream ${stream} cannot be created or updated: ${describeError(error)}. If a consumer of that name exists with other settings (e.g. a push consumer), delete it (\`nats consumer rm ${stream} ${name}\`; the reactor then starts again from the beginning of the stream, and the commands it sends are deduplicated), or choose another prefix.`,
        { code: 'CONSUMER_CONFIG_CONFLICT', cause: error, details: { stream, consumer: name } },
      );
    }
    // A former holder that lost its lease pulls no more, but its last pull request may still be
    // open: what it brings is given back, so the barrier is taken once it ended.
    const deadline = this.deps.clock.now() + FETCH_EXPIRES_MS + 500;
    while (info.num_waiting > 0 && term.fetching && this.deps.clock.now() < deadline) {
      await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, WAITING_POLL_MS));
      try {
        info = await this.#jsm!.consumers.info(stream, name);
      } catch (error) {
        throw jetstreamUnavailable(`reading consumer ${name}`, error);
      }
    }
    term.pending = info.num_pending + info.num_ack_pending;
    if (dispatcher.reactor.deadLetters === 'wait') {
      for (const deadLetter of await this.#dlq.list({ domain, reactor })) {
        dispatcher.block(deadLetter);
      }
    }
    if (info.num_ack_pending === 0 || !term.fetching) return;
    const barrier: Barrier = {
      remaining: info.num_ack_pending,
      upTo: info.delivered.stream_seq,
      held: [],
      timer: undefined,
    };
    term.barrier = barrier;
    const waitMs = Math.ceil(this.#options.ackWaitMs * 1.5);
    this.deps.logger.info(
      { reactor, domain, unacknowledged: barrier.remaining, waitMs },
      'reactor waits for the events a previous listener did not acknowledge before handling newer ones',
    );
    barrier.timer = this.deps.clock.setTimeout(() => {
      if (term.barrier === barrier && barrier.remaining > 0) {
        this.deps.logger.warn(
          { reactor, domain, missing: barrier.remaining },
          'events a previous listener did not acknowledge did not all come back in time; going on',
        );
      }
      this.#release(term);
    }, waitMs);
    void this.#watchAckFloor(term, barrier);
  }

  /**
   * Ends a barrier as soon as the consumer's ack floor passes the events delivered before the
   * listener started: they were in hand on another live node (which acknowledged them), not
   * lost with a dead one, so none of them is coming back.
   */
  async #watchAckFloor(term: Term, barrier: Barrier): Promise<void> {
    while (term.fetching && term.barrier === barrier) {
      try {
        const info = await this.#jsm!.consumers.info(term.stream, term.consumer);
        if (term.barrier !== barrier) return;
        if (info.ack_floor.stream_seq >= barrier.upTo) {
          this.#release(term);
          return;
        }
      } catch {
        // Asked again below; the barrier's timer bounds the wait anyway.
      }
      await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, ACK_FLOOR_POLL_MS));
    }
  }

  /** Ends a term's barrier: dispatches what it held, in stream order. */
  #release(term: Term): void {
    const { barrier } = term;
    if (barrier === undefined) return;
    term.barrier = undefined;
    if (barrier.timer !== undefined) this.deps.clock.clearTimeout(barrier.timer);
    barrier.held.sort((a, b) => a.sequence - b.sequence);
    for (const delivery of barrier.held) term.dispatcher.dispatch(delivery);
  }

  /** Pulls the consumer's messages in batches while the term lasts and the lease is valid. */
  async #fetch(term: Term): Promise<void> {
    let consumer: Consumer;
    try {
      consumer = await this.#js.consumers.get(term.stream, term.consumer);
    } catch (error) {
      throw jetstreamUnavailable(`opening consumer ${term.consumer}`, error);
    }
    const batch = Math.min(this.#options.maxAckPending, 256);
    term.loop = (async () => {
      let failures = 0;
      // `held` reads the clock: a node whose timers ran late (a pause) pulls nothing either.
      while (term.fetching && term.lease.held) {
        try {
          const messages = await consumer.fetch({
            max_messages: batch,
            expires: FETCH_EXPIRES_MS,
          });
          // Read to its end even once the term is over: what it brings is given back.
          for await (const msg of messages) this.#receive(term, msg);
          failures = 0;
        } catch (error) {
          if (!term.fetching) return;
          failures += 1;
          const delay = Math.min(100 * 2 ** Math.min(failures - 1, 6), 5_000);
          this.deps.logger.warn(
            { err: error, consumer: term.consumer, retryInMs: delay },
            'reactor could not fetch events; trying again',
          );
          await new Promise<void>((resolve) => this.deps.clock.setTimeout(resolve, delay));
        }
      }
    })();
  }

  #receive(term: Term, msg: JsMsg): void {
    const { dispatcher } = term;
    term.pending = msg.info.pending;
    const stream = parseEventSubject(this.#store.prefix, msg.subject);
    const { barrier } = term;
    if (barrier !== undefined && msg.seq <= barrier.upTo && msg.info.redelivered) {
      barrier.remaining -= 1;
    }
    if (stream !== undefined && !dispatcher.aggregates.has(stream.aggregate)) {
      acknowledge(term, msg);
      if (barrier !== undefined && barrier.remaining <= 0) this.#release(term);
      return;
    }
    const delivery: Delivery = {
      key: msg.subject,
      subject: msg.subject,
      sequence: msg.seq,
      stream,
      decode: () => this.#decode(stream, msg.subject, msg.seq, msg.data),
      ack: () => acknowledge(term, msg),
      nak: () => settle(msg, 'nak'),
      working: () => settle(msg, 'working'),
    };
    if (barrier === undefined) {
      dispatcher.dispatch(delivery);
      return;
    }
    barrier.held.push(delivery);
    if (barrier.remaining <= 0) this.#release(term);
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

  /**
   * Answers replay and discard requests for a reactor while this node runs it (a queue group, in
   * case a node of an older version answers too).
   */
  #answer(term: Term): void {
    const { dispatcher } = term;
    const domain = dispatcher.domain.name;
    const reactor = dispatcher.reactor.name;
    for (const operation of ['replay', 'discard'] as const) {
      const subject = reactorControlSubject(this.#store.prefix, domain, reactor, operation);
      term.control.push(
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

  /**
   * Keeps events in hand alive (also those of a term that lost its lease, until given back: the
   * next holder waits for them rather than running an aggregate's events on two nodes at once)
   * and refreshes the lag, every `ackWaitMs / 3`.
   */
  #scheduleSweep(): void {
    if (this.#stopped) return;
    this.#sweep = this.deps.clock.setTimeout(
      () => {
        this.#sweep = undefined;
        for (const slot of this.#slots.values()) {
          for (const term of [...slot.retiring, ...(slot.term === undefined ? [] : [slot.term])]) {
            term.dispatcher.forEachUnacknowledged((delivery) => delivery.working());
            for (const delivery of term.barrier?.held ?? []) delivery.working();
            for (const msg of term.returned) settle(msg, 'working');
          }
          if (slot.term?.ready === true) void this.#refreshPending(slot.term);
        }
        this.#scheduleSweep();
      },
      Math.max(50, Math.floor(this.#options.ackWaitMs / 3)),
    );
  }

  async #refreshPending(term: Term): Promise<void> {
    try {
      const info = await this.#jsm!.consumers.info(term.stream, term.consumer);
      const inHand = term.dispatcher.unacknowledged;
      term.pending = info.num_pending + Math.max(0, info.num_ack_pending - inHand);
    } catch {
      // The lag stays as last known; the next sweep tries again.
    }
  }
}

/**
 * Acknowledges a message while the term holds its lease. After that the next holder owns the
 * reactor: the message is kept to be given back, and comes again there.
 */
function acknowledge(term: Term, msg: JsMsg): void {
  if (term.acking && term.lease.held) settle(msg, 'ack');
  else term.returned.push(msg);
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
