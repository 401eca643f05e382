import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type { AnyProjectionDefinition } from '../domain/define-projection.js';
import { ConfigError, DefinitionError, InfrastructureError, RejectionError } from '../errors.js';
import type { Commit } from '../event-store/event-store.js';
import type { Logger } from '../logger.js';
import { projectionSchema } from '../nats/subjects.js';
import type {
  DeadLetter,
  DeadLetterFilter,
  DeadLetterStore,
} from '../reactors/dead-letter-store.js';
import { deadLetterNotFound } from '../reactors/reactor-dispatcher.js';
import {
  DEFAULT_DATABASE_URL,
  PostgresReadModelStore,
  openPostgresPool,
} from './postgres-read-model-store.js';
import type { PgPoolLike, PostgresReadModel } from './read-model.js';
import type { ReadModelStore } from './read-model-store.js';
import { ProjectionRunner, type ProjectionStats } from './projection-runner.js';

/** Options of a node's projections (`createNode({ projections })`); every field has a default. */
export interface ProjectionHostOptions {
  /**
   * PostgreSQL of projections whose `postgresReadModel` names no `connectionString` nor `pool`.
   * Default `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`.
   */
  databaseUrl?: string;
  /** Most commits applied in one batch (one transaction, one redo record). Default 256. */
  maxBatch: number;
  /**
   * JetStream: how long the server waits for an acknowledgement before it delivers a commit again,
   * in milliseconds; commits in hand are kept alive at a third of it. Default 30000.
   */
  ackWaitMs: number;
  /** JetStream: most commits a projection holds unapplied. Default 1000. */
  maxAckPending: number;
  /**
   * JetStream: lease time of a projection, and of a reactor on a node (they share the lease
   * bucket), in milliseconds. One node runs each projection and each reactor; when it dies,
   * another takes over about this long after its last renewal. Default 5000.
   */
  leaseMs: number;
  /** Default wait of a query's `waitFor`, in milliseconds. Default 5000. */
  waitTimeoutMs: number;
}

/** Zod schema of {@link ProjectionHostOptions}, with its defaults. */
export const projectionHostOptionsSchema = z
  .object({
    databaseUrl: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
    maxBatch: z.number().int().min(1).max(10_000).default(256),
    ackWaitMs: z.number().int().min(100).default(30_000),
    maxAckPending: z.number().int().min(1).max(1_000_000).default(1_000),
    leaseMs: z.number().int().min(250).max(600_000).default(5_000),
    waitTimeoutMs: z.number().int().min(0).max(600_000).default(5_000),
  })
  .strict();

/** What a rebuild request answers once the read model is dropped and building again. */
export interface RebuildStarted {
  /** `<domain>.<projection>`. */
  projection: string;
  /** Position of the last commit of the domain when the rebuild started: done once reached. */
  target: number;
}

/** A projection's status, as `jetactor projection status` prints it. */
export interface ProjectionStatus extends ProjectionStats {
  /** The domain. */
  domain: string;
  /** The projection. */
  projection: string;
}

/**
 * Runs a node's projections: subscribe each, then `listen()`, then `close(timeoutMs)`.
 * `InProcessProjections` reads the in-memory store's subscription; `JetStreamProjections` runs each
 * projection on one node at a time (a lease), on a durable consumer.
 */
export interface ProjectionHost {
  /** True between `listen()` and `close()`. */
  readonly listening: boolean;
  /** Adds a projection of a domain; only before `listen()`. */
  subscribe(domain: DomainDefinition, projection: AnyProjectionDefinition): void;
  /** Starts the projections. */
  listen(): Promise<void>;
  /** Stops them: batches being written finish within `timeoutMs`. */
  close(timeoutMs?: number): Promise<void>;
  /** Progress per projection, keyed `<domain>.<projection>`. */
  stats(): Record<string, ProjectionStats>;
  /**
   * Resolves true once the projection's checkpoint reaches `position` (a position from a command
   * result), false after `timeoutMs`. Works on every node hosting it (standbys read the stored
   * checkpoint).
   */
  waitFor(
    domain: string,
    projection: string,
    position: number,
    timeoutMs: number,
  ): Promise<boolean>;
  /** What queries read: documents or SQL. Throws `UNKNOWN_PROJECTION`. */
  readModel(domain: string, projection: string): unknown;
  /** Drops the read model and builds it again from the start (on the node that runs it). */
  rebuild(domain: string, projection: string): Promise<RebuildStarted>;
  /** The projections' dead letters (of every node sharing the store). */
  deadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]>;
  /** Replays a projection's dead letter (on the node that runs it). */
  replay(id: number): Promise<DeadLetter>;
  /** Drops a projection's dead letter; a projection waiting behind it goes on. */
  discard(id: number): Promise<DeadLetter>;
}

