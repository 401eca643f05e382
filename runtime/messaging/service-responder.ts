// Why not @nats-io/services: its v3 line on npm is a prerelease that bundles its own copy of
// @nats-io/nats-core, so its types do not accept the NatsConnection that @nats-io/transport-node
// returns without casts, and it would be one more dependency for a small protocol. What `nats micro`
// needs is three JSON replies (ping, info, stats) on nine subjects; this file is that, and nothing
// of the services module's request routing, which the command router does on its own subjects.
import { nuid, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.js';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import { jsonCodec } from './protocol.js';

/** An endpoint as `$SRV.INFO` describes it. */
export interface ServiceEndpointInfo {
  /** Endpoint name (letters, digits, `_`, `-`). */
  name: string;
  /** The subject it listens on. */
  subject: string;
  /** Its queue group, if it has one. */
  queueGroup?: string;
  /** String metadata. */
  metadata?: Record<string, string>;
}

/** An endpoint with its counters, as `$SRV.STATS` reports them. */
export interface ServiceEndpointStats extends ServiceEndpointInfo {
  /** Requests received. */
  requests: number;
  /** Requests answered with an error. */
  errors: number;
  /** The last error, as text; empty when none. */
  lastError: string;
  /** Time spent on requests in all, in nanoseconds. */
  processingTimeNs: number;
  /** Further statistics of the endpoint. */
  data?: Record<string, unknown>;
}

/** Options of {@link ServiceResponder}. */
export interface ServiceResponderOptions {
  /** An open connection; the responder never closes it. */
  connection: NatsConnection;
  /** Service name, shared by every instance (letters, digits, `_`, `-`). */
  name: string;
  /** Service version, semver (e.g. `0.1.0`). */
  version: string;
  /** One line describing the service. Default: empty. */
  description?: string;
  /** String metadata reported by ping, info and stats. */
  metadata?: Record<string, string>;
  /** This instance's id; default a new NUID. */
  id?: string;
  /** The endpoints and their counters, read on each info and stats request. */
  endpoints: () => readonly ServiceEndpointStats[];
  /** Clock of the `started` time. Default the system clock. */
  clock?: Clock;
  /** Where failures to answer are logged. */
  logger?: Logger;
}

/** `$SRV.PING` reply (`io.nats.micro.v1.ping_response`). */
export interface ServicePing {
  /** The micro protocol message type. */
  type: 'io.nats.micro.v1.ping_response';
  /** Service name, shared by every instance. */
  name: string;
  /** This instance's id. */
  id: string;
  /** Service version (semver). */
  version: string;
  /** String metadata (for a node: runtime, prefix, domains, hostname, pid). */
  metadata: Record<string, string>;
}

/** An endpoint as `$SRV.INFO` lists it. */
export interface ServiceInfoEndpoint {
  /** Endpoint name. */
  name: string;
  /** Subject it listens on. */
  subject: string;
  /** Its queue group, if any. */
  queue_group?: string;
  /** String metadata, or null. */
  metadata: Record<string, string> | null;
}

/** `$SRV.INFO` reply (`io.nats.micro.v1.info_response`). */
export interface ServiceInfo extends Omit<ServicePing, 'type'> {
  /** The micro protocol message type. */
  type: 'io.nats.micro.v1.info_response';
  /** What the service does. */
  description: string;
  /** Its endpoints. */
  endpoints: ServiceInfoEndpoint[];
}

/** An endpoint's counters as `$SRV.STATS` reports them. */
export interface ServiceStatsEndpoint {
  /** Endpoint name. */
  name: string;
  /** Subject it listens on. */
  subject: string;
  /** Its queue group, if any. */
  queue_group?: string;
  /** Requests received. */
  num_requests: number;
  /** Requests answered with an error. */
  num_errors: number;
  /** The last error, as text; empty when none. */
  last_error: string;
  /** Time spent on requests in all, in nanoseconds. */
  processing_time: number;
  /** Average time per request, in nanoseconds. */
  average_processing_time: number;
  /** Further statistics. */
  data?: Record<string, unknown>;
}

/** `$SRV.STATS` reply (`io.nats.micro.v1.stats_response`). */
export interface ServiceStats extends Omit<ServicePing, 'type'> {
  /** The micro protocol message type. */
  type: 'io.nats.micro.v1.stats_response';
  /** When the instance started answering (RFC 3339). */
  started: string;
  /** Its endpoints and their counters. */
  endpoints: ServiceStatsEndpoint[];
}

const namePattern = /^[A-Za-z0-9_-]+$/;
const semver =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

const optionsSchema = z.strictObject({
  connection: z.custom<NatsConnection>(
    (value) => typeof (value as NatsConnection | undefined)?.subscribe === 'function',
    { message: 'expected a NatsConnection' },
  ),
  name: z.string().regex(namePattern, 'must be letters, digits, "_" or "-"'),
  version: z.string().regex(semver, 'must be a semantic version such as 1.2.3'),
  description: z.string().default(''),
  metadata: z.record(z.string(), z.string()).default({}),
  id: z.string().regex(namePattern, 'must be letters, digits, "_" or "-"').optional(),
  endpoints: z.custom<() => readonly ServiceEndpointStats[]>(
    (value) => typeof value === 'function',
    {
      message: 'expected a function returning the endpoints',
    },
  ),
  clock: z.custom<Clock>().optional(),
  logger: z.custom<Logger>().optional(),
});

/**
 * Answers the NATS service protocol (`nats micro ls`, `nats micro info`, `nats micro stats`):
 * `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`, each also as `.<name>` and `.<name>.<id>`, with the
 * JSON replies of the micro v1 protocol. Every instance answers (no queue group), so a request
 * with several replies lists them all.
 */
export class ServiceResponder {
  /** This instance's id. */
  readonly id: string;
  /** The service name. */
  readonly name: string;
  readonly #options: Readonly<z.output<typeof optionsSchema>>;
  readonly #subscriptions: Subscription[] = [];
  #started: string | undefined;

  /** Checks the options (a `ConfigError` names each wrong one); call {@link start} to answer. */
  constructor(options: ServiceResponderOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid service responder options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    this.#options = Object.freeze(parsed.data);
    this.id = parsed.data.id ?? nuid.next();
    this.name = parsed.data.name;
  }

  /** The nine subjects it answers on. */
  get subjects(): string[] {
    return ['PING', 'INFO', 'STATS'].flatMap((verb) => [
      `$SRV.${verb}`,
      `$SRV.${verb}.${this.name}`,
      `$SRV.${verb}.${this.name}.${this.id}`,
    ]);
  }

  /** Subscribes and waits until the server has the subscriptions. */
  async start(): Promise<void> {
    if (this.#started !== undefined) return;
    this.#started = new Date((this.#options.clock ?? systemClock).now()).toISOString();
    const nc = this.#options.connection;
    for (const subject of this.subjects) {
      const verb = subject.split('.')[1];
      const answer =
        verb === 'PING'
          ? () => this.ping()
          : verb === 'INFO'
            ? () => this.info()
            : () => this.stats();
      this.#subscriptions.push(
        nc.subscribe(subject, {
          callback: (error, msg) => {
            if (error === null) this.#respond(msg, answer);
          },
        }),
      );
    }
    await nc.flush();
  }

  /** Unsubscribes. */
  async stop(): Promise<void> {
    const subscriptions = this.#subscriptions.splice(0);
    await Promise.all(subscriptions.map((sub) => sub.drain().catch(() => undefined)));
  }

  /** The `$SRV.PING` reply. */
  ping(): ServicePing {
    return { type: 'io.nats.micro.v1.ping_response', ...this.#identity() };
  }

  /** The `$SRV.INFO` reply. */
  info(): ServiceInfo {
    return {
      type: 'io.nats.micro.v1.info_response',
      ...this.#identity(),
      description: this.#options.description,
      endpoints: this.#options.endpoints().map((e) => ({
        name: e.name,
        subject: e.subject,
        ...(e.queueGroup === undefined ? {} : { queue_group: e.queueGroup }),
        metadata: e.metadata ?? null,
      })),
    };
  }

  /** The `$SRV.STATS` reply. */
  stats(): ServiceStats {
    return {
      type: 'io.nats.micro.v1.stats_response',
      ...this.#identity(),
      started: this.#started ?? new Date(0).toISOString(),
      endpoints: this.#options.endpoints().map((e) => ({
        name: e.name,
        subject: e.subject,
        ...(e.queueGroup === undefined ? {} : { queue_group: e.queueGroup }),
        num_requests: e.requests,
        num_errors: e.errors,
        last_error: e.lastError,
        processing_time: Math.round(e.processingTimeNs),
        average_processing_time: e.requests === 0 ? 0 : Math.round(e.processingTimeNs / e.requests),
        ...(e.data === undefined ? {} : { data: e.data }),
      })),
    };
  }

  #identity(): { name: string; id: string; version: string; metadata: Record<string, string> } {
    return {
      name: this.name,
      id: this.id,
      version: this.#options.version,
      metadata: { ...this.#options.metadata },
    };
  }

  #respond(msg: Msg, answer: () => unknown): void {
    if (msg.reply === undefined || msg.reply === '') return;
    try {
      msg.respond(jsonCodec.encode(answer()));
    } catch (error) {
      this.#options.logger?.warn({ err: error, subject: msg.subject }, 'service reply not sent');
    }
  }
}
