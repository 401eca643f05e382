import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import type { AggregateView } from '../aggregate/aggregate-actor.js';
import {
  plainCommandOptions,
  type Command,
  type CommandOptions,
  type CommandRequest,
  type CommandResult,
} from '../aggregate/command.js';
import { systemClock, type Clock } from '../clock.js';
import { randomCommandId } from '../command-id.js';
import type {
  AnyAggregateDefinition,
  CommandInput,
  CommandResponse,
} from '../domain/define-aggregate.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import { ConfigError, DefinitionError, RejectionError } from '../errors.js';
import type { EventStore, StreamRef } from '../event-store/event-store.js';
import type { SnapshotStore } from '../event-store/snapshot-store.js';
import { InMemoryEventStore } from '../event-store/in-memory-event-store.js';
import { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import { createLogger, type Logger } from '../logger.js';
import type { RoutingStats } from '../messaging/partition-routing.js';
import { whyNotSubjectToken } from '../names.js';
import { InProcessReactors } from '../reactors/in-process-reactors.js';
import { InProcessProjections } from '../projections/in-process-projections.js';
import { JetStreamProjections } from '../projections/jetstream-projections.js';
import {
  projectionHostOptionsSchema,
  type ProjectionHost,
  type ProjectionHostOptions,
} from '../projections/projection-host.js';
import type { ProjectionStats } from '../projections/projection-runner.js';
import { runQuery, type QueryCallOptions } from '../projections/run-query.js';
import type { AnyQueryDefinition, QueryInput, QueryOutput } from '../domain/define-query.js';
import { DEFAULT_PREFIX } from '../nats/subjects.js';
import { JetStreamReactors } from '../reactors/jetstream-reactors.js';
import type { ReactorStats } from '../reactors/reactor-dispatcher.js';
import {
  reactorHostOptionsSchema,
  type ReactorHost,
  type ReactorHostOptions,
} from '../reactors/reactor-host.js';
import {
  InspectionHook,
  inspectedError,
  rejectedRequest,
  type InspectionListener,
  type LiveActor,
} from './inspection-hook.js';
import {
  Supervisor,
  shuttingDown,
  type SupervisorOptions,
  type SupervisorStats,
} from './supervisor.js';

/** Typed calls for one aggregate instance: one method per command. */
export type AggregateRef<A extends AnyAggregateDefinition> = {
  [K in keyof A['commands'] & string]: (
    input: CommandInput<A['commands'][K]>,
    options?: CommandOptions,
  ) => Promise<CommandResult<CommandResponse<A['commands'][K]>>>;
};

const supervisorSchema = z
  .object({
    idleTimeoutMs: z.number().int().positive().default(60_000),
    maxActive: z.number().int().positive().default(100_000),
    restartBackoffMs: z.number().int().nonnegative().default(100),
    maxRestartBackoffMs: z.number().int().nonnegative().default(30_000),
    maxBatch: z.number().int().positive().max(10_000).default(256),
    maxConflictRetries: z.number().int().nonnegative().default(5),
    recentCommands: z.number().int().nonnegative().default(128),
    snapshotEvery: z.number().int().nonnegative().default(100),
  })
  .strict();

const nodeOptionsSchema = z
  .object({
    domains: z
      .array(
        z.custom<DomainDefinition>(
          (d) => (d as DomainDefinition | undefined)?.kind === 'domain',
          'expected a domain made with defineDomain',
        ),
      )
      .min(1, 'host at least one domain'),
    store: z
      .custom<EventStore>(
        (s) => typeof (s as EventStore | undefined)?.append === 'function',
        'expected an EventStore',
      )
      .optional(),
    snapshots: z
      .custom<SnapshotStore>(
        (s) => typeof (s as SnapshotStore | undefined)?.load === 'function',
        'expected a SnapshotStore',
      )
      .optional(),
    clock: z
      .custom<Clock>((c) => typeof (c as Clock | undefined)?.now === 'function', 'expected a Clock')
      .optional(),
    logger: z
      .custom<Logger>(
        (l) => typeof (l as Logger | undefined)?.child === 'function',
        'expected a pino logger',
      )
      .optional(),
    newId: z
      .custom<() => string>((f) => typeof f === 'function', 'expected a function returning an id')
      .optional(),
    nodeId: z.string().min(1).max(256).optional(),
    supervisor: supervisorSchema.prefault({}),
    reactors: reactorHostOptionsSchema.prefault({}),
    projections: projectionHostOptionsSchema.prefault({}),
  })
  .strict();

/** Options of {@link createNode}. */
export interface NodeOptions {
  /** The domains this node hosts. */
  domains: readonly DomainDefinition<any>[];
  /** Where events are stored; default a new {@link InMemoryEventStore}. */
  store?: EventStore;
  /**
   * Where aggregate snapshots are kept (e.g. `KvSnapshotStore`); none by default. Actors take one
   * every `supervisor.snapshotEvery` events and start from it.
   */
  snapshots?: SnapshotStore;
  /** Clock for timestamps, passivation and backoff; default the system clock. */
  clock?: Clock;
  /** pino logger; default JSON on stderr at `warn` (or `JETACTOR_LOG_LEVEL`). */
  logger?: Logger;
  /** Generates command ids when the caller gives none; default a random UUID (`randomCommandId`). */
  newId?: () => string;
  /**
   * This node's name in the leases of its reactors and projections and in their status replies;
   * default `<host>-<pid>-<random>` (`jetactor node --node-id` gives the same to the partitions).
   */
  nodeId?: string;
  /** Supervisor and actor tuning; every field has a default. */
  supervisor?: Partial<SupervisorOptions>;
  /**
   * Reactor hosting: `send` for commands to domains this node does not host, and on JetStream
   * `ackWaitMs` and `maxAckPending`; every field has a default. On JetStream one node at a time
   * runs each reactor, under a lease whose time is `projections.leaseMs`.
   */
  reactors?: Partial<ReactorHostOptions>;
  /**
   * Projection hosting: `databaseUrl` for PostgreSQL read models, `maxBatch`, `waitTimeoutMs` of
   * queries' `waitFor`, and on JetStream `ackWaitMs`, `maxAckPending`, `leaseMs` (the reactors'
   * lease time too).
   */
  projections?: Partial<ProjectionHostOptions>;
}

/** Longest `timeoutMs` a command may give: a day. */
const MAX_TIMEOUT_MS = 86_400_000;

const commandOptionsSchema = z.object({
  commandId: z.string().min(1).max(256).optional(),
  expectedVersion: z.number().int().nonnegative().optional(),
  correlationId: z.string().min(1).max(256).optional(),
  causationId: z.string().min(1).max(256).optional(),
  actor: z.string().min(1).max(256).optional(),
  timeoutMs: z.number().int().positive().max(MAX_TIMEOUT_MS).optional(),
});

/**
 * A node: hosts domains, routes commands to aggregate actors through its supervisor, runs the
 * domains' reactors. Works in-process on any {@link EventStore}.
 */
export class DomainNode {
  /** The store the node writes to. */
  readonly store: EventStore;
  /** The node's logger. */
  readonly logger: Logger;
  /** This node's name in the leases of its reactors and projections ({@link NodeOptions.nodeId}). */
  readonly id: string;
  readonly #domains = new Map<string, DomainDefinition>();
  /** What {@link #resolve} found, by domain name (or none) and aggregate: domains never change. */
  readonly #resolved = new Map<
    string | undefined,
    Map<string, { domain: DomainDefinition; definition: AnyAggregateDefinition }>
  >();
  readonly #supervisor: Supervisor;
  readonly #reactors: ReactorHost;
  readonly #projections: ProjectionHost;
  readonly #waitTimeoutMs: number;
  readonly #clock: Clock;
  readonly #newId: () => string;
  readonly #ownsStore: boolean;
  readonly #inspection = new InspectionHook();
  #routing: (() => Record<string, RoutingStats>) | undefined;
  #started = false;
  #stopping = false;

  constructor(options: NodeOptions) {
    const parsed = nodeOptionsSchema.safeParse(options);
    if (!parsed.success) {
      const where = parsed.error.issues
        .map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`)
        .join('; ');
      throw new ConfigError(`Invalid node options: ${where}.`, {
        details: { issues: parsed.error.issues },
      });
    }
    const config = parsed.data;
    for (const domain of config.domains) {
      if (this.#domains.has(domain.name)) {
        throw new DefinitionError(
          'DUPLICATE_NAME',
          `Two hosted domains are named "${domain.name}"; each domain needs its own name (it names its stream and subjects).`,
        );
      }
      this.#domains.set(domain.name, domain);
    }
    this.#clock = config.clock ?? systemClock;
    this.logger = config.logger ?? createLogger();
    this.#newId = config.newId ?? randomCommandId;
    this.#ownsStore = config.store === undefined;
    this.store = config.store ?? new InMemoryEventStore({ clock: this.#clock });
    this.#supervisor = new Supervisor({
      store: this.store,
      snapshots: config.snapshots,
      clock: this.#clock,
      logger: this.logger,
      options: Object.freeze({ ...config.supervisor }),
      inspection: this.#inspection,
    });
    const { send, ...acks } = config.reactors;
    // This node's name in the leases of its reactors and projections.
    const nodeId =
      config.nodeId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.id = nodeId;
    let remote = send;
    const reactorDeps = {
      clock: this.#clock,
      logger: this.logger,
      send: (command: CommandRequest): Promise<CommandResult> => {
        if (command.domain === undefined || this.#domains.has(command.domain)) {
          return this.#execute(command);
        }
        if (remote !== undefined) return remote(command);
        return Promise.reject(
          new RejectionError(
            'UNKNOWN_DOMAIN',
            `A reactor sent ${command.aggregate}.${command.command} to domain ${JSON.stringify(command.domain)}, which this node does not host (it hosts ${[...this.#domains.keys()].join(', ')}); host it here, run the node on NATS (JetStreamEventStore), or pass createNode({ reactors: { send } }).`,
            { details: { domain: command.domain } },
          ),
        );
      },
    };
    if (this.store instanceof JetStreamEventStore) {
      // Reactors and projections share the lease bucket, so its lease time is theirs too.
      const host = new JetStreamReactors({
        ...reactorDeps,
        store: this.store,
        options: { ...acks, leaseMs: config.projections.leaseMs },
        nodeId,
      });
      remote ??= (command) => host.sendRemote(command);
      this.#reactors = host;
    } else {
      this.#reactors = new InProcessReactors({ ...reactorDeps, store: this.store });
    }
    for (const domain of config.domains) {
      for (const reactor of domain.reactors) this.#reactors.subscribe(domain, reactor);
    }
    const projectionDeps = {
      clock: this.#clock,
      logger: this.logger,
      options: Object.freeze({ ...config.projections }),
    };
    this.#waitTimeoutMs = config.projections.waitTimeoutMs;
    this.#projections =
      this.store instanceof JetStreamEventStore
        ? new JetStreamProjections({ ...projectionDeps, store: this.store, nodeId })
        : new InProcessProjections({
            ...projectionDeps,
            store: this.store,
            prefix: DEFAULT_PREFIX,
          });
    for (const domain of config.domains) {
      for (const projection of domain.projections) this.#projections.subscribe(domain, projection);
    }
  }

  /**
   * The node's projections: on a `JetStreamEventStore` each runs on one node at a time (a lease),
   * on a durable consumer; in-process otherwise. Their stats, waits, read models, rebuild and dead
   * letters.
   */
  get projections(): ProjectionHost {
    return this.#projections;
  }

  /**
   * Runs a query of a hosted domain: `node.query(bank, 'balance', { owner: 'ann' }, { waitFor })`
   * (typed by the domain definition), or by domain name. Rejects with `UNKNOWN_DOMAIN`,
   * `UNKNOWN_QUERY`, `VALIDATION_FAILED`, `PROJECTION_BEHIND` (waitFor not reached in time) or
   * the handler's error.
   */
  query<D extends DomainDefinition<any, any>, N extends keyof D['queries'] & string>(
    domain: D,
    name: N,
    input: QueryInput<D['queries'][N]>,
    options?: QueryCallOptions,
  ): Promise<QueryOutput<D['queries'][N]>>;
  query(
    domain: string,
    name: string,
    input?: unknown,
    options?: QueryCallOptions,
  ): Promise<unknown>;
  query(
    domain: DomainDefinition<any, AnyQueryDefinition> | string,
    name: string,
    input?: unknown,
    options?: QueryCallOptions,
  ): Promise<unknown> {
    const domainName = typeof domain === 'string' ? domain : domain.name;
    const hosted = this.#domains.get(domainName);
    if (hosted === undefined) {
      return Promise.reject(
        new RejectionError(
          'UNKNOWN_DOMAIN',
          `This node hosts no domain ${JSON.stringify(domainName)}; it hosts: ${[...this.#domains.keys()].join(', ')}.`,
          { details: { domain: domainName } },
        ),
      );
    }
    return runQuery(
      {
        projections: this.#projections,
        clock: this.#clock,
        logger: this.logger,
        waitTimeoutMs: this.#waitTimeoutMs,
      },
      hosted,
      name,
      input,
      options,
    );
  }

  /**
   * The node's reactors: durable JetStream consumers on a `JetStreamEventStore`, in-process
   * otherwise. Their stats, workers and dead letters (list, replay, discard).
   */
  get reactors(): ReactorHost {
    return this.#reactors;
  }

  /** The hosted domains. */
  get domains(): readonly DomainDefinition[] {
    return [...this.#domains.values()];
  }

  /**
   * Prepares the store for the hosted domains (creates or checks their streams) and starts the
   * domains' reactors. Commands are accepted before and after.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    try {
      await this.store.ensureDomains?.([...this.#domains.keys()]);
    } catch (error) {
      this.#started = false;
      throw error;
    }
    try {
      await this.#reactors.listen();
      await this.#projections.listen();
    } catch (error) {
      this.#started = false;
      throw error;
    }
    this.logger.info({ domains: [...this.#domains.keys()] }, 'node started');
  }

  /**
   * Executes a command. Never throws synchronously: bad requests reject with a typed error
   * (`UNKNOWN_DOMAIN`, `UNKNOWN_AGGREGATE`, `UNKNOWN_COMMAND`, `INVALID_ID`, `INVALID_COMMAND`,
   * `VALIDATION_FAILED`, …) and nothing is stored. Once {@link DomainNode.stop} was called, it
   * rejects with a retryable `SHUTTING_DOWN`.
   */
  execute(request: CommandRequest): Promise<CommandResult> {
    if (this.#stopping) return Promise.reject(shuttingDown());
    return this.#execute(request);
  }

  /** Executes a command from outside or from a reactor (which may still send while stopping). */
  #execute(request: CommandRequest): Promise<CommandResult> {
    let command: Command;
    let domain: DomainDefinition;
    let definition: AnyAggregateDefinition;
    try {
      ({ command, domain, definition } = this.#validate(request));
    } catch (error) {
      this.#inspection.emit?.(rejectedRequest(request, error, this.#clock.now()));
      return Promise.reject(error);
    }
    if (this.logger.isLevelEnabled?.('debug') !== false) {
      this.logger.debug(
        {
          command: command.name,
          aggregate: command.aggregate,
          id: command.aggregateId,
          commandId: command.id,
        },
        'command',
      );
    }
    if (this.#inspection.emit !== undefined) return this.#executeInspected(definition, command);
    return this.#supervisor.execute(domain.name, definition, command);
  }

  /** Executes a command while an inspector is attached: reports the command and its reply. */
  #executeInspected(definition: AnyAggregateDefinition, command: Command): Promise<CommandResult> {
    const where = {
      domain: command.domain,
      aggregate: command.aggregate,
      id: command.aggregateId,
      command: command.name,
      commandId: command.id,
    };
    this.#inspection.emit?.({
      kind: 'command',
      at: this.#clock.now(),
      ...where,
      input: command.input,
      ...(command.actor === undefined ? {} : { actor: command.actor }),
    });
    const result = this.#supervisor.execute(command.domain, definition, command);
    void result.then(
      (reply) =>
        this.#inspection.emit?.({
          kind: 'reply',
          at: this.#clock.now(),
          ...where,
          ok: true,
          version: reply.version,
          events: reply.events.length,
          duplicate: reply.duplicate,
        }),
      (error: unknown) =>
        this.#inspection.emit?.({
          kind: 'reply',
          at: this.#clock.now(),
          ...where,
          ok: false,
          error: inspectedError(error),
        }),
    );
    return result;
  }

  /**
   * Attaches an inspector: `listener` receives every command the node accepts or rejects, every
   * reply and every commit its actors store, until the returned function is called. While nothing
   * is attached the node reports nothing and pays one property read per command and commit.
   */
  inspect(listener: InspectionListener): () => void {
    return this.#inspection.attach(listener);
  }

  /** The live actors, least recently used first: aggregate, lifecycle, state value, version. */
  *actors(): Generator<LiveActor> {
    for (const actor of this.#supervisor.actors()) {
      const view = actor.view();
      yield {
        ...actor.stream,
        lifecycle: view.lifecycle,
        value: view.value,
        version: view.version,
        mailboxDepth: view.mailboxDepth,
      };
    }
  }

  /** Typed calls on one aggregate instance, e.g. `node.aggregate(Account, 'acc-1').deposit({ amount: 5 })`. */
  aggregate<A extends AnyAggregateDefinition>(
    definition: A,
    id: string,
    domain?: string,
  ): AggregateRef<A> {
    const ref: Record<string, unknown> = {};
    const domainName = domain ?? this.#domainOf(definition);
    for (const name of Object.keys(definition.commands)) {
      ref[name] = (input: unknown, options: CommandOptions = {}) =>
        this.execute({
          ...options,
          domain: domainName,
          aggregate: definition.name,
          id,
          command: name,
          input,
        });
    }
    return ref as AggregateRef<A>;
  }

  /** The confirmed state of an aggregate instance (replayed from the store if not active). */
  view(
    aggregate: AnyAggregateDefinition | string,
    id: string,
    domain?: string,
  ): Promise<AggregateView> {
    try {
      const name = typeof aggregate === 'string' ? aggregate : aggregate.name;
      const found = this.#resolve(domain, name);
      this.#checkId(id);
      return this.#supervisor.view(found.domain.name, found.definition, id);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Supervisor counters, events dead-lettered by reactors since start, and each reactor's counters
   * (keyed `<domain>.<reactor>`: handled, retries, dead letters, in flight, blocked, lag, workers).
   */
  stats(): SupervisorStats & {
    deadLetters: number;
    reactors: Record<string, ReactorStats>;
    projections: Record<string, ProjectionStats>;
    routing?: Record<string, RoutingStats>;
  } {
    return {
      ...this.#supervisor.stats(),
      deadLetters: this.#reactors.deadLettered,
      reactors: this.#reactors.stats(),
      projections: this.#projections.stats(),
      ...(this.#routing === undefined ? {} : { routing: this.#routing() }),
    };
  }

  /**
   * Called by a `CommandRouter` with partition affinity: from then on {@link DomainNode.stats}
   * has `routing`, per domain: partitions owned, requests served here, forwarded to their owner,
   * served for other nodes.
   */
  reportRouting(source: () => Record<string, RoutingStats>): void {
    this.#routing = source;
  }

  /**
   * Passivates the live actors whose aggregate matches (idle ones at once, busy ones once idle);
   * e.g. those of a partition this node stopped owning. Returns how many matched.
   */
  passivateWhere(predicate: (stream: StreamRef) => boolean): number {
    return this.#supervisor.passivateWhere(predicate);
  }

  /**
   * Graceful stop: takes no new commands (they get a retryable `SHUTTING_DOWN`), stops reactors
   * (handlers already running may finish within `timeoutMs`, with the commands they send; events
   * not finished are not acknowledged), lets queued and in-flight commands finish within
   * `timeoutMs` (the rest get `SHUTTING_DOWN`) and passivates actors.
   */
  async stop(timeoutMs = 10_000): Promise<{ interrupted: number }> {
    this.#stopping = true;
    await this.#reactors.close(timeoutMs);
    await this.#projections.close(timeoutMs);
    const result = await this.#supervisor.stop(timeoutMs);
    if (this.#ownsStore) await this.store.close();
    this.logger.info({ interrupted: result.interrupted }, 'node stopped');
    return result;
  }

  #validate(request: CommandRequest): {
    command: Command;
    domain: DomainDefinition;
    definition: AnyAggregateDefinition;
  } {
    if (typeof request !== 'object' || request === null) {
      throw new RejectionError(
        'INVALID_COMMAND',
        `A command must be an object { aggregate, id, command, input }; got ${JSON.stringify(request)}.`,
      );
    }
    const { domain, definition } = this.#resolve(request.domain, request.aggregate);
    const name = request.command;
    const handler =
      typeof name === 'string' && Object.hasOwn(definition.commands, name)
        ? definition.commands[name]
        : undefined;
    if (handler === undefined) {
      throw new RejectionError(
        'UNKNOWN_COMMAND',
        `Aggregate "${definition.name}" has no command ${JSON.stringify(name)}; its commands: ${Object.keys(definition.commands).join(', ')}.`,
        { details: { command: name, known: Object.keys(definition.commands) } },
      );
    }
    const id = this.#checkId(request.id);
    const options =
      plainCommandOptions(request, 1, MAX_TIMEOUT_MS) ?? commandOptionsSchema.safeParse(request);
    if (!options.success) {
      throw new RejectionError(
        'INVALID_COMMAND',
        `Command options are invalid: ${options.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}.`,
        { details: { issues: options.error.issues } },
      );
    }
    const input = handler.input.safeParse(request.input);
    if (!input.success) {
      throw new RejectionError(
        'VALIDATION_FAILED',
        `Input of ${definition.name}.${name} is invalid: ${input.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: input.error.issues } },
      );
    }
    const commandId = options.data.commandId ?? this.#newId();
    return {
      domain,
      definition,
      command: {
        domain: domain.name,
        aggregate: definition.name,
        aggregateId: id,
        name,
        input: input.data,
        id: commandId,
        expectedVersion: options.data.expectedVersion,
        correlationId: options.data.correlationId ?? commandId,
        causationId: options.data.causationId ?? commandId,
        actor: options.data.actor,
        deadline:
          options.data.timeoutMs === undefined
            ? undefined
            : this.#clock.now() + options.data.timeoutMs,
      },
    };
  }

  #resolve(
    domainName: string | undefined,
    aggregate: unknown,
  ): { domain: DomainDefinition; definition: AnyAggregateDefinition } {
    if (typeof aggregate !== 'string') return this.#find(domainName, aggregate);
    let known = this.#resolved.get(domainName);
    let found = known?.get(aggregate);
    if (found === undefined) {
      found = this.#find(domainName, aggregate);
      // Only hosted domains get here (#find throws for the others).
      if (known === undefined) {
        known = new Map();
        this.#resolved.set(domainName, known);
      }
      known.set(aggregate, found);
    }
    return found;
  }

  #find(
    domainName: string | undefined,
    aggregate: unknown,
  ): { domain: DomainDefinition; definition: AnyAggregateDefinition } {
    if (domainName !== undefined) {
      const domain = this.#domains.get(domainName);
      if (domain === undefined) {
        throw new RejectionError(
          'UNKNOWN_DOMAIN',
          `This node hosts no domain ${JSON.stringify(domainName)}; it hosts: ${[...this.#domains.keys()].join(', ')}.`,
          { details: { domain: domainName } },
        );
      }
      const definition =
        typeof aggregate === 'string' && Object.hasOwn(domain.aggregates, aggregate)
          ? domain.aggregates[aggregate]
          : undefined;
      if (definition === undefined) {
        throw new RejectionError(
          'UNKNOWN_AGGREGATE',
          `Domain "${domain.name}" has no aggregate ${JSON.stringify(aggregate)}; its aggregates: ${Object.keys(domain.aggregates).join(', ')}.`,
          { details: { aggregate } },
        );
      }
      return { domain, definition };
    }
    const matches = [...this.#domains.values()].filter(
      (d) => typeof aggregate === 'string' && Object.hasOwn(d.aggregates, aggregate),
    );
    const [first] = matches;
    if (first === undefined) {
      const known = [...this.#domains.values()].flatMap((d) =>
        Object.keys(d.aggregates).map((a) => `${d.name}.${a}`),
      );
      throw new RejectionError(
        'UNKNOWN_AGGREGATE',
        `No hosted domain has an aggregate ${JSON.stringify(aggregate)}; known: ${known.join(', ')}.`,
        { details: { aggregate } },
      );
    }
    if (matches.length > 1) {
      throw new RejectionError(
        'AMBIGUOUS_AGGREGATE',
        `Aggregate "${String(aggregate)}" exists in domains ${matches.map((d) => d.name).join(' and ')}; say which with domain.`,
      );
    }
    return {
      domain: first,
      definition: first.aggregates[aggregate as string] as AnyAggregateDefinition,
    };
  }

  #domainOf(definition: AnyAggregateDefinition): string {
    const matches = [...this.#domains.values()].filter(
      (d) => d.aggregates[definition.name] === definition,
    );
    const [first] = matches;
    if (first === undefined) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Aggregate "${definition.name}" is not part of any domain this node hosts; add its domain to createNode({ domains }).`,
      );
    }
    if (matches.length > 1) {
      throw new RejectionError(
        'AMBIGUOUS_AGGREGATE',
        `Aggregate "${definition.name}" is hosted in domains ${matches.map((d) => d.name).join(' and ')}; pass the domain: node.aggregate(${definition.name}, id, 'domain').`,
      );
    }
    return first.name;
  }

  #checkId(id: unknown): string {
    const why = typeof id === 'string' ? whyNotSubjectToken(id) : 'it is not a string';
    if (why !== undefined) {
      throw new RejectionError(
        'INVALID_ID',
        `Aggregate id ${JSON.stringify(id)} is not valid: ${why}. Ids become NATS subject tokens; use e.g. letters, digits, "-" and "_".`,
        { details: { id } },
      );
    }
    return id as string;
  }
}

/** Creates a node; options are checked at once (a `ConfigError` names every wrong field). */
export function createNode(options: NodeOptions): DomainNode {
  return new DomainNode(options);
}
