import {
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { createInbox, headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import {
  ConfigError,
  ConflictError,
  InfrastructureError,
  JetactorError,
  RejectionError,
  describeError,
} from '../errors.js';
import { createLogger, type Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import {
  DEFAULT_PREFIX,
  domainEventSubjects,
  eventSubject,
  parseEventSubject,
  streamName,
} from '../nats/subjects.js';
import { compareVersions } from '../nats/server-version.js';
import { decodeEnvelope, encodeEnvelope } from './commit-envelope.js';
import type {
  AppendRequest,
  AppendResult,
  Commit,
  EventStore,
  StoreSubscription,
  StreamRef,
  SubscribeOptions,
} from './event-store.js';

/** The first server version on which expected-sequence checks are safe on replicated streams. */
export const MIN_VERSION_FOR_REPLICAS = '2.9.21';

const optionsSchema = z
  .object({
    connection: z.custom<NatsConnection>(
      (value) => typeof value === 'object' && value !== null && 'publish' in value,
      { message: 'expected a NatsConnection from @nats-io/transport-node connect()' },
    ),
    prefix: z
      .string()
      .refine(isIdentifier, {
        message: 'must be letters, digits, "_" or "-" (it is part of stream and subject names)',
      })
      .default(DEFAULT_PREFIX),
    replicas: z.number().int().min(1).max(5).default(1),
    ackTimeoutMs: z.number().int().min(10).default(5_000),
    appendAttempts: z.number().int().min(1).max(20).default(3),
    duplicateWindowMs: z.number().int().min(1_000).default(120_000),
    directReadLimit: z.number().int().min(0).default(8),
    maxBytes: z.number().int().min(-1).default(-1),
    codec: z.custom<Codec>().optional(),
    logger: z.custom<Logger>().optional(),
    clock: z.custom<Clock>().optional(),
  })
  .strict();

/** Options of {@link JetStreamEventStore.open}. */
export interface JetStreamEventStoreOptions {
  /** An open connection (`connect()` from `@nats-io/transport-node`); the store does not close it. */
  connection: NatsConnection;
  /**
   * First token of subjects and stream names (letters, digits, `_`, `-`); default `jetactor`.
   * Streams are `<prefix>_<domain>`, subjects `<prefix>.evt.<domain>.<Aggregate>.<id>`.
   */
  prefix?: string;
  /**
   * Stream replicas, default 1. More than 1 needs nats-server 2.9.21 or later; older servers are
   * refused because their expected-sequence check is not safe on replicated streams.
   */
  replicas?: number;
  /** How long an append waits for its acknowledgement before it is sent again. Default 5000. */
  ackTimeoutMs?: number;
  /** Sends of one append in all (same message id, so it is stored at most once). Default 3. */
  appendAttempts?: number;
  /** The stream's duplicate window: how long a command id is remembered. Default 2 minutes. */
  duplicateWindowMs?: number;
  /**
   * Commits of one aggregate read by direct get (one round trip each) before the read switches
   * to an ordered consumer (a fixed cost, then streaming). Default 8.
   */
  directReadLimit?: number;
  /** Byte limit of each domain stream; -1 (default) for none. Appends beyond it fail. */
  maxBytes?: number;
  /** Codec of commit envelopes; default msgpack. */
  codec?: Codec;
  /** Logger; default a quiet pino logger. */
  logger?: Logger;
  /** Clock of the append timeout sweep. */
  clock?: Clock;
}

type ResolvedOptions = z.output<typeof optionsSchema>;

interface PendingAppend {
  request: AppendRequest;
  subject: string;
  payload: Uint8Array;
  attempts: number;
  sentAt: number;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

interface PubAckJSON {
  stream?: string;
  seq?: number;
  duplicate?: boolean;
  error?: { code?: number; err_code?: number; description?: string };
}

/** JetStream error code of a failed `Nats-Expected-Last-Subject-Sequence` check. */
const WRONG_LAST_SEQUENCE = 10071;

/**
 * The durable event store: one JetStream stream per domain (file storage), one subject per
 * aggregate instance, one message per commit.
 *
 * Appends are pipelined: each is published with a reply subject on one wildcard acknowledgement
 * subscription, and one timer sweeps for appends whose acknowledgement is late; there is no
 * per-append timer or inbox. Each append carries `Nats-Expected-Last-Subject-Sequence` (optimistic
 * concurrency: error 10071 becomes a `CONCURRENCY_CONFLICT`) and `Nats-Msg-Id` (deduplication).
 */
export class JetStreamEventStore implements EventStore {
  readonly #options: ResolvedOptions;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #codec: Codec;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #ackPrefix: string;
  readonly #pending = new Map<number, PendingAppend>();
  readonly #domains = new Map<string, Promise<void>>();
  readonly #ready = new Set<string>();
  readonly #subscriptions = new Set<JetStreamSubscription>();
  #nextAck = 1;
  #sweep: TimerHandle | undefined;
  #closed = false;

  private constructor(options: ResolvedOptions, jsm: JetStreamManager) {
    this.#options = options;
    this.#nc = options.connection;
    this.#jsm = jsm;
    this.#js = jetstream(this.#nc);
    this.#codec = options.codec ?? new MsgpackCodec();
    this.#logger = options.logger ?? createLogger();
    this.#clock = options.clock ?? systemClock;
    this.#ackPrefix = createInbox();
    this.#nc.subscribe(`${this.#ackPrefix}.*`, {
      callback: (error, msg) => {
        if (error === null) this.#onAck(msg);
      },
    });
    this.#nc
      .closed()
      .then(() => this.#failAll('the NATS connection closed'))
      .catch(() => undefined);
  }

  /**
   * Checks the options and the server, and returns a store. Streams are created or checked per
   * domain, on first use or by {@link JetStreamEventStore.ensureDomains}.
   */
  static async open(options: JetStreamEventStoreOptions): Promise<JetStreamEventStore> {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid JetStream event store options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    const resolved = Object.freeze(parsed.data);
    const version = resolved.connection.info?.version ?? '0.0.0';
    if (resolved.replicas > 1 && compareVersions(version, MIN_VERSION_FOR_REPLICAS) < 0) {
      throw new ConfigError(
        `replicas: ${resolved.replicas} needs nats-server ${MIN_VERSION_FOR_REPLICAS} or later, but the server runs ${version}: before ${MIN_VERSION_FOR_REPLICAS} the Nats-Expected-Last-Subject-Sequence check is not safe on replicated streams, so two writers could both win. Upgrade nats-server or use replicas: 1.`,
        {
          code: 'REPLICAS_UNSUPPORTED',
          details: { replicas: resolved.replicas, serverVersion: version },
        },
      );
    }
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(resolved.connection);
    } catch (error) {
      throw new InfrastructureError(
        'STORE_UNAVAILABLE',
        `JetStream is not available on the server (${describeError(error)}); start nats-server with JetStream enabled (-js, or the jetstream block of nats.conf).`,
        { cause: error },
      );
    }
    return new JetStreamEventStore(resolved, jsm);
  }

  /** The stream that holds a domain's commits. */
  streamName(domain: string): string {
    return streamName(this.#options.prefix, domain);
  }

  /** The subject of an aggregate instance's commits. */
  subject(stream: StreamRef): string {
    return eventSubject(this.#options.prefix, stream);
  }

  /** Creates each domain's stream, or checks that the existing one has the expected settings. */
  async ensureDomains(domains: readonly string[]): Promise<void> {
    await Promise.all(domains.map((domain) => this.#ensure(domain)));
  }

  /** Appends currently waiting for their acknowledgement. */
  get inFlight(): number {
    return this.#pending.size;
  }

  append(request: AppendRequest): Promise<AppendResult> {
    if (this.#closed) return Promise.reject(this.#closedError());
    const { domain } = request.stream;
    if (!this.#ready.has(domain)) {
      return this.#ensure(domain).then(() => this.append(request));
    }
    let payload: Uint8Array;
    try {
      payload = encodeEnvelope(this.#codec, request.events, request.commands);
    } catch (error) {
      return Promise.reject(
        new RejectionError(
          'INVALID_EVENT',
          `${label(request.stream)}: the commit cannot be encoded with ${this.#codec.contentType}: ${describeError(error)}. Event data must be plain values.`,
          { cause: error },
        ),
      );
    }
    const maxPayload = this.#nc.info?.max_payload ?? Infinity;
    if (payload.length > maxPayload) {
      return Promise.reject(
        new RejectionError(
          'COMMIT_TOO_LARGE',
          `${label(request.stream)}: the commit is ${payload.length} bytes, more than the server's max_payload of ${maxPayload}. Make the command produce smaller events, or raise max_payload in nats.conf.`,
          { details: { bytes: payload.length, maxPayload } },
        ),
      );
    }
    return new Promise<AppendResult>((resolve, reject) => {
      const pending: PendingAppend = {
        request,
        subject: this.subject(request.stream),
        payload,
        attempts: 0,
        sentAt: 0,
        resolve,
        reject,
      };
      this.#send(pending);
    });
  }

  read(stream: StreamRef, afterPosition = 0): AsyncIterable<Commit> {
    if (this.#closed) return failing(this.#closedError());
    return { [Symbol.asyncIterator]: () => this.#readCommits(stream, afterPosition) };
  }

  subscribe(
    domain: string,
    handler: (commit: Commit) => void | Promise<void>,
    options: SubscribeOptions = {},
  ): StoreSubscription {
    if (this.#closed) throw this.#closedError();
    const subscription = new JetStreamSubscription(
      () => this.#ensure(domain),
      this.#js,
      this.streamName(domain),
      this.#options.prefix,
      this.#codec,
      this.#logger,
      handler,
      options.afterPosition ?? 0,
      () => this.#subscriptions.delete(subscription),
    );
    this.#subscriptions.add(subscription);
    subscription.start();
    return subscription;
  }

  /**
   * Stops taking appends, waits up to `ackTimeoutMs` for those in flight, and closes
   * subscriptions. The connection stays open: it belongs to the caller.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const deadline = this.#clock.now() + this.#options.ackTimeoutMs;
    while (this.#pending.size > 0 && this.#clock.now() < deadline && !this.#nc.isClosed()) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.#failAll('the event store was closed');
    if (this.#sweep !== undefined) this.#clock.clearTimeout(this.#sweep);
    await Promise.all([...this.#subscriptions].map((s) => s.close()));
  }

  #ensure(domain: string): Promise<void> {
    let ready = this.#domains.get(domain);
    if (ready === undefined) {
      ready = this.#ensureStream(domain).then(
        () => {
          this.#ready.add(domain);
        },
        (error: unknown) => {
          this.#domains.delete(domain);
          throw error;
        },
      );
      this.#domains.set(domain, ready);
    }
    return ready;
  }

  async #ensureStream(domain: string): Promise<void> {
    if (!isIdentifier(domain)) {
      throw new RejectionError(
        'UNKNOWN_DOMAIN',
        `Domain name ${JSON.stringify(domain)} cannot name a stream; use letters, digits, "_" or "-".`,
      );
    }
    const wanted = this.#streamConfig(domain);
    let info: StreamInfo | undefined;
    try {
      info = await this.#jsm.streams.info(wanted.name);
    } catch (error) {
      if (!isStreamNotFound(error)) throw unavailable(`reading stream ${wanted.name}`, error);
    }
    if (info === undefined) {
      try {
        info = await this.#jsm.streams.add(wanted);
        this.#logger.info({ stream: wanted.name }, 'stream created');
      } catch (error) {
        // Another node may have created it meanwhile; check what is there.
        try {
          info = await this.#jsm.streams.info(wanted.name);
        } catch {
          throw unavailable(`creating stream ${wanted.name}`, error);
        }
      }
    }
    const conflicts = compareStreamConfig(wanted, info.config);
    if (conflicts.length > 0) {
      throw new ConfigError(
        `Stream ${wanted.name} exists with settings this runtime cannot use: ${conflicts.map((c) => `${c.field} is ${JSON.stringify(c.actual)}, expected ${JSON.stringify(c.expected)}`).join('; ')}. The runtime does not change an existing stream: fix it with \`nats stream edit ${wanted.name}\`, or choose another prefix.`,
        { code: 'STREAM_CONFIG_CONFLICT', details: { stream: wanted.name, conflicts } },
      );
    }
  }

  #streamConfig(domain: string): Partial<StreamConfig> & { name: string } {
    return {
      name: this.streamName(domain),
      subjects: [domainEventSubjects(this.#options.prefix, domain)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      max_msgs: -1,
      max_bytes: this.#options.maxBytes,
      max_age: 0,
      num_replicas: this.#options.replicas,
      duplicate_window: this.#options.duplicateWindowMs * 1_000_000,
      allow_direct: true,
      deny_delete: true,
    };
  }

  #send(pending: PendingAppend): void {
    const { request } = pending;
    const id = this.#nextAck++;
    pending.attempts += 1;
    pending.sentAt = this.#clock.now();
    this.#pending.set(id, pending);
    const h = headers();
    h.set('Nats-Msg-Id', request.dedupId);
    h.set('Nats-Expected-Last-Subject-Sequence', String(request.expectedPosition));
    try {
      this.#nc.publish(pending.subject, pending.payload, {
        reply: `${this.#ackPrefix}.${id}`,
        headers: h,
      });
    } catch (error) {
      this.#pending.delete(id);
      pending.reject(unavailable(`appending to ${pending.subject}`, error));
      return;
    }
    this.#scheduleSweep();
  }

  #onAck(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#ackPrefix.length + 1));
    const pending = this.#pending.get(id);
    if (pending === undefined) return; // a late acknowledgement of an attempt already resent
    this.#pending.delete(id);
    const { request } = pending;
    if (msg.headers?.hasError) {
      const { code, description } = msg.headers;
      if (code === 503 && pending.attempts < this.#options.appendAttempts) {
        this.#send(pending);
        return;
      }
      pending.reject(
        new InfrastructureError(
          'STORE_UNAVAILABLE',
          `${label(request.stream)}: no JetStream stream answered on ${pending.subject} (${code} ${description}). Is the stream ${this.streamName(request.stream.domain)} there and the server up? Send the command again.`,
          { details: { status: code } },
        ),
      );
      return;
    }
    let ack: PubAckJSON;
    try {
      ack = JSON.parse(new TextDecoder().decode(msg.data)) as PubAckJSON;
    } catch (error) {
      pending.reject(unavailable(`reading the acknowledgement for ${pending.subject}`, error));
      return;
    }
    if (ack.error !== undefined) {
      pending.reject(this.#appendError(pending, ack.error));
      return;
    }
    if (typeof ack.seq !== 'number') {
      pending.reject(unavailable(`reading the acknowledgement for ${pending.subject}`, ack));
      return;
    }
    // A duplicate of our own earlier attempt is our commit: it was stored once.
    const duplicate = ack.duplicate === true && pending.attempts === 1;
    pending.resolve({ position: ack.seq, duplicate });
  }

  #appendError(pending: PendingAppend, error: NonNullable<PubAckJSON['error']>): JetactorError {
    const { request } = pending;
    if (error.err_code === WRONG_LAST_SEQUENCE) {
      const actual = /(\d+)\s*$/.exec(error.description ?? '')?.[1];
      return new ConflictError(
        'CONCURRENCY_CONFLICT',
        `${label(request.stream)} moved past position ${request.expectedPosition} (another writer appended first); catch up and decide again.`,
        {
          details: {
            expectedPosition: request.expectedPosition,
            actualPosition: actual === undefined ? undefined : Number(actual),
          },
        },
      );
    }
    return new InfrastructureError(
      'STORE_FAILED',
      `${label(request.stream)}: JetStream refused the commit on ${pending.subject}: ${error.description ?? 'unknown error'} (code ${error.err_code ?? error.code}). Send the command again with the same command id; it is stored at most once.`,
      { details: { errCode: error.err_code, status: error.code } },
    );
  }

  #scheduleSweep(): void {
    if (this.#sweep !== undefined) return;
    const interval = Math.max(5, Math.floor(this.#options.ackTimeoutMs / 4));
    this.#sweep = this.#clock.setTimeout(() => {
      this.#sweep = undefined;
      this.#sweepTimeouts();
      if (this.#pending.size > 0) this.#scheduleSweep();
    }, interval);
  }

  /** Resends appends whose acknowledgement is late; pending appends are in send order. */
  #sweepTimeouts(): void {
    const now = this.#clock.now();
    const late: [number, PendingAppend][] = [];
    for (const entry of this.#pending) {
      if (now - entry[1].sentAt < this.#options.ackTimeoutMs) break;
      late.push(entry);
    }
    for (const [id, pending] of late) {
      this.#pending.delete(id);
      if (pending.attempts < this.#options.appendAttempts && !this.#closed) {
        this.#logger.debug(
          { subject: pending.subject, attempt: pending.attempts + 1 },
          'append acknowledgement late; sending again with the same message id',
        );
        this.#send(pending);
      } else {
        pending.reject(
          new InfrastructureError(
            'STORE_TIMEOUT',
            `${label(pending.request.stream)}: no acknowledgement for the commit on ${pending.subject} after ${pending.attempts} tries of ${this.#options.ackTimeoutMs} ms; it may or may not be stored. Send the command again with the same command id; it is applied at most once.`,
            { details: { attempts: pending.attempts, ackTimeoutMs: this.#options.ackTimeoutMs } },
          ),
        );
      }
    }
  }

  #failAll(why: string): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const append of pending) {
      append.reject(
        new InfrastructureError(
          'STORE_UNAVAILABLE',
          `${label(append.request.stream)}: ${why} before the commit was acknowledged; it may or may not be stored. Send the command again with the same command id.`,
        ),
      );
    }
  }

  async *#readCommits(stream: StreamRef, afterPosition: number): AsyncGenerator<Commit> {
    await this.#ensure(stream.domain);
    const name = this.streamName(stream.domain);
    const subject = this.subject(stream);
    const last = await this.#directGet(name, undefined, subject);
    if (last === undefined || last.sequence <= afterPosition) return;
    let next = afterPosition + 1;
    for (let count = 0; count < this.#options.directReadLimit; count++) {
      const found = await this.#directGet(name, next, subject);
      if (found === undefined) return;
      yield decodeEnvelope(this.#codec, stream, found, found.data);
      if (found.sequence >= last.sequence) return;
      next = found.sequence + 1;
    }
    yield* this.#consumeCommits(stream, name, subject, next, last.sequence);
  }

  /** Reads a long run of commits through an ordered consumer, deleted afterwards. */
  async *#consumeCommits(
    stream: StreamRef,
    name: string,
    subject: string,
    from: number,
    until: number,
  ): AsyncGenerator<Commit> {
    let messages: ConsumerMessages | undefined;
    try {
      const consumer = await this.#js.consumers.get(name, {
        filter_subjects: subject,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: from,
      });
      messages = await consumer.consume({ max_messages: 1024 });
      for await (const msg of messages) {
        yield decodeEnvelope(this.#codec, stream, { subject, sequence: msg.seq }, msg.data);
        if (msg.seq >= until) break;
      }
    } catch (error) {
      if (error instanceof JetactorError) throw error;
      throw unavailable(`reading ${subject}`, error);
    } finally {
      await messages?.close();
    }
  }

  /**
   * One direct get: the first message on `subject` at or after `sequence`, or the last one when
   * `sequence` is undefined. Undefined when there is none.
   */
  async #directGet(
    stream: string,
    sequence: number | undefined,
    subject: string,
  ): Promise<{ subject: string; sequence: number; data: Uint8Array } | undefined> {
    let reply: Msg;
    try {
      reply =
        sequence === undefined
          ? await this.#nc.request(`$JS.API.DIRECT.GET.${stream}.${subject}`, undefined, {
              timeout: this.#options.ackTimeoutMs,
            })
          : await this.#nc.request(
              `$JS.API.DIRECT.GET.${stream}`,
              JSON.stringify({ seq: sequence, next_by_subj: subject }),
              { timeout: this.#options.ackTimeoutMs },
            );
    } catch (error) {
      throw unavailable(`reading ${subject}`, error);
    }
    if (reply.headers?.hasError) {
      if (reply.headers.code === 404) return undefined;
      throw unavailable(
        `reading ${subject}`,
        new Error(`${reply.headers.code} ${reply.headers.description}`),
      );
    }
    const found = Number(reply.headers?.get('Nats-Sequence'));
    if (!Number.isSafeInteger(found) || found <= 0) {
      throw unavailable(`reading ${subject}`, new Error('direct get reply without Nats-Sequence'));
    }
    return { subject, sequence: found, data: reply.data };
  }

  #closedError(): InfrastructureError {
    return new InfrastructureError(
      'STORE_CLOSED',
      'The JetStream event store is closed; open a new one with JetStreamEventStore.open().',
    );
  }
}

/** A subscription to every commit of a domain, through an ordered consumer. */
class JetStreamSubscription implements StoreSubscription {
  #messages: ConsumerMessages | undefined;
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly ensure: () => Promise<void>,
    private readonly js: JetStreamClient,
    private readonly stream: string,
    private readonly prefix: string,
    private readonly codec: Codec,
    private readonly logger: Logger,
    private readonly handler: (commit: Commit) => void | Promise<void>,
    private readonly afterPosition: number,
    private readonly onClosed: () => void,
  ) {}

  start(): void {
    this.#running = this.#run().catch((error: unknown) => {
      this.logger.error({ err: error, stream: this.stream }, 'subscription ended by an error');
    });
  }

  async #run(): Promise<void> {
    await this.ensure();
    if (this.#closed) return;
    const consumer = await this.js.consumers.get(this.stream, {
      deliver_policy: this.afterPosition > 0 ? DeliverPolicy.StartSequence : DeliverPolicy.All,
      ...(this.afterPosition > 0 ? { opt_start_seq: this.afterPosition + 1 } : {}),
    });
    if (this.#closed) return;
    this.#messages = await consumer.consume({ max_messages: 512 });
    try {
      for await (const msg of this.#messages) {
        if (this.#closed) break;
        const stream = parseEventSubject(this.prefix, msg.subject);
        if (stream === undefined) {
          this.logger.warn(
            { subject: msg.subject, sequence: msg.seq },
            'message on a subject that is not an aggregate subject; skipped',
          );
          continue;
        }
        const commit = decodeEnvelope(
          this.codec,
          stream,
          { subject: msg.subject, sequence: msg.seq },
          msg.data,
        );
        await this.handler(commit);
      }
    } finally {
      this.#closed = true;
      this.onClosed();
      await this.#messages.close();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.onClosed();
    await this.#messages?.close();
    await this.#running;
  }
}

interface ConfigConflict {
  field: string;
  expected: unknown;
  actual: unknown;
}

function compareStreamConfig(
  wanted: Partial<StreamConfig>,
  actual: StreamConfig,
): ConfigConflict[] {
  const conflicts: ConfigConflict[] = [];
  const check = (field: keyof StreamConfig, same: boolean): void => {
    if (!same) conflicts.push({ field, expected: wanted[field], actual: actual[field] });
  };
  check(
    'subjects',
    (actual.subjects ?? []).length === 1 && actual.subjects?.[0] === wanted.subjects?.[0],
  );
  check('storage', actual.storage === wanted.storage);
  check('retention', actual.retention === wanted.retention);
  check('num_replicas', actual.num_replicas === wanted.num_replicas);
  check('allow_direct', actual.allow_direct === true);
  check('max_msgs_per_subject', (actual.max_msgs_per_subject ?? -1) <= 0);
  check('max_age', (actual.max_age ?? 0) === 0);
  check('discard', actual.discard === wanted.discard);
  return conflicts;
}

function isStreamNotFound(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number } } | undefined)?.api_error?.err_code;
  return code === 10059 || /stream not found/i.test(describeError(error));
}

function unavailable(what: string, error: unknown): InfrastructureError {
  if (error instanceof InfrastructureError) return error;
  return new InfrastructureError(
    'STORE_UNAVAILABLE',
    `JetStream did not answer while ${what}: ${describeError(error)}. Check that nats-server is up with JetStream; the command can be sent again.`,
    { cause: error },
  );
}

function failing(error: Error): AsyncIterable<Commit> {
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }),
  };
}

function label(stream: StreamRef): string {
  return `${stream.aggregate} "${stream.id}"`;
}
