import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  AckPolicy,
  DeliverPolicy,
  ReplayPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { TimerHandle } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type { AnyProjectionDefinition } from '../domain/define-projection.js';
import {
  ConfigError,
  InfrastructureError,
  describeError,
  isJetactorError,
  type ErrorJSON,
} from '../errors.js';
import { jetstreamUnavailable } from '../nats/permission-denied.js';
import { decodeEnvelope } from '../event-store/commit-envelope.js';
import { KvLease, openLeaseBucket } from '../nats/kv-lease.js';
import type { Commit } from '../event-store/event-store.js';
import type { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import {
  domainEventSubjects,
  parseEventSubject,
  projectionBucket,
  projectionConsumerName,
  projectionControlSubject,
  projectionLeaseKey,
  projectionStatusSubject,
  reactorControlSubject,
} from '../nats/subjects.js';
import type { DeadLetter } from '../reactors/dead-letter-store.js';
import { JetStreamDeadLetterStore } from '../reactors/jetstream-dead-letter-store.js';
import { KvReadModelStore } from './kv-read-model-store.js';
import type { DocumentReadModel } from './read-model.js';
import type { ReadModelStore } from './read-model-store.js';
import {
  ProjectionHostBase,
  type ProjectionHostDeps,
  type ProjectionSlot,
  type ProjectionStatus,
  type RebuildStarted,
} from './projection-host.js';
import type { ProjectionDelivery } from './projection-runner.js';

/** What {@link JetStreamProjections} needs from the node. */
export interface JetStreamProjectionsDeps extends Omit<
  ProjectionHostDeps,
  'deadLetters' | 'prefix'
> {
  /** The store: its connection, prefix, codec and streams are the projections' too. */
  store: JetStreamEventStore;
  /** Where dead letters go; default a `JetStreamDeadLetterStore` on the store's connection. */
  deadLetters?: JetStreamDeadLetterStore;
  /** This node's name in leases and status replies; default `<host>-<pid>-<random>`. */
  nodeId?: string;
}

/** The answer to a request on a projection's control subjects. */
export interface ProjectionControlReply {
  /** True when it was done. */
  ok: boolean;
  /** The projection's status (status and rebuild). */
  status?: ProjectionStatus;
  /** What a rebuild started from. */
  rebuild?: RebuildStarted;
  /** The dead letter replayed or discarded. */
  deadLetter?: DeadLetter;
  /** Why not. */
  error?: ErrorJSON;
}

/** What every node answers on `<prefix>.px.status`. */
export interface ProjectionStatusReply {
  /** The node's id. */
  node: string;
  /** Its projections, with who runs each. */
  projections: (ProjectionStatus & { leader: string | undefined; here: boolean })[];
}

const FETCH_EXPIRES_MS = 1_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Runs each projection on one node at a time (a lease in `<prefix>_rm_leases`), on a durable pull
 * consumer `<prefix>_<domain>_rm_<projection>` over its whole domain stream (every commit comes, so
 * the checkpoint follows the stream and a query's `waitFor` is answered exactly).
 *
 * The read model's checkpoint is the truth, not the consumer's acknowledgements: whenever a node
 * starts running a projection it creates the consumer again at the checkpoint + 1, so commits a
 * crashed node held come back at once and in order. Commits are applied in stream order; a gap in
 * the sequence (a lost delivery) makes it read again from the last commit received. Acknowledgement
 * is `AckAll`, once per batch, after the batch is written.
 *
 * Other nodes hosting the projection stand by: they answer queries from the read model (waiting
 * for a position by reading the stored checkpoint) and take over when the lease expires.
 * The node that runs it answers `<prefix>.px.<domain>.<projection>.rebuild|status` and the dead
 * letter requests `<prefix>.rx.<domain>.<projection>.replay|discard`; every node answers
 * `<prefix>.px.status`.
 */
export class JetStreamProjections extends ProjectionHostBase {
  readonly #store: JetStreamEventStore;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #dlq: JetStreamDeadLetterStore;
  readonly #nodeId: string;
  readonly #sources = new Map<string, ConsumerSource>();
  readonly #leases = new Map<string, KvLease>();
  readonly #control = new Map<string, Subscription[]>();
  readonly #retries = new Map<string, TimerHandle>();
  #statusSubscription: Subscription | undefined;
  #jsm: JetStreamManager | undefined;
  #sweep: TimerHandle | undefined;
  #stopped = false;
  /** The lease time in force: the lease bucket's max age. */
  #leaseMs = 5_000;

  constructor(deps: JetStreamProjectionsDeps) {
    const dlq =
      deps.deadLetters ??
      new JetStreamDeadLetterStore({
        connection: deps.store.connection,
        prefix: deps.store.prefix,
      });
    super({ ...deps, deadLetters: dlq, prefix: deps.store.prefix });
    this.#store = deps.store;
    this.#nc = deps.store.connection;
    this.#js = jetstream(this.#nc);
    this.#dlq = dlq;
    this.#nodeId = deps.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  /** This node's id in leases and status replies. */
  get nodeId(): string {
    return this.#nodeId;
  }

  /** Whether this node runs the projection now (holds its lease). */
  leads(domain: string, projection: string): boolean {
    return this.#leases.get(`${domain}.${projection}`)?.held === true;
  }

  override status(): (ProjectionStatus & { leader: string | undefined; here: boolean })[] {
    return super.status().map((status) => {
      const lease = this.#leases.get(`${status.domain}.${status.projection}`);
      return { ...status, leader: lease?.holder, here: lease?.held === true };
    });
  }

  async rebuild(domain: string, projection: string): Promise<RebuildStarted> {
    const slot = this.slot(domain, projection);
    if (!this.leads(domain, projection)) throw this.#notHere(slot);
    const source = this.#sources.get(slot.key)!;
    await source.stop();
    await slot.runner.stop();
    slot.runner.state = 'rebuilding';
    let target: number;
    try {
      await slot.store.drop();
      const info = await this.#manager().then((jsm) =>
        jsm.streams.info(this.#store.streamName(slot.domain.name)),
      );
      target = info.state.last_seq;
    } finally {
      await this.#lead(slot);
    }
    this.deps.logger.warn(
      { projection: slot.key, target },
      'projection rebuilding from the start of the stream',
    );
    return { projection: slot.key, target };
  }

  protected documentStore(
    domain: DomainDefinition,
    projection: AnyProjectionDefinition,
    fingerprint: string,
  ): ReadModelStore<any, any> {
    const spec = projection.store as DocumentReadModel;
    return new KvReadModelStore({
      connection: this.#nc,
      bucket: projectionBucket(this.#store.prefix, domain.name, projection.name),
      fingerprint,
      document: spec.document,
      replicas: spec.replicas,
    });
  }

  protected async start(slots: readonly ProjectionSlot[]): Promise<void> {
    if (slots.length === 0) return;
    await this.#store.ensureDomains([...new Set(slots.map((s) => s.domain.name))]);
    await this.#dlq.ensure();
    const { kv, leaseMs } = await openLeaseBucket(
      this.#nc,
      this.#store.prefix,
      this.deps.options.leaseMs,
      this.deps.logger,
    );
    this.#leaseMs = leaseMs;
    this.#stopped = false;
    this.#statusSubscription = this.#nc.subscribe(projectionStatusSubject(this.#store.prefix), {
      callback: (error, msg) => {
        if (error !== null) return;
        const reply: ProjectionStatusReply = { node: this.#nodeId, projections: this.status() };
        respond(msg, reply);
      },
    });
    for (const slot of slots) {
      slot.runner.state = 'standby';
      slot.runner.onFenced = () => void this.#fenced(slot);
      const source = new ConsumerSource(this, slot);
      this.#sources.set(slot.key, source);
      const lease = new KvLease({
        kv,
        key: projectionLeaseKey(slot.domain.name, slot.projection.name),
        kind: 'projection',
        owner: this.#nodeId,
        leaseMs: this.#leaseMs,
        clock: this.deps.clock,
        logger: this.deps.logger,
        onAcquired: () => void this.#lead(slot),
        onLost: () => void this.#follow(slot),
      });
      this.#leases.set(slot.key, lease);
      void lease.start();
    }
    await this.#nc.flush();
    this.#scheduleSweep();
  }

  protected async stop(timeoutMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#sweep !== undefined) this.deps.clock.clearTimeout(this.#sweep);
    for (const timer of this.#retries.values()) this.deps.clock.clearTimeout(timer);
    this.#retries.clear();
    this.#statusSubscription?.unsubscribe();
    for (const slot of this.slots.values()) this.#silence(slot);
    await Promise.all(
      [...this.slots.values()].map(async (slot) => {
        await this.#sources.get(slot.key)?.stop();
        await slot.runner.stop(timeoutMs);
        await this.#leases.get(slot.key)?.stop();
      }),
    );
    if (!this.#nc.isClosed()) await this.#nc.flush().catch(() => undefined);
  }

  protected async load(domain: DomainDefinition, deadLetter: DeadLetter): Promise<Commit> {
    const jsm = await this.#manager();
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
    const stream = parseEventSubject(this.#store.prefix, deadLetter.subject);
    if (stored === null || stored.subject !== deadLetter.subject || stream === undefined) {
      throw new InfrastructureError(
        'CORRUPT_DATA',
        `Dead letter ${deadLetter.id} refers to sequence ${deadLetter.sequence} on "${deadLetter.subject}", which stream ${this.#store.streamName(domain.name)} no longer holds; discard it.`,
        { details: { subject: deadLetter.subject, sequence: deadLetter.sequence } },
      );
    }
    return decodeEnvelope(
      this.#store.codec,
      stream,
      { subject: deadLetter.subject, sequence: deadLetter.sequence },
      stored.data,
    ).commit;
  }

  /** The JetStream client, manager and options the sources share. */
  get jetstream(): { js: JetStreamClient; manager: () => Promise<JetStreamManager> } {
    return { js: this.#js, manager: () => this.#manager() };
  }

  /** Stream, consumer and acknowledgement settings of a slot. */
  consumerOf(slot: ProjectionSlot): {
    stream: string;
    consumer: string;
    filter: string;
    ackWaitMs: number;
    maxAckPending: number;
  } {
    return {
      stream: this.#store.streamName(slot.domain.name),
      consumer: projectionConsumerName(this.#store.prefix, slot.domain.name, slot.projection.name),
      filter: domainEventSubjects(this.#store.prefix, slot.domain.name),
      ackWaitMs: this.deps.options.ackWaitMs,
      maxAckPending: this.deps.options.maxAckPending,
    };
  }

  /** Decodes a delivered commit. */
  decode(subject: string, sequence: number, data: Uint8Array): Commit {
    const stream = parseEventSubject(this.#store.prefix, subject);
    if (stream === undefined) {
      throw new InfrastructureError(
        'CORRUPT_DATA',
        `The message at sequence ${sequence} on "${subject}" is not on an aggregate subject (${this.#store.prefix}.evt.<domain>.<Aggregate>.<id>); it was not written by this runtime.`,
        { details: { subject, sequence } },
      );
    }
    return decodeEnvelope(this.#store.codec, stream, { subject, sequence }, data).commit;
  }

  /** Parses an event subject. */
  parse(subject: string): ReturnType<typeof parseEventSubject> {
    return parseEventSubject(this.#store.prefix, subject);
  }

  /** The host's logger. */
  get logger(): ProjectionHostDeps['logger'] {
    return this.deps.logger;
  }

  async #manager(): Promise<JetStreamManager> {
    this.#jsm ??= await jetstreamManager(this.#nc);
    return this.#jsm;
  }

  /** This node holds the lease: open the read model, read from its checkpoint, answer requests. */
  async #lead(slot: ProjectionSlot): Promise<void> {
    const lease = this.#leases.get(slot.key);
    if (this.#stopped || lease?.held !== true) return;
    const source = this.#sources.get(slot.key)!;
    try {
      const position = await slot.runner.start();
      if (this.#stopped || lease.held !== true) {
        await slot.runner.stop();
        return;
      }
      await source.start(position);
    } catch (error) {
      await source.stop();
      await slot.runner.stop(0);
      slot.runner.state = 'failed';
      const fatal =
        isJetactorError(error) && (error.kind === 'definition' || error.kind === 'config');
      this.deps.logger.error(
        { err: error, projection: slot.key },
        fatal
          ? 'projection cannot start: fix its definition and restart the node'
          : 'projection could not start; trying again',
      );
      if (!fatal) {
        this.#retries.set(
          slot.key,
          this.deps.clock.setTimeout(() => {
            this.#retries.delete(slot.key);
            void this.#lead(slot);
          }, 1_000),
        );
      }
      return;
    }
    this.#answer(slot);
    this.deps.logger.info({ projection: slot.key, node: this.#nodeId }, 'projection running');
  }

  /** The lease is gone: stop writing at once and stand by. */
  async #follow(slot: ProjectionSlot): Promise<void> {
    this.#silence(slot);
    await this.#sources.get(slot.key)?.stop();
    await slot.runner.stop(0);
    if (!this.#stopped) slot.runner.state = 'standby';
  }

  async #fenced(slot: ProjectionSlot): Promise<void> {
    this.#silence(slot);
    await this.#sources.get(slot.key)?.stop();
    await this.#leases.get(slot.key)?.yieldLease();
    if (!this.#stopped) slot.runner.state = 'standby';
  }

  #silence(slot: ProjectionSlot): void {
    for (const subscription of this.#control.get(slot.key) ?? []) subscription.unsubscribe();
    this.#control.delete(slot.key);
  }

  /** Answers rebuild, status and dead-letter requests for a projection this node runs. */
  #answer(slot: ProjectionSlot): void {
    this.#silence(slot);
    const prefix = this.#store.prefix;
    const { domain, projection } = { domain: slot.domain.name, projection: slot.projection.name };
    const subscriptions: Subscription[] = [];
    const on = (
      subject: string,
      queue: string,
      handle: (msg: Msg) => Promise<ProjectionControlReply>,
    ) =>
      subscriptions.push(
        this.#nc.subscribe(subject, {
          queue,
          callback: (error, msg) => {
            if (error !== null) return;
            void handle(msg)
              .catch((caught: unknown) => ({ ok: false, error: toError(caught) }))
              .then((reply) => respond(msg, reply));
          },
        }),
      );
    const status = (): ProjectionStatus => ({ domain, projection, ...slot.runner.stats() });
    on(projectionControlSubject(prefix, domain, projection, 'status'), `${prefix}_px`, () =>
      Promise.resolve({ ok: true, status: status() }),
    );
    on(
      projectionControlSubject(prefix, domain, projection, 'rebuild'),
      `${prefix}_px`,
      async () => {
        const rebuild = await this.rebuild(domain, projection);
        return { ok: true, rebuild, status: status() };
      },
    );
    for (const operation of ['replay', 'discard'] as const) {
      on(
        reactorControlSubject(prefix, domain, projection, operation),
        `${prefix}_rx`,
        async (msg) => {
          const id = Number((JSON.parse(decoder.decode(msg.data)) as { id?: unknown }).id);
          const done = operation === 'replay' ? await this.replay(id) : await this.discard(id);
          return { ok: true, deadLetter: done };
        },
      );
    }
    this.#control.set(slot.key, subscriptions);
  }

  #notHere(slot: ProjectionSlot): InfrastructureError {
    const holder = this.#leases.get(slot.key)?.holder;
    return new InfrastructureError(
      'PROJECTION_UNAVAILABLE',
      `Projection "${slot.key}" runs on ${holder === undefined ? 'no node right now' : `node ${holder}`}, not here; send the request over NATS (jetactor projection …), which reaches the node that runs it.`,
      { details: { projection: slot.key, leader: holder } },
    );
  }

  /** Keeps commits in hand alive, every third of the ack wait. */
  #scheduleSweep(): void {
    if (this.#stopped) return;
    this.#sweep = this.deps.clock.setTimeout(
      () => {
        for (const slot of this.slots.values()) {
          if (slot.runner.running) slot.runner.forEachInHand((delivery) => delivery.working());
        }
        this.#scheduleSweep();
      },
      Math.max(50, Math.floor(this.deps.options.ackWaitMs / 3)),
    );
  }
}

/**
 * Feeds one projection's runner from its durable consumer: (re)creates the consumer at a position,
 * pulls batches until stopped, and reads again from the last commit received after a gap.
 */
class ConsumerSource {
  readonly #host: JetStreamProjections;
  readonly #slot: ProjectionSlot;
  #loop: Promise<void> | undefined;
  #messages: ConsumerMessages | undefined;
  #stopped = true;
  #gapAt: number | undefined;

  constructor(host: JetStreamProjections, slot: ProjectionSlot) {
    this.#host = host;
    this.#slot = slot;
  }

  /** Creates the consumer at `after + 1` and starts pulling. */
  async start(after: number): Promise<void> {
    await this.stop();
    this.#stopped = false;
    this.#gapAt = undefined;
    await this.#create(after);
    const consumer = await this.#consumer();
    this.#loop = this.#pull(consumer);
  }

  /**
   * Stops pulling at once. Commits the server still sends to the abandoned pull request are lost
   * to this node, which is harmless: the consumer is created again at the checkpoint next time.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#messages?.stop();
    const loop = this.#loop;
    this.#loop = undefined;
    await loop;
  }

  async #create(after: number): Promise<void> {
    const { stream, consumer, filter, ackWaitMs, maxAckPending } = this.#host.consumerOf(
      this.#slot,
    );
    const jsm = await this.#host.jetstream.manager();
    try {
      await jsm.consumers.delete(stream, consumer);
    } catch (error) {
      if (!/consumer not found/i.test(describeError(error))) {
        throw jetstreamUnavailable(`deleting consumer ${consumer}`, error);
      }
    }
    try {
      const info = await jsm.consumers.add(stream, {
        durable_name: consumer,
        description: `jetactor projection ${this.#slot.key}`,
        ack_policy: AckPolicy.All,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: after + 1,
        replay_policy: ReplayPolicy.Instant,
        filter_subject: filter,
        ack_wait: ackWaitMs * 1_000_000,
        max_ack_pending: maxAckPending,
        max_deliver: -1,
      });
      this.#slot.runner.pending = info.num_pending;
    } catch (error) {
      throw new ConfigError(
        `The durable consumer ${consumer} of projection "${this.#slot.key}" on stream ${stream} cannot be created: ${describeError(error)}.`,
        { code: 'CONSUMER_CONFIG_CONFLICT', cause: error, details: { stream, consumer } },
      );
    }
  }

  async #consumer(): Promise<Consumer> {
    const { stream, consumer } = this.#host.consumerOf(this.#slot);
    try {
      return await this.#host.jetstream.js.consumers.get(stream, consumer);
    } catch (error) {
      throw jetstreamUnavailable(`opening consumer ${consumer}`, error);
    }
  }

  async #pull(first: Consumer): Promise<void> {
    const { runner } = this.#slot;
    const { maxAckPending } = this.#host.consumerOf(this.#slot);
    let consumer = first;
    let failures = 0;
    while (!this.#stopped) {
      let reposition: number | undefined;
      try {
        await runner.whenBelow(maxAckPending);
        const messages = await consumer.fetch({
          max_messages: Math.min(maxAckPending, 256),
          expires: FETCH_EXPIRES_MS,
        });
        this.#messages = messages;
        if (this.#stopped) messages.stop();
        for await (const msg of messages) {
          if (this.#stopped) break;
          reposition = this.#receive(msg);
          if (reposition !== undefined) break;
        }
        failures = 0;
        if (reposition !== undefined && !this.#stopped) {
          await this.#create(reposition);
          consumer = await this.#consumer();
        }
      } catch (error) {
        if (this.#stopped) return;
        failures += 1;
        const delay = Math.min(100 * 2 ** Math.min(failures - 1, 6), 5_000);
        this.#host.logger.warn(
          { err: error, projection: this.#slot.key, retryInMs: delay },
          'projection could not fetch commits; trying again',
        );
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
        try {
          if (!this.#stopped) {
            await this.#create(runner.received);
            consumer = await this.#consumer();
          }
        } catch {
          // Tried again after the next delay.
        }
      }
    }
  }

  /** Hands a message to the runner; returns the position to read again from after a gap. */
  #receive(msg: JsMsg): number | undefined {
    const { runner } = this.#slot;
    runner.pending = msg.info.pending;
    const delivery: ProjectionDelivery = {
      sequence: msg.seq,
      subject: msg.subject,
      stream: this.#host.parse(msg.subject),
      decode: () => this.#host.decode(msg.subject, msg.seq, msg.data),
      ack: () => settle(msg, 'ack'),
      working: () => settle(msg, 'working'),
    };
    const expected = runner.received;
    const outcome = runner.push(delivery, this.#gapAt === expected);
    if (outcome !== 'gap') return undefined;
    this.#gapAt = expected;
    this.#host.logger.warn(
      { projection: this.#slot.key, expected: expected + 1, got: msg.seq },
      'projection missed commits (a lost delivery, or they are gone from the stream); reading again from the last one received',
    );
    return expected;
  }
}

function settle(msg: JsMsg, how: 'ack' | 'working'): void {
  try {
    if (how === 'ack') msg.ack();
    else msg.working();
  } catch {
    // The connection is gone: the consumer is created again at the checkpoint next time.
  }
}

function respond(msg: Msg, reply: unknown): void {
  try {
    msg.respond(encoder.encode(JSON.stringify(reply)));
  } catch {
    // The requester is gone.
  }
}

function toError(error: unknown): ErrorJSON {
  return isJetactorError(error)
    ? error.toJSON()
    : new InfrastructureError('PROJECTION_HANDLER_FAILED', describeError(error), {
        cause: error,
      }).toJSON();
}
