import { headers, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { AggregateView } from '../aggregate/aggregate-actor.js';
import {
  plainCommandOptions,
  type CommandOptions,
  type CommandRequest,
  type CommandResult,
} from '../aggregate/command.js';
import { systemClock, type Clock } from '../clock.js';
import { randomCommandId } from '../command-id.js';
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
  errorFromJSON,
  type ErrorJSON,
} from '../errors.js';
import { isIdentifier, whyNotSubjectToken } from '../names.js';
import type { AggregateRef } from '../node/domain-node.js';
import {
  PipelineClosedError,
  ReplyLostError,
  ReplyPipeline,
  ReplyTimeoutError,
} from '../nats/reply-pipeline.js';
import { EncodedHeaders } from '../nats/encoded-headers.js';
import { headerLines, headerValue } from '../nats/header-lines.js';
import { isPermissionViolation, permissionDenied } from '../nats/permission-denied.js';
import { DEFAULT_PREFIX, commandSubject, querySubject, viewSubject } from '../nats/subjects.js';
import type { AnyQueryDefinition, QueryInput, QueryOutput } from '../domain/define-query.js';
import type { StreamRef } from '../event-store/event-store.js';
import { COMPACT_REPLY, fromCompactResult } from './compact-result.js';
import { commandHeaders, jsonCodec, mediaType } from './protocol.js';
import { queryHeaders } from './query-server.js';
import { RetryBudget } from './retry-budget.js';

/** Size of the client's retry budget and what each answered request gives back (gRPC's defaults). */
const DEFAULT_RETRY_TOKENS = 100;
const DEFAULT_TOKEN_RATIO = 0.1;

const optionsSchema = z.strictObject({
  connection: z.custom<NatsConnection>(
    (value) => typeof (value as NatsConnection | undefined)?.publish === 'function',
    { message: 'expected a NatsConnection from @nats-io/transport-node connect()' },
  ),
  prefix: z
    .string()
    .refine(isIdentifier, {
      message: 'must be letters, digits, "_" or "-", starting with a letter (as the nodes use)',
    })
    .default(DEFAULT_PREFIX),
  timeoutMs: z.number().int().min(10).default(5_000),
  retries: z.number().int().min(0).max(100).default(3),
  backoffMs: z.number().int().min(0).default(100),
  maxBackoffMs: z.number().int().min(0).default(2_000),
  retryBudget: z
    .union([
      z.literal(false),
      z.strictObject({
        maxTokens: z.number().int().min(2).max(1_000_000).default(DEFAULT_RETRY_TOKENS),
        tokenRatio: z.number().positive().max(1).default(DEFAULT_TOKEN_RATIO),
      }),
    ])
    .prefault({}),
  codec: z
    .custom<Codec>((value) => typeof (value as Codec | undefined)?.encode === 'function', {
      message: 'expected a Codec { contentType, encode, decode }',
    })
    .optional(),
  domains: z
    .array(
      z.custom<DomainDefinition>(
        (d) => (d as DomainDefinition | undefined)?.kind === 'domain',
        'expected a domain made with defineDomain',
      ),
    )
    .default([]),
  newId: z
    .custom<() => string>((f) => typeof f === 'function', 'expected a function returning an id')
    .optional(),
  clock: z
    .custom<Clock>((c) => typeof (c as Clock | undefined)?.now === 'function', 'expected a Clock')
    .optional(),
});

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** An open connection; the client never closes it. */
  connection: NatsConnection;
  /** First token of the subjects, the same as the nodes'; default `jetactor`. */
  prefix?: string;
  /** How long one try waits for its reply, in milliseconds. Default 5000. */
  timeoutMs?: number;
  /**
   * Tries after the first when there is no reply in time, no node listening, or a retryable error
   * (`kind` conflict or infrastructure). Each try sends the same command id, so a command is
   * applied at most once. Default 3.
   */
  retries?: number;
  /** Wait before the first retry, in milliseconds; doubles each retry (with jitter). Default 100. */
  backoffMs?: number;
  /** Longest wait between tries, in milliseconds. Default 2000. */
  maxBackoffMs?: number;
  /**
   * Retry throttling shared by every command of this client (gRPC's `retryThrottling`): a bucket
   * of `maxTokens` (default 100); each failed try that could be retried takes one, each answered
   * request gives back `tokenRatio` (default 0.1), and a failed try is retried only while more
   * than half of the bucket is left. So when most requests fail (nodes refusing with `OVERLOADED`,
   * or none answering) retries stop adding load, and the errors reach the callers at once;
   * otherwise every command gets its `retries`. `false` retries every command regardless.
   */
  retryBudget?: { maxTokens?: number; tokenRatio?: number } | false;
  /** Codec of requests and replies; default msgpack. Replies in JSON are read too. */
  codec?: Codec;
  /**
   * Domains whose aggregates `client.aggregate(Definition, id)` may be given without naming the
   * domain. Default none: then pass the domain as third argument.
   */
  domains?: readonly DomainDefinition<any>[];
  /** Generates command ids; default a random UUID (`randomCommandId`). */
  newId?: () => string;
  /** Clock of the backoff between tries; default the system clock. */
  clock?: Clock;
}

