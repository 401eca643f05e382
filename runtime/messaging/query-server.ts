import { performance } from 'node:perf_hooks';
import {
  Match,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import type { Codec } from '../codec/codec.js';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import {
  ConfigError,
  InfrastructureError,
  JetactorError,
  RejectionError,
  describeError,
} from '../errors.js';
import type { Logger } from '../logger.js';
import { isIdentifier } from '../names.js';
import type { DomainNode } from '../node/domain-node.js';
import { DEFAULT_PREFIX, domainQuerySubjects, queryQueueGroup } from '../nats/subjects.js';
import type { QueryCallOptions } from '../projections/run-query.js';
import { bodyFormat, jsonCodec, replyHeaders } from './protocol.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';

/**
 * Request headers of the query protocol, besides `Content-Type` (matched without regard to case):
 * `Jetactor-Wait-For` (a position, decimal) and `Jetactor-Wait-Timeout` (milliseconds, decimal).
 */
export const queryHeaders = Object.freeze({
  /** Answer once the projections read have applied the commit at this position. */
  waitFor: 'Jetactor-Wait-For',
  /** How long the node may wait for it, in milliseconds (at most 600000). */
  waitTimeout: 'Jetactor-Wait-Timeout',
});

/** The body of a successful query reply. */
export interface QueryReplyBody {
  /** What the query returned. */
  result: unknown;
}

/** Options of {@link QueryServer}. */
export interface QueryServerOptions {
  /** The node whose domains' queries are served. */
  node: DomainNode;
  /** An open connection; the server never closes it. */
  connection: NatsConnection;
  /** First token of the subjects; default `jetactor`. */
  prefix?: string;
  /** Codec of requests that are not JSON, and of their replies; default msgpack. */
  codec?: Codec;
  /** Largest request body; bigger ones get `PAYLOAD_TOO_LARGE`. Default 256 KiB. */
  maxPayloadBytes?: number;
  /** Logger; one line per answered query at `debug`. Default the node's. */
  logger?: Logger;
}

/** Counters of one domain's query subscription, as the NATS service protocol reports them. */
export interface QueryEndpointStats {
  /** `qry-<domain>`. */
  name: string;
  /** The domain. */
  domain: string;
  /** `<prefix>.qry.<domain>.*`. */
  subject: string;
  /** `<prefix>.qry.<domain>`. */
  queueGroup: string;
  /** Requests received. */
  requests: number;
  /** Answered with a result. */
  ok: number;
  /** Answered with a rejection (unknown query, invalid input). */
  rejected: number;
  /** Answered with a retryable error (`PROJECTION_BEHIND`, read model failures, …). */
  failed: number;
  /** `<code>: <message>` of the last error reply. */
  lastError: string;
  /** Time from receipt to reply, summed, in nanoseconds. */
  processingTimeNs: number;
}

const MAX_WAIT_MS = 600_000;

interface Endpoint extends QueryEndpointStats {
  /** The subject prefix with its trailing dot: `jetactor.qry.bank.`. */
  base: string;
  definition: DomainDefinition;
}

/**
 * Serves a node's queries over NATS: for each hosted domain with queries it subscribes
 * `<prefix>.qry.<domain>.*` in the queue group `<prefix>.qry.<domain>`, decodes the input (JSON or
 * msgpack, as commands), runs `node.query()` and replies `{ result }` or
 * `{ error: { code, message, kind, details } }` with `Jetactor-Status` (the command protocol's
 * reply format). `Jetactor-Wait-For` asks for read-your-writes.
 */
export class QueryServer {
  readonly #node: DomainNode;
  readonly #nc: NatsConnection;
  readonly #prefix: string;
  readonly #codec: Codec;
  readonly #maxPayloadBytes: number;
  readonly #logger: Logger;
  readonly #endpoints: Endpoint[] = [];
  readonly #subscriptions: Subscription[] = [];
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(options: QueryServerOptions) {
    const known = ['node', 'connection', 'prefix', 'codec', 'maxPayloadBytes', 'logger'];
    const unknown = unknownOptions(options, known);
    if (unknown.length > 0) {
      throw new ConfigError(`Query server: ${describeUnknownOptions(unknown, known)}.`, {
        details: { unknown },
      });
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (!isIdentifier(prefix)) {
      throw new ConfigError(
        `Query server prefix ${JSON.stringify(prefix)} is not valid: use letters, digits, "_" or "-", starting with a letter.`,
      );
    }
    this.#node = options.node;
    this.#nc = options.connection;
    this.#prefix = prefix;
    this.#codec = options.codec ?? new MsgpackCodec();
    this.#maxPayloadBytes = options.maxPayloadBytes ?? 256 * 1024;
    this.#logger = options.logger ?? options.node.logger;
    for (const domain of options.node.domains) {
      if (Object.keys(domain.queries).length === 0) continue;
      const subject = domainQuerySubjects(prefix, domain.name);
      this.#endpoints.push({
        name: `qry-${domain.name}`,
        domain: domain.name,
        subject,
        queueGroup: queryQueueGroup(prefix, domain.name),
        base: subject.slice(0, -1),
        definition: domain,
        requests: 0,
        ok: 0,
        rejected: 0,
        failed: 0,
        lastError: '',
        processingTimeNs: 0,
      });
    }
  }

  /** The subject prefix. */
  get prefix(): string {
    return this.#prefix;
  }

  /** The subscribed subjects. */
  get subjects(): string[] {
    return this.#endpoints.map((e) => e.subject);
  }

  /** Counters per domain (copies). */
  endpoints(): QueryEndpointStats[] {
    return this.#endpoints.map(({ base: _base, definition: _definition, ...stats }) => ({
      ...stats,
    }));
  }

  /** Subscribes and waits until the server has the subscriptions. */
  async start(): Promise<void> {
    for (const endpoint of this.#endpoints) {
      this.#subscriptions.push(
        this.#nc.subscribe(endpoint.subject, {
          queue: endpoint.queueGroup,
          callback: (error, msg) => {
            if (error === null) this.#onQuery(endpoint, msg);
          },
        }),
      );
    }
    await this.#nc.flush();
  }

  /** Unsubscribes (queries already received are answered), then waits up to `timeoutMs` for them. */
  async stop(timeoutMs = 10_000): Promise<void> {
    await Promise.all(this.#subscriptions.splice(0).map((s) => s.drain().catch(() => undefined)));
    if (this.#inFlight === 0) return;
    await Promise.race([
      new Promise<void>((resolve) => this.#idle.push(resolve)),
      new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }

  #onQuery(endpoint: Endpoint, msg: Msg): void {
    if (msg.reply === undefined || msg.reply === '') return;
    const started = performance.now();
    endpoint.requests += 1;
    const format = bodyFormat(msg, this.#codec);
    const codec = format.ok ? format.codec : jsonCodec;
    let name: string;
    let input: unknown;
    let options: QueryCallOptions;
    try {
      name = msg.subject.slice(endpoint.base.length);
      if (msg.data.length > this.#maxPayloadBytes) {
        throw new RejectionError(
          'PAYLOAD_TOO_LARGE',
          `The query body is ${msg.data.length} bytes, more than this node's limit of ${this.#maxPayloadBytes}.`,
          { details: { bytes: msg.data.length, limit: this.#maxPayloadBytes } },
        );
      }
      options = readQueryHeaders(msg.headers);
      if (!format.ok) {
        throw new RejectionError(
          'INVALID_PAYLOAD',
          `Content-Type ${JSON.stringify(format.contentType)} is not supported; send ${jsonCodec.contentType} or ${this.#codec.contentType}.`,
          { details: { contentType: format.contentType } },
        );
      }
      try {
        input = format.empty ? {} : format.codec.decode(msg.data);
      } catch (error) {
        throw new RejectionError(
          'INVALID_PAYLOAD',
          `The query body is not valid ${format.codec === jsonCodec ? 'JSON' : format.codec.contentType} (${describeError(error)}); send the input as a JSON object such as '{"owner":"ann"}'.`,
        );
      }
    } catch (error) {
      this.#reply(endpoint, msg, codec, error, started);
      return;
    }
    this.#inFlight += 1;
    void this.#node
      .query(endpoint.domain, name, input, options)
      .then(
        (result) => this.#reply(endpoint, msg, codec, { result }, started),
        (error: unknown) => this.#reply(endpoint, msg, codec, error, started),
      )
      .finally(() => {
        this.#inFlight -= 1;
        if (this.#inFlight === 0) for (const wake of this.#idle.splice(0)) wake();
      });
  }

  #reply(endpoint: Endpoint, msg: Msg, codec: Codec, outcome: unknown, started: number): void {
    let data: Uint8Array;
    let headers: MsgHdrs;
    const ok = !(outcome instanceof Error);
    try {
      if (ok) {
        data = codec.encode(outcome);
        headers = replyHeaders(codec, 'ok');
        endpoint.ok += 1;
      } else {
        const error =
          outcome instanceof JetactorError
            ? outcome
            : new InfrastructureError('INTERNAL_ERROR', describeError(outcome), { cause: outcome });
        if (error.kind === 'rejection') endpoint.rejected += 1;
        else endpoint.failed += 1;
        endpoint.lastError = `${error.code}: ${error.message}`;
        data = codec.encode({ error: error.toJSON() });
        headers = replyHeaders(codec, 'error', error.code);
      }
    } catch (error) {
      const failure = new InfrastructureError(
        'QUERY_FAILED',
        `The result of ${msg.subject} cannot be encoded: ${describeError(error)}. Query results must be plain values.`,
      );
      endpoint.failed += 1;
      endpoint.lastError = `${failure.code}: ${failure.message}`;
      data = jsonCodec.encode({ error: failure.toJSON() });
      headers = replyHeaders(jsonCodec, 'error', failure.code);
    }
    try {
      msg.respond(data, { headers });
    } catch (error) {
      this.#logger.warn({ err: error, subject: msg.subject }, 'query reply not sent');
    }
    const elapsedMs = performance.now() - started;
    endpoint.processingTimeNs += Math.round(elapsedMs * 1e6);
    this.#logger.debug(
      { subject: msg.subject, ok, ms: Math.round(elapsedMs * 100) / 100 },
      'query answered',
    );
  }
}

function readQueryHeaders(h: MsgHdrs | undefined): QueryCallOptions {
  const options: QueryCallOptions = {};
  if (h === undefined) return options;
  const read = (name: string, max: number): number | undefined => {
    const values = h.values(name, Match.IgnoreCase);
    if (values.length === 0) return undefined;
    const value = (values[0] ?? '').trim();
    const number = /^\d{1,15}$/.test(value) ? Number(value) : NaN;
    if (values.length > 1 || !Number.isSafeInteger(number) || number > max) {
      throw new RejectionError(
        'INVALID_HEADER',
        `Header ${name} is ${JSON.stringify(values.join(', '))}; send it once, as a whole number${max < Number.MAX_SAFE_INTEGER ? ` up to ${max}` : ''}.`,
        { details: { header: name } },
      );
    }
    return number;
  };
  const waitFor = read(queryHeaders.waitFor, Number.MAX_SAFE_INTEGER);
  const waitTimeoutMs = read(queryHeaders.waitTimeout, MAX_WAIT_MS);
  if (waitFor !== undefined) options.waitFor = waitFor;
  if (waitTimeoutMs !== undefined) options.waitTimeoutMs = waitTimeoutMs;
  return options;
}
