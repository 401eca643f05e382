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
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/transport-node';
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
import { EncodedHeaders } from '../nats/encoded-headers.js';
import { pubAckOf, type PubAckJSON } from '../nats/pub-ack.js';
import { headerKeys, headerValue, receivedHeaders } from '../nats/header-lines.js';
import { ReplyPipeline, ReplyTimeoutError, type ReplyWaiter } from '../nats/reply-pipeline.js';
import {
  isPermissionViolation,
  jetstreamUnavailable,
  permissionDenied,
} from '../nats/permission-denied.js';
import { compareVersions } from '../nats/server-version.js';
import { decodeEnvelope, encodeEnvelope } from './commit-envelope.js';
import { SubjectPull } from './subject-pull.js';
import type {
  AppendRequest,
  AppendResult,
  AppendWaiter,
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
    directReadLimit: z.number().int().min(1).default(64),
    maxBytes: z.number().int().min(-1).default(-1),
    codec: z.custom<Codec>().optional(),
    logger: z.custom<Logger>().optional(),
    clock: z.custom<Clock>().optional(),
  })
  .strict();

/**
 * How long a read's pull waits on the server before it expires and is sent again, and how long a
 * read waits for a commit it knows is there before it makes its consumer again.
 */
const READ_PULL_EXPIRES_MS = 2_000;
/** Commits a read asks for at once; more are asked for when half of them are taken. */
const READ_WINDOW = 1_024;
/** How long the server keeps a read's consumer that nobody pulls from (a reader gone). */
const READ_INACTIVE_MS = 30_000;

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
   * Commits of one aggregate read by direct get (one round trip each, newest first) before the
   * rest is streamed by an ordered consumer (a fixed cost of a few ms, then fast). Default 64.
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

/** JetStream error code of a failed `Nats-Expected-Last-Subject-Sequence` check. */
const WRONG_LAST_SEQUENCE = 10071;

