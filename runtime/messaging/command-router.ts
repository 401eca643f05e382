import { performance } from 'node:perf_hooks';
import {
  Match,
  headers,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import { z } from 'zod';
import { pushed } from '../arrays.js';
import type { CommandRequest, CommandResult } from '../aggregate/command.js';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec, encodeShaped } from '../codec/msgpack-codec.js';
import type { AnyAggregateDefinition } from '../domain/define-aggregate.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import { errorCodes } from '../error-codes.js';
import {
  ConfigError,
  InfrastructureError,
  JetactorError,
  RejectionError,
  describeError,
} from '../errors.js';
import type { Logger } from '../logger.js';
import { isIdentifier, whyNotSubjectToken } from '../names.js';
import type { DomainNode } from '../node/domain-node.js';
import { headerLines, headerValue, lowerCaseKey, type HeaderLines } from '../nats/header-lines.js';
import { poolProtocolLines } from '../nats/pooled-protocol-lines.js';
import { leanMessageArgs } from '../nats/lean-message-args.js';
import { directPublish, type DirectPublish } from '../nats/direct-publish.js';
import { ReplyPipeline, ReplyTimeoutError } from '../nats/reply-pipeline.js';
import { COMPACT_REPLY, toCompactResult, writeCompactResult } from './compact-result.js';
import {
  DEFAULT_PREFIX,
  commandQueueGroup,
  domainCommandSubjects,
  domainViewSubjects,
  forwardSubject,
  viewQueueGroup,
} from '../nats/subjects.js';
import {
  PartitionRouting,
  type ForwardFallbackReason,
  type Route,
  type RoutingCounters,
  type RoutingStats,
} from './partition-routing.js';
import {
  bodyFormat,
  bodyFormatOf,
  commandHeaders,
  jsonCodec,
  replyHeaders,
  type BodyFormat,
  type ReplyStatus,
} from './protocol.js';

/** Default of {@link CommandRouterOptions.maxPayloadBytes}: 256 KiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024;

/** Default of {@link CommandRouterOptions.maxInFlight}. */
export const DEFAULT_MAX_IN_FLIGHT = 1024;

/** Default of {@link AffinityOptions.forwardTimeoutMs}. */
export const DEFAULT_FORWARD_TIMEOUT_MS = 1_000;

const affinitySchema = z.strictObject({
  partitions: z.number().int().min(1).max(1024).optional(),
  leaseMs: z.number().int().min(250).max(600_000).optional(),
  nodeId: z.string().optional(),
  forwardTimeoutMs: z.number().int().min(10).max(600_000).default(DEFAULT_FORWARD_TIMEOUT_MS),
  logger: z
    .custom<Logger>((value) => typeof (value as Logger | undefined)?.child === 'function', {
      message: 'expected a pino logger',
    })
    .optional(),
});

const optionsSchema = z.strictObject({
  node: z.custom<DomainNode>(
    (value) =>
      typeof (value as DomainNode | undefined)?.execute === 'function' &&
      typeof (value as DomainNode | undefined)?.view === 'function',
    { message: 'expected a node made with createNode()' },
  ),
  connection: z.custom<NatsConnection>(
    (value) => typeof (value as NatsConnection | undefined)?.subscribe === 'function',
    { message: 'expected a NatsConnection from @nats-io/transport-node connect()' },
  ),
  prefix: z
    .string()
    .refine(isIdentifier, {
      message: 'must be letters, digits, "_" or "-", starting with a letter (it starts subjects)',
    })
    .default(DEFAULT_PREFIX),
  codec: z
    .custom<Codec>((value) => typeof (value as Codec | undefined)?.decode === 'function', {
      message: 'expected a Codec { contentType, encode, decode }',
    })
    .optional(),
  maxPayloadBytes: z.number().int().positive().default(DEFAULT_MAX_PAYLOAD_BYTES),
  maxInFlight: z.number().int().positive().default(DEFAULT_MAX_IN_FLIGHT),
  logger: z
    .custom<Logger>((value) => typeof (value as Logger | undefined)?.child === 'function', {
      message: 'expected a pino logger',
    })
    .optional(),
  clock: z
    .custom<Clock>((value) => typeof (value as Clock | undefined)?.setTimeout === 'function', {
      message: 'expected a Clock',
    })
    .optional(),
  affinity: z
    .union([z.boolean(), affinitySchema])
    .default(false)
    .transform((value) =>
      value === false ? undefined : value === true ? affinitySchema.parse({}) : value,
    ),
});

/**
 * Partition affinity of a {@link CommandRouter}: each hosted domain's aggregate-id space is cut
 * into partitions owned by the nodes through leases in NATS KV, and a node forwards a request for
 * a partition another node owns to that node, so one aggregate is served by one node while
 * membership is stable (warm actors, almost no conflicts). See docs/partitions.md.
 */
export interface AffinityOptions {
  /** Partitions per domain, 1 to 1024, the same on every node of the domain. Default 64. */
  partitions?: number;
  /**
   * Lease time in milliseconds (250 to 600 000), the same on every node of the domain; a dead
   * node's partitions move to the others about this long after its last renewal. Default 5 000.
   */
  leaseMs?: number;
  /**
   * This node's id in the lease buckets, unique among the nodes: 1 to 64 letters, digits, `_` or
   * `-`. Default `<host>-<pid>-<random>`.
   */
  nodeId?: string;
  /**
   * How long a forwarded request waits for the owner's reply before this node serves it itself
   * (safe: the stream's expected-sequence check and the command id make a second execution
   * harmless). Default 1 000.
   */
  forwardTimeoutMs?: number;
  /** Logger of the partition leases. Default the router's logger. */
  logger?: Logger;
}

