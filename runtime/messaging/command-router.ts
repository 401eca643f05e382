import { performance } from 'node:perf_hooks';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { z } from 'zod';
import type { CommandRequest } from '../aggregate/command.js';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import type { AnyAggregateDefinition } from '../domain/define-aggregate.js';
import type { DomainDefinition } from '../domain/define-domain.js';
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
import {
  DEFAULT_PREFIX,
  commandQueueGroup,
  domainCommandSubjects,
  domainViewSubjects,
  viewQueueGroup,
} from '../nats/subjects.js';
import {
  bodyFormat,
  commandHeaders,
  jsonCodec,
  replyHeaders,
  type ReplyStatus,
} from './protocol.js';

/** Default of {@link CommandRouterOptions.maxPayloadBytes}: 256 KiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024;

/** Default of {@link CommandRouterOptions.maxInFlight}. */
export const DEFAULT_MAX_IN_FLIGHT = 1024;

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
});

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
  /** Clock of the stop timeout. Default the system clock. */
  clock?: Clock;
}

/** Counters of one subscription of the router, in the shape the NATS service protocol reports. */
export interface RouterEndpointStats {
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

type RouterState = 'new' | 'listening' | 'stopping' | 'stopped';

const MAX_HEADER_VALUE = 256;

/** Request headers besides Content-Type, by lower-case name. */
const optionHeaders = new Map<string, keyof Omit<CommandRequest, 'aggregate' | 'id' | 'command'>>([
  [commandHeaders.commandId.toLowerCase(), 'commandId'],
  [commandHeaders.expectedVersion.toLowerCase(), 'expectedVersion'],
  [commandHeaders.correlationId.toLowerCase(), 'correlationId'],
  [commandHeaders.causationId.toLowerCase(), 'causationId'],
  [commandHeaders.actor.toLowerCase(), 'actor'],
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
 */
export class CommandRouter {
  readonly #node: DomainNode;
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #codec: Codec;
  readonly #maxPayloadBytes: number;
  readonly #maxInFlight: number;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #endpoints: Endpoint[] = [];
  readonly #subscriptions: Subscription[] = [];
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
    this.#prefix = config.prefix;
    this.#codec = config.codec ?? new MsgpackCodec();
    this.#maxPayloadBytes = config.maxPayloadBytes;
    this.#maxInFlight = config.maxInFlight;
    this.#logger = config.logger ?? config.node.logger;
    this.#clock = config.clock ?? systemClock;
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
        });
      }
    }
  }

  /** The subscribed subjects, commands then views for each domain. */
  get subjects(): string[] {
    return this.#endpoints.map((e) => e.subject);
  }

  /** Commands and views being executed now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counters per subscription (copies). */
  endpoints(): RouterEndpointStats[] {
    return this.#endpoints.map(({ base: _base, definition: _definition, ...stats }) => ({
      ...stats,
    }));
  }

  /**
   * Subscribes every domain's command and view subjects in their queue groups and waits until
   * the server has them, so a request sent after this resolves reaches the router.
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') {
      throw new ConfigError(
        `The command router is ${this.#state}; a router starts once. Create a new CommandRouter to serve again.`,
      );
    }
    this.#state = 'listening';
    for (const endpoint of this.#endpoints) {
      this.#subscriptions.push(
        this.#nc.subscribe(endpoint.subject, {
          queue: endpoint.queueGroup,
          callback: (error, msg) => {
            if (error !== null) {
              this.#logger.warn({ err: error, subject: endpoint.subject }, 'subscription error');
              return;
            }
            if (endpoint.kind === 'command') this.#onCommand(endpoint, msg);
            else this.#onView(endpoint, msg);
          },
        }),
      );
    }
    await this.#nc.flush();
  }

  /**
   * Stops taking requests: unsubscribes (requests the server already sent are still answered),
   * then waits up to `timeoutMs` for the commands in flight. Resolves with how many are still in
   * flight; they are answered when the node finishes or refuses them (see
   * {@link CommandRouter.settled}).
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
        timer = this.#clock.setTimeout(resolve, timeoutMs);
      }),
    ]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    this.#state = 'stopped';
    return { inFlight: this.#inFlight };
  }

  #onCommand(endpoint: Endpoint, msg: Msg): void {
    if (!this.#hasReply(msg)) return;
    const started = performance.now();
    endpoint.requests += 1;
    const format = bodyFormat(msg, this.#codec);
    const replyCodec = format.ok ? format.codec : jsonCodec;
    let request: CommandRequest;
    try {
      request = this.#parseCommand(endpoint, msg, format);
    } catch (error) {
      this.#replyError(endpoint, msg, replyCodec, error, started);
      return;
    }
    if (!this.#admit(endpoint, msg, replyCodec, started)) return;
    void this.#node
      .execute(request)
      .then(
        (result) => this.#replyOk(endpoint, msg, replyCodec, result, started),
        (error: unknown) => this.#replyError(endpoint, msg, replyCodec, error, started),
      )
      .finally(() => this.#release());
  }

  #onView(endpoint: Endpoint, msg: Msg): void {
    if (!this.#hasReply(msg)) return;
    const started = performance.now();
    endpoint.requests += 1;
    const format = bodyFormat(msg, this.#codec);
    const replyCodec = format.ok ? format.codec : jsonCodec;
    const tokens = msg.subject.slice(endpoint.base.length).split('.');
    const [aggregate = '', id = ''] = tokens;
    let definition: AnyAggregateDefinition;
    try {
      if (tokens.length !== 2) {
        throw this.#badSubject(msg.subject, `${endpoint.base}<Aggregate>.<id>`);
      }
      definition = this.#aggregateOf(endpoint.definition, aggregate);
      this.#checkId(id);
    } catch (error) {
      this.#replyError(endpoint, msg, replyCodec, error, started);
      return;
    }
    if (!this.#admit(endpoint, msg, replyCodec, started)) return;
    void this.#node
      .view(definition, id, endpoint.domain)
      .then(
        (view) => this.#replyOk(endpoint, msg, replyCodec, view, started),
        (error: unknown) => this.#replyError(endpoint, msg, replyCodec, error, started),
      )
      .finally(() => this.#release());
  }

  #hasReply(msg: Msg): boolean {
    if (msg.reply !== undefined && msg.reply !== '') return true;
    this.#logger.debug({ subject: msg.subject }, 'request without a reply subject ignored');
    return false;
  }

  /** Counts a request in flight, or refuses it with `OVERLOADED`. */
  #admit(endpoint: Endpoint, msg: Msg, codec: Codec, started: number): boolean {
    if (this.#inFlight >= this.#maxInFlight) {
      this.#replyError(
        endpoint,
        msg,
        codec,
        new InfrastructureError(
          'OVERLOADED',
          `The node has ${this.#inFlight} requests in flight, its limit (maxInFlight ${this.#maxInFlight}); send the command again after a short backoff with the same command id, or start more nodes.`,
          { details: { inFlight: this.#inFlight, maxInFlight: this.#maxInFlight } },
        ),
        started,
      );
      return false;
    }
    this.#inFlight += 1;
    return true;
  }

  #parseCommand(
    endpoint: Endpoint,
    msg: Msg,
    format: ReturnType<typeof bodyFormat>,
  ): CommandRequest {
    if (msg.data.length > this.#maxPayloadBytes) {
      throw new RejectionError(
        'PAYLOAD_TOO_LARGE',
        `The request body is ${msg.data.length} bytes, more than this node's limit of ${this.#maxPayloadBytes}; send a smaller command input, or start the node with a higher maxPayloadBytes.`,
        { details: { bytes: msg.data.length, limit: this.#maxPayloadBytes } },
      );
    }
    const tokens = msg.subject.slice(endpoint.base.length).split('.');
    const [aggregate = '', id = '', command = ''] = tokens;
    if (tokens.length !== 3) {
      throw this.#badSubject(msg.subject, `${endpoint.base}<Aggregate>.<id>.<command>`);
    }
    const definition = this.#aggregateOf(endpoint.definition, aggregate);
    const handler = Object.hasOwn(definition.commands, command)
      ? definition.commands[command]
      : undefined;
    if (handler === undefined) {
      const known = Object.keys(definition.commands);
      throw new RejectionError(
        'UNKNOWN_COMMAND',
        `Aggregate "${definition.name}" has no command ${JSON.stringify(command)}; its commands: ${known.join(', ')}. Use e.g. ${endpoint.base}${aggregate}.${id}.${known[0] ?? '<command>'}.`,
        { details: { command, known } },
      );
    }
    this.#checkId(id);
    const options = readOptionHeaders(msg.headers);
    if (!format.ok) {
      throw new RejectionError(
        'INVALID_PAYLOAD',
        `Content-Type ${JSON.stringify(format.contentType)} is not supported; send ${jsonCodec.contentType} or ${this.#codec.contentType} (or no Content-Type, with a JSON object or msgpack body).`,
        { details: { contentType: format.contentType } },
      );
    }
    let input: unknown;
    if (format.empty) {
      input = {};
    } else {
      try {
        input = format.codec.decode(msg.data);
      } catch (error) {
        throw new RejectionError(
          'INVALID_PAYLOAD',
          `The request body is not valid ${format.codec === jsonCodec ? 'JSON' : format.codec.contentType} (${describeError(error)}); send the command input as a JSON object such as '{"amount":10}', or encode it with ${this.#codec.contentType}.`,
          { details: { contentType: format.codec.contentType, bytes: msg.data.length } },
        );
      }
    }
    const parsed = handler.input.safeParse(input);
    if (!parsed.success) {
      throw new RejectionError(
        'VALIDATION_FAILED',
        `Input of ${definition.name}.${command} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    return { ...options, domain: endpoint.domain, aggregate, id, command, input };
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

  #replyOk(endpoint: Endpoint, msg: Msg, codec: Codec, body: unknown, started: number): void {
    endpoint.ok += 1;
    this.#send(endpoint, msg, codec, 'ok', body, undefined, started);
  }

  #replyError(endpoint: Endpoint, msg: Msg, codec: Codec, caught: unknown, started: number): void {
    const error =
      caught instanceof JetactorError
        ? caught
        : new InfrastructureError(
            'INTERNAL_ERROR',
            `The node failed on ${msg.subject}: ${describeError(caught)}. Send the command again with the same command id; report this if it persists.`,
            { cause: caught },
          );
    if (error.kind === 'rejection') endpoint.rejected += 1;
    else endpoint.failed += 1;
    if (error.code === 'OVERLOADED') endpoint.overloaded += 1;
    endpoint.lastError = `${error.code}: ${error.message}`;
    if (!(caught instanceof JetactorError)) {
      this.#logger.error({ err: caught, subject: msg.subject }, 'request failed unexpectedly');
    }
    this.#send(endpoint, msg, codec, 'error', { error: error.toJSON() }, error.code, started);
  }

  #send(
    endpoint: Endpoint,
    msg: Msg,
    codec: Codec,
    status: ReplyStatus,
    body: unknown,
    code: string | undefined,
    started: number,
  ): void {
    let data: Uint8Array;
    let headers: MsgHdrs;
    try {
      data = codec.encode(body);
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
        `The reply to ${msg.subject} cannot be sent: ${describeError(error)}. Command responses must be plain values that fit in a NATS message.`,
      );
      endpoint.lastError = `${failure.code}: ${failure.message}`;
      data = jsonCodec.encode({ error: failure.toJSON() });
      headers = replyHeaders(jsonCodec, 'error', failure.code);
    }
    try {
      msg.respond(data, { headers });
    } catch (error) {
      this.#logger.warn({ err: error, subject: msg.subject }, 'reply not sent');
    }
    const elapsedMs = performance.now() - started;
    endpoint.processingTimeNs += Math.round(elapsedMs * 1e6);
    this.#logger.debug(
      { subject: msg.subject, status, code, ms: Math.round(elapsedMs * 100) / 100 },
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

/** Reads the optional `Jetactor-*` request headers; unknown, repeated or malformed ones fail. */
function readOptionHeaders(h: MsgHdrs | undefined): Partial<CommandRequest> {
  const options: Partial<CommandRequest> = {};
  if (h === undefined) return options;
  const seen = new Set<string>();
  for (const key of h.keys()) {
    const lower = key.toLowerCase();
    if (!lower.startsWith('jetactor-')) continue;
    const field = optionHeaders.get(lower);
    if (field === undefined) {
      throw invalidHeader(
        key,
        `is not a request header of this protocol; the known ones are ${[...optionHeaders.keys()].map(canonical).join(', ')}`,
      );
    }
    const values = h.values(key);
    if (seen.has(lower) || values.length !== 1) {
      throw invalidHeader(key, 'is given more than once; send it once');
    }
    seen.add(lower);
    const value = (values[0] ?? '').trim();
    if (field === 'expectedVersion') {
      const version = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(version)) {
        throw invalidHeader(
          key,
          `is ${JSON.stringify(value)}; it must be the aggregate's version as a decimal integer (0 for a new aggregate)`,
        );
      }
      options.expectedVersion = version;
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
  return options;
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