/** Shortest and longest per-try `timeoutMs` of a command. */
const MIN_TIMEOUT_MS = 10;
const MAX_TIMEOUT_MS = 86_400_000;

const commandOptionsSchema = z.object({
  commandId: z.string().min(1).max(256).optional(),
  expectedVersion: z.number().int().nonnegative().optional(),
  correlationId: z.string().min(1).max(256).optional(),
  causationId: z.string().min(1).max(256).optional(),
  actor: z.string().min(1).max(256).optional(),
  timeoutMs: z.number().int().min(MIN_TIMEOUT_MS).max(MAX_TIMEOUT_MS).optional(),
});

const optionHeaderNames = {
  commandId: commandHeaders.commandId,
  expectedVersion: commandHeaders.expectedVersion,
  correlationId: commandHeaders.correlationId,
  causationId: commandHeaders.causationId,
  actor: commandHeaders.actor,
} as const satisfies Record<Exclude<keyof CommandOptions, 'timeoutMs'>, string>;

const optionFields = Object.keys(optionHeaderNames) as (keyof typeof optionHeaderNames)[];

const LINE_BREAK = /[\r\n]/;

/** A command's request, ready to send ({@link JetactorClient.execute}). */
interface PreparedCommand {
  subject: string;
  payload: Uint8Array;
  h: MsgHdrs;
  commandId: string;
  stream: StreamRef;
  /** The timeout the request asked for, if it did (else the client's applies). */
  timeoutMs: number | undefined;
}

/** A reply body as it is. */
const asIs = (body: unknown): unknown => body;

/** Options of {@link JetactorClient.query}. */
export interface ClientQueryOptions {
  /**
   * Read-your-writes: the node answers once the projections the query reads have applied the
   * commit at this position (`result.position` of a command of the same domain); when they do not
   * get there within `waitTimeoutMs`, the query fails with the retryable `PROJECTION_BEHIND`
   * (not retried by the client).
   */
  waitFor?: number;
  /** How long the node may wait for `waitFor`, in milliseconds; default the node's (5000). */
  waitTimeoutMs?: number;
}

/**
 * Sends commands to jetactor nodes over NATS and returns their replies, or throws the same typed
 * errors as a node in the same process would (`RejectionError`, `DomainError`, `ConflictError`,
 * `InfrastructureError`, …).
 *
 * Requests travel on `<prefix>.cmd.<domain>.<Aggregate>.<id>.<command>`; all of one client share
 * one reply subscription. The command id is chosen before the first try and sent on every retry,
 * so a command is applied at most once however often it is sent.
 */
export class JetactorClient {
  readonly #nc: NatsConnection;
  readonly #options: Readonly<z.output<typeof optionsSchema>>;
  readonly #codec: Codec;
  readonly #clock: Clock;
  readonly #newId: () => string;
  readonly #pipeline: ReplyPipeline;
  readonly #budget: RetryBudget | undefined;

  /** Checks the options; a `ConfigError` names each wrong one. */
  constructor(options: ClientOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid client options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    this.#options = Object.freeze(parsed.data);
    this.#nc = parsed.data.connection;
    this.#codec = parsed.data.codec ?? new MsgpackCodec();
    this.#clock = parsed.data.clock ?? systemClock;
    this.#newId = parsed.data.newId ?? randomCommandId;
    this.#pipeline = new ReplyPipeline(this.#nc, this.#clock, parsed.data.timeoutMs);
    const budget = parsed.data.retryBudget;
    this.#budget =
      budget === false ? undefined : new RetryBudget(budget.maxTokens, budget.tokenRatio);
  }

  /** The subject prefix. */
  get prefix(): string {
    return this.#options.prefix;
  }