/** Options of {@link CommandRouter}. */
export interface CommandRouterOptions {
  /** The node that executes the commands; the router serves every domain it hosts. */
  node: DomainNode;
  /** An open connection; the router never closes it. */
  connection: NatsConnection;
  /** First token of the subjects (letters, digits, `_`, `-`); default `jetactor`. */
  prefix?: string;
  /**
   * Codec of requests that are not JSON, and of their replies; default msgpack
   * (`application/msgpack`). JSON requests always get JSON replies.
   */
  codec?: Codec;
  /** Largest request body accepted; bigger ones get `PAYLOAD_TOO_LARGE`. Default 256 KiB. */
  maxPayloadBytes?: number;
  /**
   * Most commands and views executing at once; beyond it requests are refused at once with the
   * retryable `OVERLOADED`. Bad requests never count. Default 1024.
   */
  maxInFlight?: number;
  /** pino logger; one line per answered request at `debug`. Default the node's logger. */
  logger?: Logger;
  /** Clock of the stop timeout, forward timeouts and leases. Default the system clock. */
  clock?: Clock;
  /**
   * Partition affinity: `true` or options to turn it on (`jetactor node` does by default), `false`
   * (the default) to serve every request where it arrives. Needs JetStream (a KV bucket per
   * domain, `<prefix>_leases_<domain>`).
   */
  affinity?: boolean | AffinityOptions;
}

/**
 * Counters of one subscription of the router, in the shape the NATS service protocol reports.
 * `requests`, `ok`, `rejected`, `failed`, `overloaded`, `lastError` and `processingTimeNs` count
 * the requests clients sent to this node (relayed replies of forwarded ones included); the
 * {@link RoutingCounters} say where they were served.
 */
export interface RouterEndpointStats extends RoutingCounters {
  /** Endpoint name: `cmd-<domain>` or `view-<domain>`. */
  name: string;
  /** What it answers. */
  kind: 'command' | 'view';
  /** The domain. */
  domain: string;
  /** The subscribed subject, e.g. `jetactor.cmd.bank.>`. */
  subject: string;
  /** Its queue group, e.g. `jetactor.cmd.bank`. */
  queueGroup: string;
  /** Requests received (with a reply subject). */
  requests: number;
  /** Requests answered with success. */
  ok: number;
  /** Requests answered with a rejection (bad request, domain rule): retrying cannot help. */
  rejected: number;
  /** Requests answered with a retryable error (conflict, store, shutdown), `OVERLOADED` included. */
  failed: number;
  /** Of the failed ones, those refused with `OVERLOADED`. */
  overloaded: number;
  /** `<code>: <message>` of the last error reply; empty when none. */
  lastError: string;
  /** Time from receipt to reply, summed over all requests, in nanoseconds. */
  processingTimeNs: number;
}

interface Endpoint extends RouterEndpointStats {
  /** The subject prefix of this endpoint, with the trailing dot: `jetactor.cmd.bank.`. */
  base: string;
  definition: DomainDefinition;
}

/** A request being answered. */
interface Incoming {
  readonly endpoint: Endpoint;
  /**
   * The message, until the request is parsed and started: what waits for the actor keeps neither
   * it nor its body (views of nats.js' read buffer), only the subject to answer on.
   */
  msg: Msg | undefined;
  /** Its body (`msg.data` makes a new view each time), until the request is started. */
  data: Uint8Array;
  /** The subject to answer on (the request's reply subject). */
  readonly reply: string;
  /** The subject the client sent it on (for a forwarded request, from its header). */
  readonly subject: string;
  /** Set when another node forwarded it here as the owner of `partition`, with its `token`. */
  readonly forwarded: { readonly partition: number; readonly token: number } | undefined;
  /** `performance.now()` at receipt. */
  readonly started: number;
  /**
   * True when a command's result is answered in its compact form (`Jetactor-Reply: compact`); set
   * when the request is parsed, false in the literal so every request has the same shape.
   */
  compact: boolean;
}

/** A request as received, before it is started: its message is still there. */
type Received = Incoming & { msg: Msg };

const NO_DATA = new Uint8Array(0);

type RouterState = 'new' | 'listening' | 'stopping' | 'stopped';

const MAX_HEADER_VALUE = 256;

/** Headers only nodes put on forwarded requests, by lower-case name. */
const forwardHeaders = new Set(
  [commandHeaders.forwardedSubject, commandHeaders.partitionToken, commandHeaders.forwardedBy].map(
    (h) => h.toLowerCase(),
  ),
);

/** `Jetactor-Reply` in lower case: how the result is answered, not an option of the command. */
const REPLY_HEADER = commandHeaders.reply.toLowerCase();

/** Request headers besides Content-Type, by lower-case name. */
const optionHeaders = new Map<string, keyof Omit<CommandRequest, 'aggregate' | 'id' | 'command'>>([
  [commandHeaders.commandId.toLowerCase(), 'commandId'],
  [commandHeaders.expectedVersion.toLowerCase(), 'expectedVersion'],
  [commandHeaders.correlationId.toLowerCase(), 'correlationId'],
  [commandHeaders.causationId.toLowerCase(), 'causationId'],
  [commandHeaders.actor.toLowerCase(), 'actor'],
  [commandHeaders.timeout.toLowerCase(), 'timeoutMs'],
]);

