import { z } from 'zod';
import { DefinitionError } from '../errors.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';

/**
 * Where a projection keeps its read model, as plain data in its definition: {@link kvReadModel}
 * (documents in a NATS KV bucket, the default) or {@link postgresReadModel} (SQL tables). The node
 * that runs the projection opens the store with its own connections.
 *
 * `W` is what handlers get besides the event (`{ documents }` or `{ sql }`), `R` what queries get
 * from `ctx.readModel(projection)`.
 */
export interface ReadModelSpec<W = unknown, R = unknown> {
  /** Which store. */
  readonly kind: 'documents' | 'postgres';
  /** Carries the handler and query types; never set at run time. */
  readonly types?: { readonly write: W; readonly read: R };
}

/** Any read-model spec. */
export type AnyReadModelSpec = ReadModelSpec<any, any>;

/** What handlers of a projection with this store get besides the event. */
export type ReadModelWriter<S> = S extends { readonly types?: { readonly write: infer W } }
  ? W
  : never;

/** What queries get from `ctx.readModel(projection)` for a projection with this store. */
export type ReadModelReader<S> = S extends { readonly types?: { readonly read: infer R } }
  ? R
  : never;

/** Documents as a projection handler writes them (one atomic batch per group of commits). */
export interface DocumentWriter<D> {
  /** The document under `key`, as the batch sees it (its own writes included); undefined when none. */
  get(key: string): Promise<D | undefined>;
  /** Writes a document (validated with the store's `document` schema when it has one). */
  put(key: string, document: D): Promise<void>;
  /** Removes a document; nothing happens when there is none. */
  delete(key: string): Promise<void>;
}

/** Documents as a query reads them. */
export interface DocumentReader<D> {
  /** The document under `key`; undefined when none. */
  get(key: string): Promise<D | undefined>;
  /** Every key, in no particular order. */
  keys(): Promise<string[]>;
  /** Every document with its key (reads the whole read model: for small ones). */
  list(): Promise<{ key: string; document: D }[]>;
}

/** A query result of {@link SqlClient.query}. */
export interface SqlResult<Row> {
  /** The rows. */
  rows: Row[];
  /** Rows inserted, updated or deleted (or returned), when the server says. */
  rowCount: number | null;
}

/**
 * SQL on a projection's PostgreSQL schema (the schema is first on the search path, so tables are
 * named without it). In handlers it runs inside the batch's transaction; in queries each call is
 * its own read-only transaction.
 */
export interface SqlClient {
  /** Runs one statement with `$1`, `$2`, … parameters. */
  query<Row = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
  ): Promise<SqlResult<Row>>;
}