  /**
   * Typed calls on one aggregate instance, e.g.
   * `client.aggregate(Account, 'acc-1').deposit({ amount: 10 })`. The domain is looked up in
   * {@link ClientOptions.domains} unless given.
   */
  aggregate<A extends AnyAggregateDefinition>(
    definition: A,
    id: string,
    domain?: string,
  ): AggregateRef<A> {
    const ref: Record<string, unknown> = {};
    for (const name of Object.keys(definition.commands)) {
      ref[name] = (input: unknown, options: CommandOptions = {}) => {
        let domainName: string;
        try {
          domainName = domain ?? this.#domainOf(definition.name, definition);
        } catch (error) {
          return Promise.reject(error);
        }
        return this.execute({
          ...options,
          domain: domainName,
          aggregate: definition.name,
          id,
          command: name,
          input,
        });
      };
    }
    return ref as AggregateRef<A>;
  }

  /**
   * Sends one command and resolves with its result. Rejects with the node's typed error, or with
   * `REQUEST_TIMEOUT`, `NO_RESPONDERS` or `REQUEST_FAILED` once every try failed.
   *
   * Not an async function: the suspended frames of this and of the request it waits for were the
   * largest part of what a command allocates in the client. A request that cannot be sent
   * (invalid options or input) rejects all the same.
   */
  execute(request: CommandRequest): Promise<CommandResult> {
    let command: PreparedCommand;
    try {
      command = this.#prepare(request);
    } catch (error) {
      return Promise.reject(error);
    }
    const { subject, payload, h, commandId, stream, timeoutMs } = command;
    return this.#call(
      subject,
      payload,
      h,
      commandId,
      timeoutMs === undefined
        ? undefined
        : () => this.#requestWithin(subject, payload, h, timeoutMs),
      (body) => toResult(body, subject, stream),
    );
  }

  /** A command's request as it is sent: throws the typed error of a request that cannot be. */
  #prepare(request: CommandRequest): PreparedCommand {
    const domain = request.domain ?? this.#domainOf(request.aggregate);
    this.#checkTokens(domain, request.aggregate, request.id, request.command);
    const options =
      plainCommandOptions(request, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS) ??
      commandOptionsSchema.safeParse(request);
    if (!options.success) {
      throw new RejectionError(
        'INVALID_COMMAND',
        `Command options are invalid: ${options.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}.`,
        { details: { issues: options.error.issues } },
      );
    }
    const commandId = options.data.commandId ?? this.#newId();
    // How long each try waits: the node does not start the command after that (a late copy
    // must not be applied once this client has sent it again).
    const timeoutMs = options.data.timeoutMs ?? this.#options.timeoutMs;
    const entries: [string, string][] = [
      [commandHeaders.contentType, this.#codec.contentType],
      [commandHeaders.timeout, String(timeoutMs)],
      [commandHeaders.reply, COMPACT_REPLY],
    ];
    for (const field of optionFields) {
      const value = field === 'commandId' ? commandId : options.data[field];
      if (value === undefined) continue;
      const text = String(value);
      if (LINE_BREAK.test(text)) {
        throw new RejectionError(
          'INVALID_COMMAND',
          `${field} ${JSON.stringify(value)} contains a line break, which a NATS header cannot carry; remove it.`,
        );
      }
      entries.push([optionHeaderNames[field], text]);
    }
    const h = new EncodedHeaders(entries);
    let payload: Uint8Array;
    try {
      payload = this.#codec.encode(request.input ?? {});
    } catch (error) {
      throw new RejectionError(
        'INVALID_COMMAND',
        `The input of ${request.aggregate}.${request.command} cannot be encoded with ${this.#codec.contentType}: ${describeError(error)}. Send plain values.`,
        { cause: error },
      );
    }
    const stream = { domain, aggregate: request.aggregate, id: request.id };
    return {
      subject: commandSubject(this.#options.prefix, stream, request.command),
      payload,
      h,
      commandId,
      stream,
      timeoutMs: options.data.timeoutMs,
    };
  }

  /** The current state of an aggregate instance, from a node hosting its domain. */
  async view(
    aggregate: AnyAggregateDefinition | string,
    id: string,
    domain?: string,
  ): Promise<AggregateView> {
    const name = typeof aggregate === 'string' ? aggregate : aggregate.name;
    const domainName =
      domain ?? this.#domainOf(name, typeof aggregate === 'string' ? undefined : aggregate);
    this.#checkTokens(domainName, name, id, undefined);
    const h = headers();
    h.set(commandHeaders.contentType, this.#codec.contentType);
    const subject = viewSubject(this.#options.prefix, { domain: domainName, aggregate: name, id });
    const body = await this.#call(subject, new Uint8Array(0), h, undefined, undefined, asIs);
    if (typeof body !== 'object' || body === null || !('version' in body)) {
      throw invalidReply(subject, `the reply ${JSON.stringify(body)} is not an aggregate view`);
    }
    return body as AggregateView;
  }

  /**
   * Runs a query on a node hosting the domain (`<prefix>.qry.<domain>.<name>`) and resolves with
   * its result: typed when given the domain definition, `unknown` with a domain name. Rejects with
   * the node's typed errors (`UNKNOWN_QUERY`, `VALIDATION_FAILED`, `PROJECTION_BEHIND`, …) or
   * `NO_RESPONDERS`, `REQUEST_TIMEOUT`.
   */
  query<D extends DomainDefinition<any, any>, N extends keyof D['queries'] & string>(
    domain: D,
    name: N,
    input: QueryInput<D['queries'][N]>,
    options?: ClientQueryOptions,
  ): Promise<QueryOutput<D['queries'][N]>>;
  query(
    domain: string,
    name: string,
    input?: unknown,
    options?: ClientQueryOptions,
  ): Promise<unknown>;
  async query(
    domain: DomainDefinition<any, AnyQueryDefinition> | string,
    name: string,
    input?: unknown,
    options: ClientQueryOptions = {},
  ): Promise<unknown> {
    const domainName = typeof domain === 'string' ? domain : domain.name;
    for (const [what, value] of Object.entries({ domain: domainName, query: name })) {
      if (typeof value !== 'string' || !isIdentifier(value)) {
        throw new RejectionError(
          what === 'domain' ? 'UNKNOWN_DOMAIN' : 'UNKNOWN_QUERY',
          `${what} ${JSON.stringify(value)} is not a name a domain can define: use letters, digits, "_" or "-", starting with a letter.`,
          { details: { [what]: value } },
        );
      }
    }
    const h = headers();
    h.set(commandHeaders.contentType, this.#codec.contentType);
    for (const [field, header] of [
      ['waitFor', queryHeaders.waitFor],
      ['waitTimeoutMs', queryHeaders.waitTimeout],
    ] as const) {
      const value = options[field];
      if (value === undefined) continue;
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new RejectionError(
          'VALIDATION_FAILED',
          `${field} ${JSON.stringify(value)} is not valid: give a whole number (a position from a command result, or milliseconds).`,
        );
      }
      h.set(header, String(value));
    }
    let payload: Uint8Array;
    try {
      payload = this.#codec.encode(input ?? {});
    } catch (error) {
      throw new RejectionError(
        'VALIDATION_FAILED',
        `The input of query ${domainName}.${name} cannot be encoded with ${this.#codec.contentType}: ${describeError(error)}. Send plain values.`,
        { cause: error },
      );
    }
    const subject = querySubject(this.#options.prefix, domainName, name);
    const timeout =
      options.waitFor === undefined
        ? this.#options.timeoutMs
        : Math.max(this.#options.timeoutMs, (options.waitTimeoutMs ?? 5_000) + 1_000);
    const body = await this.#call(
      subject,
      payload,
      h,
      undefined,
      () => this.#requestWithin(subject, payload, h, timeout),
      asIs,
    );
    if (typeof body !== 'object' || body === null || !('result' in body)) {
      throw invalidReply(subject, `the reply ${JSON.stringify(body)} is not a query result`);
    }
    return body.result;
  }

  /** Stops waiting for replies (pending calls fail with `REQUEST_FAILED`); the connection stays open. */
  close(): void {
    this.#pipeline.close('the client was closed');
  }

  /** One request with its own timeout (the pipeline's is the client's `timeoutMs`). */
  async #requestWithin(
    subject: string,
    payload: Uint8Array,
    h: MsgHdrs,
    timeout: number,
  ): Promise<Msg> {
    try {
      return await this.#nc.request(subject, payload, { timeout, headers: h });
    } catch (error) {
      const name = (error as { name?: string }).name;
      if ((error as { isNoResponders?: () => boolean }).isNoResponders?.() === true) {
        throw noResponders(subject);
      }
      if (name === 'TimeoutError' || /timeout/i.test(describeError(error))) {
        throw new ReplyTimeoutError(subject, timeout);
      }
      throw error;
    }
  }

  /**
   * Sends a request (with `send`, or on the reply pipeline) and answers `finish` of the decoded
   * `ok` body; a failed try goes on in {@link JetactorClient.#retry}. The first try chains on the
   * request's promise instead of suspending an async function.
   */
  #call<T>(
    subject: string,
    payload: Uint8Array,
    h: MsgHdrs,
    commandId: string | undefined,
    send: (() => Promise<Msg>) | undefined,
    finish: (body: unknown) => T,
  ): Promise<T> {
    const sent = send === undefined ? this.#pipeline.request(subject, payload, h) : send();
    return sent.then(
      (msg) => {
        let body: unknown;
        try {
          body = this.#read(msg, subject);
        } catch (caught) {
          return this.#retry(subject, payload, h, commandId, send, caught).then(finish);
        }
        this.#budget?.answered();
        return finish(body);
      },
      (caught: unknown) => this.#retry(subject, payload, h, commandId, send, caught).then(finish),
    );
  }

  /** After a failed first try: tries again with backoff while the error says it may succeed. */
  async #retry(
    subject: string,
    payload: Uint8Array,
    h: MsgHdrs,
    commandId: string | undefined,
    send: (() => Promise<Msg>) | undefined,
    first: unknown,
  ): Promise<unknown> {
    const { retries } = this.#options;
    let caught = first;
    for (let attempt = 1; ; attempt++) {
      const error = this.#translate(caught, subject, attempt, commandId);
      const retryable =
        error.retryable &&
        error.code !== 'INVALID_REPLY' &&
        error.code !== 'REQUEST_FAILED' &&
        error.code !== 'PROJECTION_BEHIND';
      if (!retryable) {
        this.#budget?.answered();
        throw error;
      }
      // Every failed try takes from the budget, the last one too.
      const allowed = this.#budget === undefined || this.#budget.failed();
      if (!allowed || attempt > retries) throw error;
      await this.#sleep(this.#delay(attempt, error));
      try {
        const msg = await (send === undefined
          ? this.#pipeline.request(subject, payload, h)
          : send());
        const body = this.#read(msg, subject);
        this.#budget?.answered();
        return body;
      } catch (next) {
        caught = next;
      }
    }
  }

  /** Decodes a reply: its body when ok; throws the error it carries otherwise. */
  #read(msg: Msg, subject: string): unknown {
    const lines = headerLines(msg);
    const status = headerValue(lines, commandHeaders.status);
    if (status === '' && msg.headers?.hasError) {
      if (msg.headers.code === 503) throw noResponders(subject);
      throw invalidReply(subject, `NATS status ${msg.headers.code} ${msg.headers.description}`);
    }
    const type = mediaType(headerValue(lines, commandHeaders.contentType));
    const codec =
      type === jsonCodec.contentType || type === ''
        ? jsonCodec
        : type === mediaType(this.#codec.contentType)
          ? this.#codec
          : undefined;
    if (codec === undefined) {
      throw invalidReply(subject, `it has Content-Type ${JSON.stringify(type)}`);
    }
    let body: unknown;
    try {
      body = codec.decode(msg.data);
    } catch (error) {
      throw invalidReply(subject, `its body is not ${codec.contentType}: ${describeError(error)}`);
    }
    if (status === 'ok') return body;
    const carried = (body as { error?: Partial<ErrorJSON> } | null)?.error;
    if (
      status === 'error' &&
      typeof carried?.code === 'string' &&
      typeof carried.message === 'string' &&
      typeof carried.kind === 'string'
    ) {
      throw errorFromJSON(carried as ErrorJSON);
    }
    throw invalidReply(subject, `Jetactor-Status is ${JSON.stringify(status)}`);
  }

  #translate(
    caught: unknown,
    subject: string,
    attempt: number,
    commandId: string | undefined,
  ): JetactorError {
    if (caught instanceof JetactorError) return caught;
    const tries = `${attempt} ${attempt === 1 ? 'try' : 'tries'}`;
    if (caught instanceof ReplyTimeoutError) {
      return new InfrastructureError(
        'REQUEST_TIMEOUT',
        `No reply on ${subject} ${caught instanceof ReplyLostError ? 'before the connection to NATS dropped' : `within ${caught.timeoutMs} ms`} (${tries}). ` +
          (commandId === undefined
            ? 'Is a node hosting the domain up and not overloaded?'
            : `The command may or may not have been applied: send it again with the same command id (${commandId}); it is applied at most once.`),
        { cause: caught, details: { subject, attempts: attempt, commandId } },
      );
    }
    if (isPermissionViolation(caught)) {
      return permissionDenied(caught, `the request on ${subject}`, this.#nc);
    }
    const closed = caught instanceof PipelineClosedError || this.#nc.isClosed();
    return new InfrastructureError(
      'REQUEST_FAILED',
      `The request on ${subject} could not be sent: ${describeError(caught)}. ${closed ? 'The client or its connection is closed; use an open connection.' : 'Check the connection and the permissions of its user.'}`,
      { cause: caught, details: { subject, commandId } },
    );
  }

  #delay(attempt: number, error: JetactorError): number {
    const { backoffMs, maxBackoffMs } = this.#options;
    const exponential = Math.min(maxBackoffMs, backoffMs * 2 ** (attempt - 1));
    const jittered = exponential / 2 + Math.random() * (exponential / 2);
    const asked = (error.details as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
    return typeof asked === 'number' ? Math.min(maxBackoffMs, Math.max(asked, jittered)) : jittered;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }

  #domainOf(aggregate: string, definition?: AnyAggregateDefinition): string {
    const matches = this.#options.domains.filter((d) =>
      definition === undefined
        ? Object.hasOwn(d.aggregates, aggregate)
        : d.aggregates[definition.name] === definition,
    );
    const [first] = matches;
    if (first === undefined || matches.length > 1) {
      throw new RejectionError(
        'INVALID_COMMAND',
        `${first === undefined ? 'No domain given to the client has' : `Domains ${matches.map((d) => d.name).join(' and ')} both have`} an aggregate ${JSON.stringify(aggregate)}; name the domain (client.aggregate(${aggregate}, id, 'domain') or execute({ domain, … })), or pass createClient({ domains: [yourDomain] }).`,
        { details: { aggregate } },
      );
    }
    return first.name;
  }

  #checkTokens(domain: string, aggregate: string, id: string, command: string | undefined): void {
    const why = typeof id === 'string' ? whyNotSubjectToken(id) : 'it is not a string';
    if (why !== undefined) {
      throw new RejectionError(
        'INVALID_ID',
        `Aggregate id ${JSON.stringify(id)} is not valid: ${why}. Ids become NATS subject tokens; use e.g. letters, digits, "-" and "_".`,
        { details: { id } },
      );
    }
    checkName('domain', domain);
    checkName('aggregate', aggregate);
    if (command !== undefined) checkName('command', command);
  }
}