/**
 * Serves a node's commands over NATS: for each hosted domain it subscribes
 * `<prefix>.cmd.<domain>.>` in the queue group `<prefix>.cmd.<domain>` (so each command goes to
 * one of the nodes hosting the domain), parses `<prefix>.cmd.<domain>.<Aggregate>.<id>.<command>`,
 * decodes the body (msgpack, or JSON), runs the command on the node and replies
 * `{ commandId, version, events, response, duplicate }` or `{ error: { code, message, kind,
 * details } }`, in the request's format, with a `Jetactor-Status` header.
 *
 * It also answers `<prefix>.view.<domain>.<Aggregate>.<id>` with the aggregate's state.
 *
 * Bad requests are answered synchronously, before anything reaches the supervisor, and never
 * count against {@link CommandRouterOptions.maxInFlight}; so a flood of them cannot starve good
 * ones, and nothing of them is stored.
 *
 * With {@link CommandRouterOptions.affinity}, each domain's partitions are owned by the nodes
 * through leases, and a request whose partition another live node owns is forwarded once to
 * `<prefix>.fwd.<domain>.<partition>` with the owner's fencing token; the owner's reply is relayed
 * unchanged. The owner serves it only while it holds that very lease, else refuses with
 * `NOT_PARTITION_OWNER`; on a refusal, no responders or no reply within the forward timeout the
 * node serves the request itself. Correctness never depends on it: the stream's expected-sequence
 * check and the command id make a request served on two nodes safe.
 */
export class CommandRouter {
  readonly #node: DomainNode;
  readonly #nc: NatsConnection;
  /** `publish()` for replies, whose subjects came from the server: see directPublish. */
  readonly #publish: DirectPublish;
  readonly #prefix: string;
  readonly #codec: Codec;
  readonly #maxPayloadBytes: number;
  readonly #maxInFlight: number;
  /** The `OVERLOADED` reply of each codec, encoded once (see `#refuseOverloaded`). */
  readonly #overloadedReplies = new Map<
    Codec,
    { data: Uint8Array; headers: MsgHdrs; lastError: string }
  >();
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #endpoints: Endpoint[] = [];
  readonly #subscriptions: Subscription[] = [];
  readonly #routing = new Map<string, PartitionRouting>();
  readonly #forwardTimeoutMs: number;
  #pipeline: ReplyPipeline | undefined;
  #state: RouterState = 'new';
  #inFlight = 0;
  #idleWaiters: (() => void)[] = [];
  #stopped: Promise<{ inFlight: number }> | undefined;