/** What every projection host needs from its node. */
export interface ProjectionHostDeps {
  /** Clock of retries, leases and timeouts. */
  clock: Clock;
  /** The node's logger. */
  logger: Logger;
  /** Options, validated. */
  options: Readonly<z.output<typeof projectionHostOptionsSchema>>;
  /** Where dead letters go. */
  deadLetters: DeadLetterStore;
  /** Subject and bucket prefix (for default PostgreSQL schema names). */
  prefix: string;
}

/** One hosted projection. */
export interface ProjectionSlot {
  /** `<domain>.<projection>`. */
  key: string;
  /** Its domain. */
  domain: DomainDefinition;
  /** The projection. */
  projection: AnyProjectionDefinition;
  /** Its read model. */
  store: ReadModelStore<any, any>;
  /** Its runner. */
  runner: ProjectionRunner;
}

/** The part both hosts share: slots, stores, PostgreSQL pools, waits, stats, dead letters. */
export abstract class ProjectionHostBase implements ProjectionHost {
  /** What the host was given. */
  protected readonly deps: ProjectionHostDeps;
  /** Slots by `<domain>.<projection>`. */
  protected readonly slots = new Map<string, ProjectionSlot>();
  readonly #pools = new Map<string, Promise<PgPoolLike>>();
  #state: 'configuring' | 'listening' | 'closed' = 'configuring';

  constructor(deps: ProjectionHostDeps) {
    this.deps = deps;
  }

  get listening(): boolean {
    return this.#state === 'listening';
  }