/** Throws when `value` is not a name a domain can define (checked per request, without allocating). */
function checkName(what: 'domain' | 'aggregate' | 'command', value: unknown): void {
  if (typeof value === 'string' && isIdentifier(value)) return;
  throw new RejectionError(
    what === 'domain'
      ? 'UNKNOWN_DOMAIN'
      : what === 'aggregate'
        ? 'UNKNOWN_AGGREGATE'
        : 'UNKNOWN_COMMAND',
    `${what} ${JSON.stringify(value)} is not a name a domain can define: use letters, digits, "_" or "-", starting with a letter.`,
    { details: { [what]: value } },
  );
}

/** Creates a client; options are checked at once (a `ConfigError` names every wrong field). */
export function createClient(options: ClientOptions): JetactorClient {
  return new JetactorClient(options);
}

/** The result a reply body holds: compact (as this client asks for) or full (older nodes). */
function toResult(body: unknown, subject: string, stream: StreamRef): CommandResult {
  const compact = fromCompactResult(body, stream);
  if (compact !== undefined) return compact;
  const value = body as Partial<CommandResult> | null;
  if (
    typeof value?.commandId !== 'string' ||
    typeof value.version !== 'number' ||
    !Array.isArray(value.events)
  ) {
    throw invalidReply(subject, `the reply ${JSON.stringify(body)} is not a command result`);
  }
  return {
    commandId: value.commandId,
    version: value.version,
    events: value.events,
    response: value.response,
    duplicate: value.duplicate === true,
    position: typeof value.position === 'number' ? value.position : 0,
  };
}

function noResponders(subject: string): InfrastructureError {
  const domain = subject.split('.')[2] ?? '';
  return new InfrastructureError(
    'NO_RESPONDERS',
    `No node listens on ${subject}: no node is running for domain ${JSON.stringify(domain)} with this prefix (or the domain does not exist). Start one (jetactor node <domain module>) and check the domain name and the prefix.`,
    { details: { subject, domain } },
  );
}

function invalidReply(subject: string, why: string): InfrastructureError {
  return new InfrastructureError(
    'INVALID_REPLY',
    `The reply on ${subject} is not a jetactor reply: ${why}. Is something other than a jetactor node subscribed there, or does it use another codec?`,
    { details: { subject } },
  );
}