  /** Checks the options (a `ConfigError` names each wrong one); call {@link start} to serve. */
  constructor(options: CommandRouterOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid command router options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    const config = parsed.data;
    this.#node = config.node;
    this.#nc = config.connection;
    // Every request is answered with one publish: see poolProtocolLines.
    poolProtocolLines(this.#nc);
    // Every request is read from its message's arguments: see leanMessageArgs.
    leanMessageArgs(this.#nc);
    this.#publish = directPublish(this.#nc);
    this.#prefix = config.prefix;
    this.#codec = config.codec ?? new MsgpackCodec();
    this.#maxPayloadBytes = config.maxPayloadBytes;
    this.#maxInFlight = config.maxInFlight;
    this.#logger = config.logger ?? config.node.logger;
    this.#clock = config.clock ?? systemClock;
    this.#forwardTimeoutMs = config.affinity?.forwardTimeoutMs ?? DEFAULT_FORWARD_TIMEOUT_MS;
    for (const domain of config.node.domains) {
      for (const kind of ['command', 'view'] as const) {
        const subject =
          kind === 'command'
            ? domainCommandSubjects(this.#prefix, domain.name)
            : domainViewSubjects(this.#prefix, domain.name);
        this.#endpoints.push({
          name: `${kind === 'command' ? 'cmd' : 'view'}-${domain.name}`,
          kind,
          domain: domain.name,
          subject,
          queueGroup:
            kind === 'command'
              ? commandQueueGroup(this.#prefix, domain.name)
              : viewQueueGroup(this.#prefix, domain.name),
          base: subject.slice(0, -1),
          definition: domain,
          requests: 0,
          ok: 0,
          rejected: 0,
          failed: 0,
          overloaded: 0,
          lastError: '',
          processingTimeNs: 0,
          ...emptyCounters(),
        });
      }
    }
    const affinity = config.affinity;
    if (affinity !== undefined) {
      // One node id for every domain: the first domain's leases pick it when none is given.
      let nodeId = affinity.nodeId;
      for (const domain of config.node.domains) {
        const routing = new PartitionRouting({
          connection: this.#nc,
          prefix: this.#prefix,
          domain: domain.name,
          node: this.#node,
          partitions: affinity.partitions,
          leaseMs: affinity.leaseMs,
          nodeId,
          clock: config.clock,
          logger: (affinity.logger ?? this.#logger).child({ domain: domain.name }),
          onForwarded: (partition, msg) => this.#onForwarded(routing, partition, msg),
        });
        nodeId = routing.nodeId;
        this.#routing.set(domain.name, routing);
      }
    }
  }

  /** The subscribed subjects, commands then views for each domain. */
  get subjects(): string[] {
    return this.#endpoints.map((e) => e.subject);
  }

  /** Commands and views being executed now (forwards waiting for the owner included). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** This node's id in the lease buckets, or undefined when affinity is off. */
  get nodeId(): string | undefined {
    return this.#routing.values().next().value?.nodeId;
  }

  /** Counters per subscription (copies). */
  endpoints(): RouterEndpointStats[] {
    return this.#endpoints.map(({ base: _base, definition: _definition, ...stats }) => ({
      ...stats,
      fallbacks: { ...stats.fallbacks },
    }));
  }

  /**
   * Partition affinity per domain: the leases (owned partitions, live nodes, acquisitions,
   * losses) and where the domain's requests were served. Empty when affinity is off.
   */
  routingStats(): Record<string, RoutingStats> {
    const stats: Record<string, RoutingStats> = {};
    for (const [domain, routing] of this.#routing) {
      const counters = emptyCounters();
      for (const endpoint of this.#endpoints) {
        if (endpoint.domain === domain) addCounters(counters, endpoint);
      }
      stats[domain] = { ...routing.leaseStats(), ...counters };
    }
    return stats;
  }

  /**
   * With affinity, starts the domains' partition leases first; then subscribes every domain's
   * command and view subjects in their queue groups and waits until the server has them, so a
   * request sent after this resolves reaches the router.
   *
   * @throws ConfigError `LEASE_CONFIG_CONFLICT` when another node uses other partitions or lease
   *   time; InfrastructureError `LEASES_UNAVAILABLE` when JetStream does not answer.
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') {
      throw new ConfigError(
        `The command router is ${this.#state}; a router starts once. Create a new CommandRouter to serve again.`,
      );
    }
    this.#state = 'listening';
    if (this.#routing.size > 0) {
      this.#pipeline = new ReplyPipeline(this.#nc, this.#clock, this.#forwardTimeoutMs);
      const routings = [...this.#routing.values()];
      try {
        await Promise.all(routings.map((routing) => routing.start()));
      } catch (error) {
        await Promise.all(routings.map((routing) => routing.stop()));
        this.#pipeline.close('the router did not start');
        this.#state = 'stopped';
        throw error;
      }
      this.#node.reportRouting(() => this.routingStats());
    }
    for (const endpoint of this.#endpoints) {
      this.#subscriptions.push(
        this.#nc.subscribe(endpoint.subject, {
          queue: endpoint.queueGroup,
          callback: (error, msg) => {
            if (error !== null) {
              this.#logger.warn({ err: error, subject: endpoint.subject }, 'subscription error');
              return;
            }
            if (!this.#hasReply(msg)) return;
            endpoint.requests += 1;
            const incoming: Received = {
              endpoint,
              msg,
              data: msg.data,
              reply: msg.reply as string,
              subject: msg.subject,
              forwarded: undefined,
              started: performance.now(),
              compact: false,
            };
            if (endpoint.kind === 'command') this.#onCommand(incoming);
            else this.#onView(incoming);
          },
        }),
      );
    }
    await this.#nc.flush();
  }

  /**
   * Stops taking requests: with affinity, first stops the leases (the other nodes take the
   * partitions over at once, and this node forwards to them what it still receives); then
   * unsubscribes (requests the server already sent are still answered), then waits up to
   * `timeoutMs` for the commands in flight. Resolves with how many are still in flight; they are
   * answered when the node finishes or refuses them (see {@link CommandRouter.settled}).
   */
  stop(timeoutMs = 10_000): Promise<{ inFlight: number }> {
    this.#stopped ??= this.#stop(timeoutMs);
    return this.#stopped;
  }

  /** Resolves once no command or view is in flight. */
  settled(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async #stop(timeoutMs: number): Promise<{ inFlight: number }> {
    this.#state = 'stopping';
    const deadline = this.#clock.now() + timeoutMs;
    await Promise.all([...this.#routing.values()].map((routing) => routing.stop()));
    await Promise.all(
      this.#subscriptions.map((sub) =>
        sub.drain().catch((error: unknown) => {
          this.#logger.debug({ err: error, subject: sub.getSubject() }, 'unsubscribe failed');
        }),
      ),
    );
    let timer: TimerHandle | undefined;
    await Promise.race([
      this.settled(),
      new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, Math.max(0, deadline - this.#clock.now()));
      }),
    ]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    // Forwards still waiting for an owner are served here instead.
    this.#pipeline?.close('the router stopped');
    this.#state = 'stopped';
    return { inFlight: this.#inFlight };
  }

  /** A request another node forwarded to this one, as the owner of `partition`. */
  #onForwarded(routing: PartitionRouting, partition: number, msg: Msg): void {
    if (!this.#hasReply(msg)) return;
    const started = performance.now();
    const subject = msg.headers?.get(commandHeaders.forwardedSubject, Match.IgnoreCase) ?? '';
    const tokenText = msg.headers?.get(commandHeaders.partitionToken, Match.IgnoreCase) ?? '';
    const token = UP_TO_15_DIGITS.test(tokenText) ? Number(tokenText) : NaN;
    const endpoint = this.#endpoints.find(
      (e) => e.domain === routing.domain && subject.startsWith(e.base),
    );
    if (endpoint === undefined || !Number.isSafeInteger(token)) {
      const error = new RejectionError(
        'INVALID_HEADER',
        `A request on ${msg.subject} must carry ${commandHeaders.forwardedSubject} (a command or view subject of domain ${routing.domain}) and ${commandHeaders.partitionToken} (a decimal lease token); only nodes forward requests here. Send commands to ${this.#prefix}.cmd.${routing.domain}.<Aggregate>.<id>.<command>.`,
        { details: { subject: msg.subject } },
      );
      this.#respond(
        msg.reply as string,
        jsonCodec.encode({ error: error.toJSON() }),
        replyHeaders(jsonCodec, 'error', error.code),
      );
      return;
    }
    const incoming: Received = {
      endpoint,
      msg,
      data: msg.data,
      reply: msg.reply as string,
      subject,
      forwarded: { partition, token },
      started,
      compact: false,
    };
    if (endpoint.kind === 'command') this.#onCommand(incoming);
    else this.#onView(incoming);
  }

  #onCommand(incoming: Received): void {
    const lines = headerLines(incoming.msg);
    const format = bodyFormatOf(
      headerValue(lines, commandHeaders.contentType),
      incoming.data,
      this.#codec,
    );
    const codec = format.ok ? format.codec : jsonCodec;
    let request: CommandRequest;
    try {
      request = this.#parseCommand(incoming, format, lines);
    } catch (error) {
      this.#replyError(incoming, codec, error);
      return;
    }
    const { timeoutMs } = request;
    this.#dispatch(
      incoming,
      codec,
      request.aggregate,
      request.id,
      () => {
        try {
          // What is left of the sender's wait when the command is run (here, or after a forward
          // that failed).
          if (timeoutMs !== undefined)
            request.timeoutMs = remainingTime(request, timeoutMs, incoming.started);
          return this.#node.execute(request);
        } catch (error) {
          return Promise.reject(error);
        }
      },
      request,
    );
  }