  subscribe(domain: DomainDefinition, projection: AnyProjectionDefinition): void {
    if (this.#state !== 'configuring') {
      throw new ConfigError(
        `Cannot subscribe projection "${projection.name}" of domain "${domain.name}": the projections are ${this.#state}. Subscribe every projection before listen().`,
      );
    }
    if (!domain.projections.includes(projection)) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Projection "${projection.name}" is not part of domain "${domain.name}"; add it with defineDomain({ projections }).`,
      );
    }
    const key = `${domain.name}.${projection.name}`;
    if (this.slots.has(key)) {
      throw new DefinitionError(
        'DUPLICATE_NAME',
        `Projection "${projection.name}" of domain "${domain.name}" is subscribed twice.`,
      );
    }
    const store = this.#createStore(domain, projection);
    const runner = new ProjectionRunner({
      domain,
      projection,
      store,
      clock: this.deps.clock,
      logger: this.deps.logger,
      deadLetters: this.deps.deadLetters,
      maxBatch: this.deps.options.maxBatch,
      load: (deadLetter) => this.load(domain, deadLetter),
    });
    this.slots.set(key, { key, domain, projection, store, runner });
  }

  async listen(): Promise<void> {
    if (this.#state === 'closed') {
      throw new ConfigError('These projections were closed; create a new node.');
    }
    if (this.#state === 'listening') return;
    await this.start([...this.slots.values()]);
    this.#state = 'listening';
  }

  async close(timeoutMs = 10_000): Promise<void> {
    if (this.#state === 'closed') return;
    const was = this.#state;
    this.#state = 'closed';
    if (was === 'listening') await this.stop(timeoutMs);
    for (const slot of this.slots.values()) await slot.store.close().catch(() => undefined);
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.then((pool) => pool.end()).catch(() => undefined)));
  }

  stats(): Record<string, ProjectionStats> {
    const stats: Record<string, ProjectionStats> = {};
    for (const [key, slot] of this.slots) stats[key] = this.statsOf(slot);
    return stats;
  }

  /** The statuses of every hosted projection. */
  status(): ProjectionStatus[] {
    return [...this.slots.values()].map((slot) => ({
      domain: slot.domain.name,
      projection: slot.projection.name,
      ...this.statsOf(slot),
    }));
  }

  async waitFor(
    domain: string,
    projection: string,
    position: number,
    timeoutMs: number,
  ): Promise<boolean> {
    const slot = this.slot(domain, projection);
    const deadline = this.deps.clock.now() + timeoutMs;
    if (slot.runner.running) {
      const reached = await slot.runner.waitFor(position, timeoutMs);
      if (reached !== 'stopped') return reached;
    }
    // Not running here: the node that runs it writes the checkpoint; read it until it is there.
    for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
      if ((await slot.store.checkpoint()) >= position) return true;
      const left = deadline - this.deps.clock.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) =>
        this.deps.clock.setTimeout(resolve, Math.min(delay, left)),
      );
    }
  }

  readModel(domain: string, projection: string): unknown {
    return this.slot(domain, projection).store.reader();
  }

  deadLetters(filter?: DeadLetterFilter): Promise<DeadLetter[]> {
    return this.deps.deadLetters
      .list(filter)
      .then((letters) => letters.filter((l) => this.slots.has(`${l.domain}.${l.reactor}`)));
  }

  async replay(id: number): Promise<DeadLetter> {
    const { letter, slot } = await this.resolve(id);
    return slot.runner.replay(letter);
  }

  async discard(id: number): Promise<DeadLetter> {
    const { letter, slot } = await this.resolve(id);
    if (!slot.runner.running) {
      if (!(await this.deps.deadLetters.remove(id))) throw deadLetterNotFound(id, '');
      return letter;
    }
    return slot.runner.discard(letter);
  }

  abstract rebuild(domain: string, projection: string): Promise<RebuildStarted>;

  /** A slot by names; `UNKNOWN_PROJECTION` when there is none. */
  protected slot(domain: string, projection: string): ProjectionSlot {
    const slot = this.slots.get(`${domain}.${projection}`);
    if (slot === undefined) {
      const known = [...this.slots.keys()];
      throw new RejectionError(
        'UNKNOWN_PROJECTION',
        `No projection "${projection}" of domain "${domain}" is hosted here; ${known.length === 0 ? 'this node hosts none' : `known: ${known.join(', ')}`}.`,
        { details: { domain, projection, known } },
      );
    }
    return slot;
  }

  /** The dead letter and the slot of its projection. */
  protected async resolve(id: number): Promise<{ letter: DeadLetter; slot: ProjectionSlot }> {
    const letter = await this.deps.deadLetters.get(id);
    const slot = letter && this.slots.get(`${letter.domain}.${letter.reactor}`);
    if (letter === undefined || slot === undefined) {
      throw deadLetterNotFound(id, ' for a projection hosted here');
    }
    return { letter, slot };
  }

  /** Progress of one slot (hosts may add what only they know, e.g. the consumer's lag). */
  protected statsOf(slot: ProjectionSlot): ProjectionStats {
    return slot.runner.stats();
  }

  /** A store for a `kvReadModel` projection. */
  protected abstract documentStore(
    domain: DomainDefinition,
    projection: AnyProjectionDefinition,
    fingerprint: string,
  ): ReadModelStore<any, any>;
  /** Starts the projections. */
  protected abstract start(slots: readonly ProjectionSlot[]): Promise<void>;
  /** Stops them within `timeoutMs`. */
  protected abstract stop(timeoutMs: number): Promise<void>;
  /** Reads the commit a dead letter refers to. */
  protected abstract load(domain: DomainDefinition, deadLetter: DeadLetter): Promise<Commit>;

  #createStore(
    domain: DomainDefinition,
    projection: AnyProjectionDefinition,
  ): ReadModelStore<any, any> {
    const spec = projection.store as { kind: string };
    if (spec.kind === 'documents') {
      return this.documentStore(domain, projection, `v${projection.version}`);
    }
    const pg = spec as PostgresReadModel;
    const migration = createHash('sha256').update(pg.migrate.join('\n;\n')).digest('hex');
    const pool = pg.pool ?? this.#lazyPool(pg.connectionString);
    return new PostgresReadModelStore({
      pool,
      schema: pg.schema ?? projectionSchema(this.deps.prefix, domain.name, projection.name),
      migrate: pg.migrate,
      fingerprint: `v${projection.version}+${migration.slice(0, 12)}`,
    });
  }

  /** A pool opened on first use, shared by the projections on the same database. */
  #lazyPool(connectionString: string | undefined): PgPoolLike {
    const url =
      connectionString ??
      this.deps.options.databaseUrl ??
      (process.env.DATABASE_URL || undefined) ??
      DEFAULT_DATABASE_URL;
    const get = (): Promise<PgPoolLike> => {
      let pool = this.#pools.get(url);
      if (pool === undefined) {
        pool = openPostgresPool(url, Math.max(2, Math.min(10, this.slots.size + 2)));
        pool.catch(() => this.#pools.delete(url));
        this.#pools.set(url, pool);
      }
      return pool;
    };
    return {
      connect: async () => {
        try {
          return await (await get()).connect();
        } catch (error) {
          if (error instanceof ConfigError) throw error;
          throw new InfrastructureError(
            'READ_MODEL_FAILED',
            `Cannot connect to PostgreSQL at ${redact(url)}: ${String((error as Error).message ?? error)}. Is it running, and does the database exist?`,
            { cause: error },
          );
        }
      },
      end: async () => (await get()).end(),
    };
  }
}

/** A URL without its password, for messages. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(an invalid URL)';
  }
}