/** The part of a `pg` client the PostgreSQL read model uses. */
export interface PgClientLike {
  /** Runs a statement. */
  query(text: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>;
  /** Gives the client back to its pool (destroys it when given an error). */
  release(error?: Error | boolean): void;
}

/** The part of a `pg.Pool` the PostgreSQL read model uses. */
export interface PgPoolLike {
  /** A client of its own, for one transaction. */
  connect(): Promise<PgClientLike>;
  /** Closes the pool. */
  end(): Promise<void>;
}

/** Options of {@link kvReadModel}. */
export interface KvReadModelOptions<D> {
  /**
   * zod schema of the documents: gives them their type and is checked on every `put` (a document
   * that fails it fails the handler, which is retried and then dead-lettered). Default: any JSON.
   */
  document?: z.ZodType<D>;
  /** Replicas of the bucket; default 1 (more needs nats-server 2.9.21+ and a cluster). */
  replicas?: number;
}

/** A read model of JSON documents by key: a NATS KV bucket (in memory on an in-memory node). */
export interface DocumentReadModel<D = unknown> extends ReadModelSpec<
  { documents: DocumentWriter<D> },
  DocumentReader<D>
> {
  readonly kind: 'documents';
  /** Schema checked on every put, if any. */
  readonly document: z.ZodType<D> | undefined;
  /** Bucket replicas. */
  readonly replicas: number;
}

/**
 * Documents in the NATS KV bucket `<prefix>_rm_<domain>_<projection>` (the default store; needs
 * nothing but the node's NATS connection). Handlers get `ctx.documents` (`get`, `put`, `delete`);
 * queries get `get`, `keys` and `list`. Each batch of commits is applied atomically in effect: its
 * writes and the new checkpoint are first recorded in one redo record, so a crash between
 * writing documents and the checkpoint is repaired by redoing the same writes, never by applying
 * the events again.
 *
 * @example kvReadModel({ document: z.object({ owner: z.string(), balance: z.number() }) })
 */
export function kvReadModel<D = unknown>(
  options: KvReadModelOptions<D> = {},
): DocumentReadModel<D> {
  const knownOptions = ['document', 'replicas'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `kvReadModel: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  const replicas = options.replicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `kvReadModel: replicas ${JSON.stringify(options.replicas)} is not valid; use 1 to 5.`,
    );
  }
  if (options.document !== undefined && typeof options.document.safeParse !== 'function') {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      'kvReadModel: document must be a zod schema, e.g. z.object({ balance: z.number() }).',
    );
  }
  return Object.freeze({ kind: 'documents', document: options.document, replicas });
}

/** Options of {@link postgresReadModel}. */
export interface PostgresReadModelOptions {
  /**
   * The projection's own migration: SQL statements that create its tables and indexes in an empty
   * schema, e.g. `CREATE TABLE balances (owner text PRIMARY KEY, balance bigint NOT NULL)`. They
   * run once, in one transaction with the checkpoint table; when they change (or the projection's
   * `version` does), the read model is dropped and rebuilt from the start of the stream.
   */
  migrate: string | readonly string[];
  /**
   * The schema holding the tables; default `<prefix>_rm_<domain>_<projection>` in lower case.
   * Handlers and queries name tables without it (it leads the search path). A rebuild drops it.
   */
  schema?: string;
  /**
   * Where the database is: a `postgres://` URL. Default the node's `projections.databaseUrl`, else
   * `DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`.
   */
  connectionString?: string;
  /** A `pg.Pool` (or compatible) to use instead of one the node opens; the node never ends it. */
  pool?: PgPoolLike;
}

/** A SQL read model in PostgreSQL. */
export interface PostgresReadModel extends ReadModelSpec<{ sql: SqlClient }, SqlClient> {
  readonly kind: 'postgres';
  /** The migration's statements. */
  readonly migrate: readonly string[];
  /** The schema, when not the default. */
  readonly schema: string | undefined;
  /** The database URL, when given. */
  readonly connectionString: string | undefined;
  /** A pool given by the application. */
  readonly pool: PgPoolLike | undefined;
}

const schemaName = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Tables in PostgreSQL (through the `pg` package, which the application installs). Handlers get
 * `ctx.sql`, a client inside the batch's transaction; the checkpoint row
 * (`jetactor_checkpoint` in the projection's schema) is written in the same transaction, so rows
 * and checkpoint commit together or not at all.
 *
 * @example postgresReadModel({ migrate: 'CREATE TABLE balances (owner text PRIMARY KEY, balance bigint NOT NULL)' })
 */
export function postgresReadModel(options: PostgresReadModelOptions): PostgresReadModel {
  const knownOptions = ['migrate', 'schema', 'connectionString', 'pool'];
  const unknown = unknownOptions(options, knownOptions);
  if (unknown.length > 0) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `postgresReadModel: ${describeUnknownOptions(unknown, knownOptions)}.`,
      { details: { unknown } },
    );
  }
  const migrate = typeof options.migrate === 'string' ? [options.migrate] : options.migrate;
  if (
    !Array.isArray(migrate) ||
    migrate.length === 0 ||
    migrate.some((statement) => typeof statement !== 'string' || statement.trim() === '')
  ) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `postgresReadModel: migrate must be the SQL that creates the projection's tables (a string or an array of statements); got ${JSON.stringify(options.migrate)}.`,
    );
  }
  if (options.schema !== undefined && !schemaName.test(options.schema)) {
    throw new DefinitionError(
      'INVALID_NAME',
      `postgresReadModel: schema ${JSON.stringify(options.schema)} is not valid: use 1 to 63 lower-case letters, digits or "_", starting with a letter or "_".`,
    );
  }
  if (options.connectionString !== undefined) {
    const url = z.url({ protocol: /^postgres(ql)?$/ }).safeParse(options.connectionString);
    if (!url.success) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        'postgresReadModel: connectionString must be a postgres:// URL, e.g. postgres://postgres@127.0.0.1:5432/postgres.',
      );
    }
  }
  return Object.freeze({
    kind: 'postgres',
    migrate: Object.freeze([...migrate]),
    schema: options.schema,
    connectionString: options.connectionString,
    pool: options.pool,
  });
}