  #onView(incoming: Received): void {
    const { endpoint } = incoming;
    const format = bodyFormat(incoming.msg, this.#codec);
    const codec = format.ok ? format.codec : jsonCodec;
    const tokens = incoming.subject.slice(endpoint.base.length).split('.');
    const [aggregate = '', id = ''] = tokens;
    let definition: AnyAggregateDefinition;
    try {
      if (tokens.length !== 2) {
        throw this.#badSubject(incoming.subject, `${endpoint.base}<Aggregate>.<id>`);
      }
      definition = this.#aggregateOf(endpoint.definition, aggregate);
      this.#checkId(id);
    } catch (error) {
      this.#replyError(incoming, codec, error);
      return;
    }
    this.#dispatch(incoming, codec, aggregate, id, () =>
      this.#node.view(definition, id, endpoint.domain),
    );
  }

  /**
   * Serves a valid request here, or forwards it to its partition's owner. A forwarded request is
   * served only under the lease it was forwarded on, and never forwarded again.
   */
  #dispatch(
    incoming: Received,
    codec: Codec,
    aggregate: string,
    id: string,
    run: () => Promise<unknown>,
    command?: CommandRequest,
  ): void {
    const { endpoint, forwarded } = incoming;
    const routing = this.#routing.get(endpoint.domain);
    if (forwarded !== undefined) {
      const partition = routing?.partitionOf(aggregate, id);
      if (
        routing === undefined ||
        partition !== forwarded.partition ||
        !routing.isCurrent(forwarded.partition, forwarded.token)
      ) {
        endpoint.refusedForOthers += 1;
        this.#replyError(incoming, codec, this.#notOwner(routing, forwarded, partition));
        return;
      }
      if (!this.#admit(incoming, codec)) return;
      endpoint.servedForOthers += 1;
      this.#run(incoming, codec, run);
      return;
    }
    if (!this.#admit(incoming, codec)) return;
    const route = routing?.route(aggregate, id);
    if (route?.forward === true && this.#pipeline !== undefined && routing !== undefined) {
      this.#forward(incoming, codec, routing, route, run, command);
      return;
    }
    endpoint.servedLocally += 1;
    this.#run(incoming, codec, run);
  }

  /** Executes a request here and answers it; releases its in-flight slot. */
  #run(incoming: Incoming, codec: Codec, run: () => Promise<unknown>): void {
    // Parsed (and forwarded, if it was): while it waits for its actor, it keeps only what the
    // reply needs, not nats.js' message and the read buffer its views reach.
    incoming.msg = undefined;
    incoming.data = NO_DATA;
    void run().then(
      (result) => {
        try {
          this.#replyOk(incoming, codec, result);
        } finally {
          this.#release();
        }
      },
      (error: unknown) => {
        try {
          this.#replyError(incoming, codec, error);
        } finally {
          this.#release();
        }
      },
    );
  }

  /** Forwards a request once to the partition's owner and relays its reply, or serves it here. */
  #forward(
    incoming: Received,
    codec: Codec,
    routing: PartitionRouting,
    route: Extract<Route, { forward: true }>,
    run: () => Promise<unknown>,
    command: CommandRequest | undefined,
  ): void {
    const { msg, endpoint } = incoming;
    const h = headers();
    if (msg.headers !== undefined) {
      for (const key of msg.headers.keys()) {
        for (const value of msg.headers.values(key)) h.append(key, value);
      }
    }
    h.set(commandHeaders.forwardedSubject, incoming.subject);
    h.set(commandHeaders.partitionToken, String(route.token));
    h.set(commandHeaders.forwardedBy, routing.nodeId);
    if (command !== undefined) {
      // The owner must not start it once this node stops waiting and serves it itself.
      const wait =
        command.timeoutMs === undefined
          ? this.#forwardTimeoutMs
          : Math.min(this.#forwardTimeoutMs, remainingMs(command.timeoutMs, incoming.started));
      h.set(commandHeaders.timeout, String(Math.max(1, wait)));
    }
    const fallback = (reason: ForwardFallbackReason, error?: unknown) => {
      endpoint.fallbacks[reason] += 1;
      endpoint.servedLocally += 1;
      this.#logger.debug(
        {
          subject: incoming.subject,
          partition: route.partition,
          owner: route.owner,
          reason,
          ...(error === undefined ? {} : { err: describeError(error) }),
        },
        'forward failed; serving the request here',
      );
      this.#run(incoming, codec, run);
    };
    const pipeline = this.#pipeline;
    if (pipeline === undefined) {
      fallback('failed');
      return;
    }
    pipeline
      .request(forwardSubject(this.#prefix, routing.domain, route.partition), msg.data, h)
      .then(
        (reply) => {
          const verdict = forwardVerdict(reply);
          if (verdict !== 'relay') {
            fallback(verdict);
            return;
          }
          endpoint.forwarded += 1;
          this.#relay(incoming, reply);
          this.#release();
        },
        (error: unknown) =>
          fallback(error instanceof ReplyTimeoutError ? 'timeout' : 'failed', error),
      );
  }

  /** Passes the owner's reply to the client unchanged, counting it by its status headers. */
  #relay(incoming: Incoming, reply: Msg): void {
    const { endpoint } = incoming;
    const status = reply.headers?.get(commandHeaders.status, Match.IgnoreCase);
    if (status === 'ok') {
      endpoint.ok += 1;
    } else {
      const code = reply.headers?.get(commandHeaders.errorCode, Match.IgnoreCase) ?? '';
      const kind = Object.hasOwn(errorCodes, code)
        ? errorCodes[code as keyof typeof errorCodes]
        : 'rejection';
      if (kind === 'rejection') endpoint.rejected += 1;
      else endpoint.failed += 1;
      if (code === 'OVERLOADED') endpoint.overloaded += 1;
      endpoint.lastError = `${code}: (answered by the partition's owner)`;
    }
    this.#respond(incoming.reply, reply.data, reply.headers);
    this.#account(incoming, status === 'ok' ? 'ok' : 'error', undefined);
  }

  #notOwner(
    routing: PartitionRouting | undefined,
    forwarded: { partition: number; token: number },
    partition: number | undefined,
  ): InfrastructureError {
    const why =
      routing === undefined
        ? 'this node routes no partitions'
        : partition !== forwarded.partition
          ? `the aggregate belongs to partition ${String(partition)}, not ${forwarded.partition}`
          : `it does not hold partition ${forwarded.partition} under lease token ${forwarded.token} now (its token: ${String(routing.leases.tokenOf(forwarded.partition) ?? 'none')})`;
    return new InfrastructureError(
      'NOT_PARTITION_OWNER',
      `Node ${routing?.nodeId ?? '(no affinity)'} refused a forwarded request: ${why}. The forwarding node serves it itself; clients send commands to ${this.#prefix}.cmd.<domain>.<Aggregate>.<id>.<command>, never here.`,
      { details: { partition: forwarded.partition, token: forwarded.token } },
    );
  }

  #hasReply(msg: Msg): boolean {
    if (msg.reply !== undefined && msg.reply !== '') return true;
    this.#logger.debug({ subject: msg.subject }, 'request without a reply subject ignored');
    return false;
  }

  /** Counts a request in flight, or refuses it with `OVERLOADED`. */
  #admit(incoming: Incoming, codec: Codec): boolean {
    if (this.#inFlight < this.#maxInFlight) {
      this.#inFlight += 1;
      return true;
    }
    this.#refuseOverloaded(incoming, codec);
    return false;
  }

  /**
   * Answers `OVERLOADED` with a reply encoded once per codec. Refusing must cost far less than
   * serving: a node that builds an error (its stack trace), its message and its headers for every
   * refused request spends more on refusing than it saves, and a short stall then feeds itself
   * (measured: a fifth of a saturated node's CPU in `JetactorError` alone).
   */
  #refuseOverloaded(incoming: Incoming, codec: Codec): void {
    let reply = this.#overloadedReplies.get(codec);
    if (reply === undefined) {
      const max = this.#maxInFlight;
      const error = new InfrastructureError(
        'OVERLOADED',
        `The node has ${max} requests in flight, its limit (maxInFlight ${max}); send the command again after a short backoff with the same command id, or start more nodes.`,
        { details: { inFlight: max, maxInFlight: max } },
      );
      reply = {
        data: Uint8Array.from(codec.encode({ error: error.toJSON() })),
        headers: replyHeaders(codec, 'error', error.code),
        lastError: `${error.code}: ${error.message}`,
      };
      this.#overloadedReplies.set(codec, reply);
    }
    if (incoming.forwarded === undefined) {
      incoming.endpoint.failed += 1;
      incoming.endpoint.overloaded += 1;
      incoming.endpoint.lastError = reply.lastError;
    }
    this.#respond(incoming.reply, reply.data, reply.headers);
    this.#account(incoming, 'error', 'OVERLOADED');
  }

  /**
   * The command a request asks for, from its subject, headers and body. Its input is decoded
   * here and validated by the node, which runs the command (or by the partition's owner).
   */
  #parseCommand(incoming: Received, format: BodyFormat, lines: HeaderLines): CommandRequest {
    const { endpoint, data, subject } = incoming;
    if (data.length > this.#maxPayloadBytes) {
      throw new RejectionError(
        'PAYLOAD_TOO_LARGE',
        `The request body is ${data.length} bytes, more than this node's limit of ${this.#maxPayloadBytes}; send a smaller command input, or start the node with a higher maxPayloadBytes.`,
        { details: { bytes: data.length, limit: this.#maxPayloadBytes } },
      );
    }
    // <base><Aggregate>.<id>.<command>
    const base = endpoint.base.length;
    const first = subject.indexOf('.', base);
    const second = first === -1 ? -1 : subject.indexOf('.', first + 1);
    if (second === -1 || subject.indexOf('.', second + 1) !== -1) {
      throw this.#badSubject(subject, `${endpoint.base}<Aggregate>.<id>.<command>`);
    }
    const aggregate = subject.slice(base, first);
    const id = subject.slice(first + 1, second);
    const command = subject.slice(second + 1);
    const definition = this.#aggregateOf(endpoint.definition, aggregate);
    if (!Object.hasOwn(definition.commands, command)) {
      const known = Object.keys(definition.commands);
      throw new RejectionError(
        'UNKNOWN_COMMAND',
        `Aggregate "${definition.name}" has no command ${JSON.stringify(command)}; its commands: ${known.join(', ')}. Use e.g. ${endpoint.base}${aggregate}.${id}.${known[0] ?? '<command>'}.`,
        { details: { command, known } },
      );
    }
    this.#checkId(id);
    const request: CommandRequest = {
      domain: endpoint.domain,
      aggregate,
      id,
      command,
      input: undefined,
    };
    if (readOptionHeaders(lines, incoming.forwarded !== undefined, request)) {
      incoming.compact = true;
    }
    if (!format.ok) {
      throw new RejectionError(
        'INVALID_PAYLOAD',
        `Content-Type ${JSON.stringify(format.contentType)} is not supported; send ${jsonCodec.contentType} or ${this.#codec.contentType} (or no Content-Type, with a JSON object or msgpack body).`,
        { details: { contentType: format.contentType } },
      );
    }
    if (format.empty) {
      request.input = {};
    } else {
      try {
        request.input = format.codec.decode(data);
      } catch (error) {
        throw new RejectionError(
          'INVALID_PAYLOAD',
          `The request body is not valid ${format.codec === jsonCodec ? 'JSON' : format.codec.contentType} (${describeError(error)}); send the command input as a JSON object such as '{"amount":10}', or encode it with ${this.#codec.contentType}.`,
          { details: { contentType: format.codec.contentType, bytes: data.length } },
        );
      }
    }
    return request;
  }

  #aggregateOf(domain: DomainDefinition, aggregate: string): AnyAggregateDefinition {
    const definition = Object.hasOwn(domain.aggregates, aggregate)
      ? domain.aggregates[aggregate]
      : undefined;
    if (definition === undefined) {
      throw new RejectionError(
        'UNKNOWN_AGGREGATE',
        `Domain "${domain.name}" has no aggregate ${JSON.stringify(aggregate)}; its aggregates: ${Object.keys(domain.aggregates).join(', ')}.`,
        { details: { aggregate } },
      );
    }
    return definition;
  }

  #checkId(id: string): void {
    const why = whyNotSubjectToken(id);
    if (why !== undefined) {
      throw new RejectionError(
        'INVALID_ID',
        `Aggregate id ${JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}…` : id)} is not valid: ${why}. Use e.g. letters, digits, "-" and "_".`,
        { details: { id } },
      );
    }
  }

  #badSubject(subject: string, shape: string): RejectionError {
    return new RejectionError(
      'INVALID_SUBJECT',
      `Subject ${JSON.stringify(subject)} does not have the shape ${shape}; aggregate ids must not contain ".".`,
      { details: { subject } },
    );
  }

  #replyOk(incoming: Incoming, codec: Codec, body: unknown): void {
    if (incoming.forwarded === undefined) incoming.endpoint.ok += 1;
    this.#send(incoming, codec, 'ok', body, undefined, incoming.compact);
  }

  #replyError(incoming: Incoming, codec: Codec, caught: unknown): void {
    const { endpoint, forwarded } = incoming;
    const error =
      caught instanceof JetactorError
        ? caught
        : new InfrastructureError(
            'INTERNAL_ERROR',
            `The node failed on ${incoming.subject}: ${describeError(caught)}. Send the command again with the same command id; report this if it persists.`,
            { cause: caught },
          );
    if (forwarded === undefined) {
      if (error.kind === 'rejection') endpoint.rejected += 1;
      else endpoint.failed += 1;
      if (error.code === 'OVERLOADED') endpoint.overloaded += 1;
      endpoint.lastError = `${error.code}: ${error.message}`;
    }
    if (!(caught instanceof JetactorError)) {
      this.#logger.error({ err: caught, subject: incoming.subject }, 'request failed unexpectedly');
    }
    this.#send(incoming, codec, 'error', { error: error.toJSON() }, error.code);
  }

  #send(
    incoming: Incoming,
    codec: Codec,
    status: ReplyStatus,
    body: unknown,
    code: string | undefined,
    /** `body` is a `CommandResult` to send in its compact form. */
    compact = false,
  ): void {
    let data: Uint8Array;
    let headers: MsgHdrs;
    try {
      // A compact result in MessagePack is written straight from the result, without its object.
      data = compact
        ? encodeShaped(codec, writeCompactResult, toCompactResult, body as CommandResult)
        : codec.encode(body);
      headers = replyHeaders(codec, status, code);
      const limit = this.#nc.info?.max_payload ?? Infinity;
      if (data.length > limit) {
        throw new Error(
          `the reply is ${data.length} bytes, more than the server's max_payload of ${limit}`,
        );
      }
    } catch (error) {
      const failure = new InfrastructureError(
        'INTERNAL_ERROR',
        `The reply to ${incoming.subject} cannot be sent: ${describeError(error)}. Command responses must be plain values that fit in a NATS message.`,
      );
      if (incoming.forwarded === undefined) {
        incoming.endpoint.lastError = `${failure.code}: ${failure.message}`;
      }
      data = jsonCodec.encode({ error: failure.toJSON() });
      headers = replyHeaders(jsonCodec, 'error', failure.code);
    }
    this.#respond(incoming.reply, data, headers);
    this.#account(incoming, status, code);
  }

  #respond(reply: string, data: Uint8Array, headers: MsgHdrs | undefined): void {
    try {
      this.#publish(reply, data, undefined, headers);
    } catch (error) {
      this.#logger.warn({ err: error, subject: reply }, 'reply not sent');
    }
  }

  /** Adds the time a request took to its endpoint (requests from clients only) and logs it. */
  #account(incoming: Incoming, status: ReplyStatus, code: string | undefined): void {
    const elapsedMs = performance.now() - incoming.started;
    if (incoming.forwarded === undefined) {
      incoming.endpoint.processingTimeNs += Math.round(elapsedMs * 1e6);
    }
    // The fields are built only when debug logging is on (not for every reply).
    if (this.#logger.isLevelEnabled?.('debug') === false) return;
    this.#logger.debug(
      {
        subject: incoming.subject,
        status,
        code,
        ms: Math.round(elapsedMs * 100) / 100,
        ...(incoming.forwarded === undefined ? {} : { forwarded: true }),
      },
      'request answered',
    );
  }

  /** A request counted by {@link CommandRouter.#admit} was answered. */
  #release(): void {
    this.#inFlight -= 1;
    if (this.#inFlight > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }
}