/** The headers of a direct get's reply a read uses (it also has the stream's, the time and the commit's own). */
const DIRECT_GET_HEADERS = headerKeys('Nats-Sequence', 'Nats-Subject');

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
  readonly #pipeline: ReplyPipeline;
  readonly #domains = new Map<string, Promise<void>>();
  readonly #ready = new Set<string>();
  readonly #subscriptions = new Set<JetStreamSubscription>();
  #closed = false;

  private constructor(options: ResolvedOptions, jsm: JetStreamManager) {
    this.#options = options;
    this.#nc = options.connection;
    this.#jsm = jsm;
    this.#js = jetstream(this.#nc);
    this.#codec = options.codec ?? new MsgpackCodec();
    this.#logger = options.logger ?? createLogger();
    this.#clock = options.clock ?? systemClock;
    this.#pipeline = new ReplyPipeline(this.#nc, this.#clock, options.ackTimeoutMs);
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
      if (isPermissionViolation(error)) {
        throw permissionDenied(error, 'opening JetStream ($JS.API.INFO)', resolved.connection);
      }
      throw new InfrastructureError(
        'STORE_UNAVAILABLE',
        `JetStream is not available on the server (${describeError(error)}); start nats-server with JetStream enabled (-js, or the jetstream block of nats.conf).`,
        { cause: error },
      );
    }
    return new JetStreamEventStore(resolved, jsm);
  }

  /** The connection the store uses (the caller's; the store never closes it). */
  get connection(): NatsConnection {
    return this.#nc;
  }

  /** First token of the store's subjects, streams and buckets. */
  get prefix(): string {
    return this.#options.prefix;
  }

  /** Codec of commit envelopes. */
  get codec(): Codec {
    return this.#codec;
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

  /** Requests (appends and reads) currently waiting for their reply. */
  get inFlight(): number {
    return this.#pipeline.size;
  }

  append(request: AppendRequest): Promise<AppendResult> {
    return new Promise((resolve, reject) =>
      this.appendWith(request, { stored: resolve, failed: reject }),
    );
  }

  appendWith(request: AppendRequest, waiter: AppendWaiter): void {
    if (this.#closed) return failLater(waiter, this.#closedError());
    const { domain } = request.stream;
    if (!this.#ready.has(domain)) {
      this.#ensure(domain).then(
        () => this.appendWith(request, waiter),
        (error: unknown) => waiter.failed(error),
      );
      return;
    }
    let payload: Uint8Array;
    try {
      payload = encodeEnvelope(
        this.#codec,
        request.expectedPosition,
        request.events,
        request.commands,
      );
    } catch (error) {
      return failLater(
        waiter,
        new RejectionError(
          'INVALID_EVENT',
          `${label(request.stream)}: the commit cannot be encoded with ${this.#codec.contentType}: ${describeError(error)}. Event data must be plain values.`,
          { cause: error },
        ),
      );
    }
    const maxPayload = this.#nc.info?.max_payload ?? Infinity;
    if (payload.length > maxPayload) {
      return failLater(
        waiter,
        new RejectionError(
          'COMMIT_TOO_LARGE',
          `${label(request.stream)}: the commit is ${payload.length} bytes, more than the server's max_payload of ${maxPayload}. Make the command produce smaller events, or raise max_payload in nats.conf.`,
          { details: { bytes: payload.length, maxPayload } },
        ),
      );
    }
    this.#publish(request, this.subject(request.stream), payload, waiter);
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
    while (this.#pipeline.size > 0 && this.#clock.now() < deadline && !this.#nc.isClosed()) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.#pipeline.close('the event store was closed');
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
      if (!isStreamNotFound(error))
        throw unavailableForCommands(`reading stream ${wanted.name}`, error);
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
          throw unavailableForCommands(`creating stream ${wanted.name}`, error);
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

  /**
   * Publishes one commit and waits for its acknowledgement. A late acknowledgement makes it send
   * the same message again (same `Nats-Msg-Id`, so it is stored at most once). The first try
   * waits as one {@link JetStreamEventStore.#FirstTry} in the reply pipeline, without a promise,
   * an async function or closures (their reactions, suspended frames and contexts were a large
   * part of what an append allocates and of what the young generation copies while it waits); a
   * failed one goes on in {@link JetStreamEventStore.#retry}.
   */
  #publish(
    request: AppendRequest,
    subject: string,
    payload: Uint8Array,
    waiter: AppendWaiter,
  ): void {
    const h = new EncodedHeaders([
      ['Nats-Msg-Id', request.dedupId],
      ['Nats-Expected-Last-Subject-Sequence', String(request.expectedPosition)],
    ]);
    const first = new JetStreamEventStore.#FirstTry(this, request, subject, payload, h, waiter);
    try {
      this.#pipeline.send(subject, payload, h, first);
    } catch (error) {
      queueMicrotask(() => first.failed(error as Error));
    }
  }

  /** The first send of an append, waiting for its acknowledgement in the reply pipeline. */
  static readonly #FirstTry = class FirstTry implements ReplyWaiter {
    constructor(
      readonly store: JetStreamEventStore,
      readonly request: AppendRequest,
      readonly subject: string,
      readonly payload: Uint8Array,
      readonly headers: MsgHdrs,
      readonly waiter: AppendWaiter,
    ) {}

    replied(msg: Msg): void {
      let result: AppendResult | Promise<AppendResult>;
      try {
        result = this.store.#acknowledged(this.request, this.subject, this.payload, msg, false);
      } catch (error) {
        failLater(this.waiter, error);
        return;
      }
      if (result instanceof Promise) {
        result.then(
          (stored) => this.waiter.stored(stored),
          (error: unknown) => this.waiter.failed(error),
        );
      } else {
        this.waiter.stored(result);
      }
    }

    failed(error: Error): void {
      this.store.#retry(this.request, this.subject, this.payload, this.headers, error).then(
        (stored) => this.waiter.stored(stored),
        (failure: unknown) => this.waiter.failed(failure),
      );
    }
  };

  /** After a first try that failed: sends again while its acknowledgement was only late. */
  async #retry(
    request: AppendRequest,
    subject: string,
    payload: Uint8Array,
    h: MsgHdrs,
    first: unknown,
  ): Promise<AppendResult> {
    const { appendAttempts, ackTimeoutMs } = this.#options;
    let error = first;
    for (let attempt = 1; ; attempt++) {
      if (error instanceof ReplyTimeoutError && attempt < appendAttempts && !this.#closed) {
        this.#logger.debug(
          { subject, attempt: attempt + 1 },
          'append acknowledgement late; sending again with the same message id',
        );
        let msg: Msg;
        try {
          msg = await this.#pipeline.request(subject, payload, h);
        } catch (caught) {
          error = caught;
          continue;
        }
        return this.#acknowledged(request, subject, payload, msg, true);
      }
      if (error instanceof ReplyTimeoutError) {
        throw new InfrastructureError(
          'STORE_TIMEOUT',
          `${label(request.stream)}: no acknowledgement for the commit on ${subject} after ${attempt} tries of ${ackTimeoutMs} ms; it may or may not be stored. Send the command again with the same command id; it is applied at most once.`,
          { cause: error, details: { attempts: attempt, ackTimeoutMs } },
        );
      }
      if (isPermissionViolation(error)) {
        throw permissionDenied(error, `the commit of ${label(request.stream)} on ${subject}`);
      }
      throw new InfrastructureError(
        'STORE_UNAVAILABLE',
        `${label(request.stream)}: the commit on ${subject} was not acknowledged: ${describeError(error)}. It may or may not be stored; send the command again with the same command id.`,
        { cause: error },
      );
    }
  }

  /** The append's result from its acknowledgement; `resent` when it was sent more than once. */
  #acknowledged(
    request: AppendRequest,
    subject: string,
    payload: Uint8Array,
    msg: Msg,
    resent: boolean,
  ): AppendResult | Promise<AppendResult> {
    if (msg.headers?.hasError) {
      const { code, description } = msg.headers;
      throw new InfrastructureError(
        'STORE_UNAVAILABLE',
        `${label(request.stream)}: no JetStream stream answered on ${subject} (${code} ${description}). Is the stream ${this.streamName(request.stream.domain)} there and the server up? Send the command again.`,
        { details: { status: code } },
      );
    }
    let ack: PubAckJSON;
    try {
      ack = pubAckOf(msg.data);
    } catch (error) {
      throw unavailableForCommands(`reading the acknowledgement for ${subject}`, error);
    }
    if (ack.error !== undefined) throw this.#appendError(request, subject, ack.error);
    if (typeof ack.seq !== 'number') {
      throw unavailableForCommands(
        `reading the acknowledgement for ${subject}`,
        new Error(JSON.stringify(ack)),
      );
    }
    const position = ack.seq;
    if (ack.duplicate === true && resent) {
      return this.#isOurs(request, position, payload).then((ours) => ({
        position,
        duplicate: !ours,
      }));
    }
    return { position, duplicate: ack.duplicate === true };
  }

  /**
   * After a resend, a duplicate is either our own first send, stored once and ours, or the
   * commit of another writer under the same id (the command was sent again to another node):
   * only the stored bytes tell. When they cannot be read it counts as another's, so the writer
   * catches up instead of taking a position it did not write.
   */
  async #isOurs(request: AppendRequest, sequence: number, payload: Uint8Array): Promise<boolean> {
    try {
      const stored = await this.#directGet(this.streamName(request.stream.domain), { sequence });
      if (stored === undefined || stored.subject !== this.subject(request.stream)) return false;
      return Buffer.from(stored.data).equals(payload);
    } catch {
      return false;
    }
  }

  #appendError(
    request: AppendRequest,
    subject: string,
    error: NonNullable<PubAckJSON['error']>,
  ): JetactorError {
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
      `${label(request.stream)}: JetStream refused the commit on ${subject}: ${error.description ?? 'unknown error'} (code ${error.err_code ?? error.code}). Send the command again with the same command id; it is stored at most once.`,
      { details: { errCode: error.err_code, status: error.code } },
    );
  }

  /**
   * Reads an aggregate's commits after a position. Each commit records the position of the one
   * before it (the append's expected position, checked by the server), so the read walks back
   * from the subject's last message by direct gets, each O(1) on the server whatever else the
   * stream holds. Past `directReadLimit` commits the rest is streamed forward by a consumer.
   */
  async *#readCommits(stream: StreamRef, afterPosition: number): AsyncGenerator<Commit> {
    await this.#ensure(stream.domain);
    const name = this.streamName(stream.domain);
    const subject = this.subject(stream);
    const newestFirst: Commit[] = [];
    let found = await this.#directGet(name, { last: subject });
    while (found !== undefined && found.sequence > afterPosition) {
      if (found.subject !== subject) {
        throw new InfrastructureError(
          'CORRUPT_DATA',
          `The commit chain of ${subject} points at sequence ${found.sequence}, which holds a message of ${found.subject}; the stream was altered outside this runtime.`,
          { details: { subject, sequence: found.sequence } },
        );
      }
      const { commit, previous } = decodeEnvelope(this.#codec, stream, found, found.data);
      newestFirst.push(commit);
      if (previous <= afterPosition) break;
      if (newestFirst.length >= this.#options.directReadLimit) {
        yield* this.#consumeCommits(stream, name, subject, afterPosition + 1, previous);
        break;
      }
      found = await this.#directGet(name, { sequence: previous });
      if (found === undefined) {
        throw new InfrastructureError(
          'CORRUPT_DATA',
          `The commit at sequence ${commit.position} of ${subject} follows sequence ${previous}, which is missing from stream ${name}; the stream was altered outside this runtime.`,
          { details: { subject, sequence: previous } },
        );
      }
    }
    for (let index = newestFirst.length - 1; index >= 0; index--) yield newestFirst[index]!;
  }

  /**
   * Reads a long run of commits through a pull consumer of the read's own ({@link SubjectPull}),
   * deleted afterwards. A pull that stays silent for {@link READ_PULL_EXPIRES_MS} while commits
   * are still to come (one lost with a server restart or a reconnect) makes the consumer again
   * from the commit after the last one received. Should nothing come still, the read ends after
   * three `ackTimeoutMs` with STORE_UNAVAILABLE, so an actor never holds its commands longer than
   * that on a read.
   */
  async *#consumeCommits(
    stream: StreamRef,
    name: string,
    subject: string,
    from: number,
    until: number,
  ): AsyncGenerator<Commit> {
    const { ackTimeoutMs } = this.#options;
    const idleMs = 3 * ackTimeoutMs;
    const clock = this.#clock;
    let pull: SubjectPull | undefined;
    let reached = from - 1;
    let watchdog: TimerHandle | undefined;
    try {
      pull = await SubjectPull.open({
        nc: this.#nc,
        jsm: this.#jsm,
        stream: name,
        subject,
        from,
        batch: READ_WINDOW,
        expiresMs: READ_PULL_EXPIRES_MS,
        inactiveMs: Math.max(READ_INACTIVE_MS, idleMs),
        clock,
        logger: this.#logger,
      });
      // A watchdog rather than a timer per message: reads stream 100k commits a second.
      const open = pull;
      let waitingSince: number | undefined;
      let restartedAt = 0;
      let stalled = false;
      const watch = (): void => {
        watchdog = clock.setTimeout(
          () => {
            if (waitingSince !== undefined) {
              const now = clock.now();
              if (now - waitingSince >= idleMs) {
                stalled = true;
                open.interrupt();
                return;
              }
              if (now - Math.max(waitingSince, restartedAt) >= READ_PULL_EXPIRES_MS) {
                restartedAt = now;
                open.restart();
              }
            }
            watch();
          },
          Math.max(10, Math.min(Math.floor(idleMs / 4), READ_PULL_EXPIRES_MS / 2)),
        );
      };
      watch();
      for (;;) {
        const msg = open.take();
        if (msg === undefined) {
          if (stalled) break;
          waitingSince ??= clock.now();
          await open.ready();
          continue;
        }
        waitingSince = undefined;
        reached = msg.sequence;
        yield decodeEnvelope(this.#codec, stream, { subject, sequence: reached }, msg.data).commit;
        if (reached >= until) return;
      }
      throw new InfrastructureError(
        'STORE_UNAVAILABLE',
        `JetStream sent no commit of ${subject} for ${idleMs} ms while reading after sequence ${reached} (up to ${until}). Check that nats-server is up with JetStream; the command can be sent again.`,
        { details: { subject, sequence: reached, until, timeoutMs: idleMs } },
      );
    } catch (error) {
      if (error instanceof JetactorError) throw error;
      throw unavailableForCommands(`reading ${subject}`, error);
    } finally {
      if (watchdog !== undefined) clock.clearTimeout(watchdog);
      if (pull !== undefined) {
        await pull.close((closing) => this.#within(closing, ackTimeoutMs));
      }
    }
  }

  /** The promise's value, or undefined when it has not settled within `ms` (it is left running). */
  async #within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
    let timer: TimerHandle | undefined;
    const expired = new Promise<undefined>((resolve) => {
      timer = this.#clock.setTimeout(() => resolve(undefined), ms);
    });
    try {
      return await Promise.race([promise, expired]);
    } finally {
      this.#clock.clearTimeout(timer!);
    }
  }

  /**
   * One direct get: the message at a sequence, or the last one of a subject. Undefined when there
   * is none.
   */
  async #directGet(
    stream: string,
    query: { sequence: number } | { last: string },
  ): Promise<{ subject: string; sequence: number; data: Uint8Array } | undefined> {
    const what =
      'last' in query ? `the last commit of ${query.last}` : `sequence ${query.sequence}`;
    let reply: Msg;
    try {
      reply =
        'last' in query
          ? await this.#pipeline.request(`$JS.API.DIRECT.GET.${stream}.${query.last}`, undefined)
          : await this.#pipeline.request(
              `$JS.API.DIRECT.GET.${stream}`,
              // Bytes, not a string: nats.js would encode a string with a TextEncoder of its own
              // (a new ArrayBuffer per request; see poolProtocolLines).
              Buffer.from(`{"seq":${query.sequence}}`),
            );
    } catch (error) {
      throw unavailableForCommands(`reading ${what}`, error);
    }
    // Read in one pass from the received bytes: an activation reads several commits this way.
    const { hasStatus, lines } = receivedHeaders(reply, DIRECT_GET_HEADERS);
    if (hasStatus && reply.headers?.hasError) {
      if (reply.headers.code === 404) return undefined;
      throw unavailableForCommands(
        `reading ${what}`,
        new Error(`${reply.headers.code} ${reply.headers.description}`),
      );
    }
    const sequence = Number(headerValue(lines, 'Nats-Sequence'));
    const subject = headerValue(lines, 'Nats-Subject');
    if (!Number.isSafeInteger(sequence) || sequence <= 0 || subject === '') {
      throw unavailableForCommands(
        `reading ${what}`,
        new Error('direct get reply without its headers'),
      );
    }
    return { subject, sequence, data: reply.data };
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
    if (this.#closed) {
      await consumer.delete().catch(() => undefined);
      return;
    }
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
        const { commit } = decodeEnvelope(
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
      await consumer.delete().catch(() => undefined);
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

function failing(error: Error): AsyncIterable<Commit> {
  return {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }),
  };
}

function label(stream: StreamRef): string {
  return `${stream.aggregate} "${stream.id}"`;
}

/** {@link jetstreamUnavailable} for the store's reads and writes: the command can be sent again. */
function unavailableForCommands(what: string, error: unknown): JetactorError {
  return jetstreamUnavailable(
    what,
    error,
    'Check that nats-server is up with JetStream; the command can be sent again.',
  );
}

/** Calls `callback` with `value` once the current call stack is done (never synchronously). */
/** Fails `waiter` once the current call stack is done (never before appendWith returns). */
function failLater(waiter: AppendWaiter, error: unknown): void {
  queueMicrotask(() => waiter.failed(error));
}