/** What a forwarder does with the owner's answer: relay it, or serve the request itself. */
function forwardVerdict(reply: Msg): 'relay' | ForwardFallbackReason {
  const h = reply.headers;
  const status = h?.get(commandHeaders.status, Match.IgnoreCase) ?? '';
  if (status === '') return h?.hasError === true && h.code === 503 ? 'noResponders' : 'failed';
  if (status === 'ok') return 'relay';
  if (status !== 'error') return 'failed';
  const code = h?.get(commandHeaders.errorCode, Match.IgnoreCase);
  return code === 'NOT_PARTITION_OWNER' ? 'refused' : 'relay';
}

function emptyCounters(): RoutingCounters {
  return {
    servedLocally: 0,
    forwarded: 0,
    fallbacks: { refused: 0, noResponders: 0, timeout: 0, failed: 0 },
    servedForOthers: 0,
    refusedForOthers: 0,
  };
}

function addCounters(sum: RoutingCounters, add: RoutingCounters): void {
  sum.servedLocally += add.servedLocally;
  sum.forwarded += add.forwarded;
  for (const reason of Object.keys(sum.fallbacks) as ForwardFallbackReason[]) {
    sum.fallbacks[reason] += add.fallbacks[reason];
  }
  sum.servedForOthers += add.servedForOthers;
  sum.refusedForOthers += add.refusedForOthers;
}

/**
 * What is left of the sender's wait of `timeoutMs` since the node received the request
 * (`started`, by `performance.now()`); throws `DEADLINE_EXCEEDED` when nothing is left.
 */
function remainingTime(request: CommandRequest, timeoutMs: number, started: number): number {
  const remaining = remainingMs(timeoutMs, started);
  if (remaining <= 0) {
    throw new InfrastructureError(
      'DEADLINE_EXCEEDED',
      `Command ${request.aggregate}.${request.id}.${request.command} had not started when its sender stopped waiting (${timeoutMs} ms); it was not run. Send it again with the same command id.`,
      { details: { commandId: request.commandId, timeoutMs } },
    );
  }
  return remaining;
}

/** Milliseconds left of a wait of `timeoutMs` that began at `started` (`performance.now()`). */
function remainingMs(timeoutMs: number, started: number): number {
  return Math.floor(timeoutMs - (performance.now() - started));
}

const JETACTOR_PREFIX = 'jetactor-';

/** Decimal integers as headers carry them (made once: a literal is a new object each time). */
const UP_TO_15_DIGITS = /^\d{1,15}$/;
const UP_TO_8_DIGITS = /^\d{1,8}$/;

/** Reads the optional `Jetactor-*` request headers; unknown, repeated or malformed ones fail. */
function readOptionHeaders(
  lines: HeaderLines,
  forwarded: boolean,
  options: Partial<CommandRequest>,
): boolean {
  let seen: string[] | undefined;
  let compact = false;
  for (const [key, raw] of lines) {
    if (key.length < JETACTOR_PREFIX.length) continue;
    const lower = lowerCaseKey(key);
    if (!lower.startsWith(JETACTOR_PREFIX)) continue;
    if (forwarded && forwardHeaders.has(lower)) continue;
    const field = optionHeaders.get(lower);
    if (field === undefined && lower !== REPLY_HEADER) {
      throw invalidHeader(
        key,
        `is not a request header of this protocol; the known ones are ${[...optionHeaders.keys(), REPLY_HEADER].map(canonical).join(', ')}`,
      );
    }
    if (seen?.includes(lower)) throw invalidHeader(key, 'is given more than once; send it once');
    seen = pushed(seen ?? [], lower);
    const value = raw.trim();
    if (field === undefined) {
      if (value.toLowerCase() !== COMPACT_REPLY) {
        throw invalidHeader(
          key,
          `is ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}; its one value is "${COMPACT_REPLY}" (the result in its compact form); leave it out for the full result`,
        );
      }
      compact = true;
      continue;
    }
    if (field === 'expectedVersion') {
      const version = UP_TO_15_DIGITS.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(version)) {
        throw invalidHeader(
          key,
          `is ${JSON.stringify(value)}; it must be the aggregate's version as a decimal integer (0 for a new aggregate)`,
        );
      }
      options.expectedVersion = version;
      continue;
    }
    if (field === 'timeoutMs') {
      const ms = UP_TO_8_DIGITS.test(value) ? Number(value) : NaN;
      if (!(ms >= 1 && ms <= 86_400_000)) {
        throw invalidHeader(
          key,
          `is ${JSON.stringify(value)}; it must be how long the sender waits, in milliseconds, a decimal integer from 1 to 86400000`,
        );
      }
      options.timeoutMs = ms;
      continue;
    }
    if (value.length === 0 || value.length > MAX_HEADER_VALUE) {
      throw invalidHeader(
        key,
        `is ${value.length === 0 ? 'empty' : `${value.length} characters long`}; it must have 1 to ${MAX_HEADER_VALUE} characters`,
      );
    }
    options[field] = value;
  }
  return compact;
}

function invalidHeader(header: string, why: string): RejectionError {
  return new RejectionError('INVALID_HEADER', `Header ${canonical(header)} ${why}.`, {
    details: { header },
  });
}

function canonical(lower: string): string {
  return lower
    .split('-')
    .map((part) => (part === '' ? part : `${part[0]!.toUpperCase()}${part.slice(1)}`))
    .join('-');
}
