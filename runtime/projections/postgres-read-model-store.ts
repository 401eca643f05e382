import { ConfigError, DefinitionError, describeError } from '../errors.js';
import type { PgClientLike, PgPoolLike, SqlClient } from './read-model.js';
import {
  HandlerFailure,
  fenced,
  readModelFailed,
  runAll,
  type ApplyOptions,
  type ProjectionUnit,
  type ReadModelStore,
  type RunHandler,
} from './read-model-store.js';

/** The database a PostgreSQL read model uses when nothing else names one. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** Options of {@link PostgresReadModelStore}. */
export interface PostgresReadModelStoreOptions {
  /** Where to connect; the store never ends the pool. */
  pool: PgPoolLike;
  /** The projection's schema. */
  schema: string;
  /** The projection's migration statements. */
  migrate: readonly string[];
  /** Identifies the projection's version and migration: another one is dropped on open. */
  fingerprint: string;
}

const MAX_MARKS = 256;

class MigrationFailed extends Error {}

/**
 * A SQL read model in its own PostgreSQL schema. The schema holds the projection's tables (made by
 * its migration) and `jetactor_checkpoint`, one row: the position of the last applied commit, the
 * projection's fingerprint and the ids of dead letters replayed out of order.
 *
 * Each batch is one transaction: it locks the checkpoint row (`SELECT … FOR UPDATE`, which also
 * fences off a second writer: a position other than the one this node wrote stops it), runs the
 * handlers on the transaction's client, writes the new position and commits. Rows and checkpoint
 * are committed together or not at all, so a crash at any point never applies an event twice.
 */
export class PostgresReadModelStore implements ReadModelStore<{ sql: SqlClient }, SqlClient> {
  readonly kind = 'postgres' as const;
  readonly location: string;
  readonly #pool: PgPoolLike;
  readonly #options: PostgresReadModelStoreOptions;
  readonly #schema: string;

  constructor(options: PostgresReadModelStoreOptions) {
    this.#pool = options.pool;
    this.#options = options;
    this.#schema = quoteIdentifier(options.schema);
    this.location = `PostgreSQL schema ${options.schema}`;
  }

  async open(onReset?: (why: string) => void): Promise<number> {
    for (let round = 0; ; round++) {
      let outcome: { position: number } | { other: string };
      try {
        outcome = await this.#transaction(async (client) => {
          await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.#options.schema]);
          await client.query(`CREATE SCHEMA IF NOT EXISTS ${this.#schema}`);
          await client.query(`SET LOCAL search_path TO ${this.#schema}, public`);
          await client.query(
            `CREATE TABLE IF NOT EXISTS jetactor_checkpoint (
               id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
               position bigint NOT NULL,
               fingerprint text NOT NULL,
               marks jsonb NOT NULL DEFAULT '[]',
               updated_at timestamptz NOT NULL DEFAULT now())`,
          );
          const { rows } = await client.query(
            'SELECT position, fingerprint FROM jetactor_checkpoint',
          );
          const row = rows[0] as { position: string; fingerprint: string } | undefined;
          if (row !== undefined) {
            return row.fingerprint === this.#options.fingerprint
              ? { position: Number(row.position) }
              : { other: row.fingerprint };
          }
          for (const [index, statement] of this.#options.migrate.entries()) {
            try {
              await client.query(statement);
            } catch (error) {
              throw new MigrationFailed(
                `statement ${index + 1} of the migration (${JSON.stringify(statement.trim().slice(0, 80))}) failed: ${describeError(error)}`,
                { cause: error },
              );
            }
          }
          await client.query(
            'INSERT INTO jetactor_checkpoint (id, position, fingerprint) VALUES (1, 0, $1)',
            [this.#options.fingerprint],
          );
          return { position: 0 };
        });
      } catch (error) {
        if (error instanceof MigrationFailed) {
          throw new DefinitionError(
            'INVALID_DEFINITION',
            `Read model ${this.location}: ${error.message}. Fix the projection's migrate statements (they run in an empty schema, which leads the search path) and start the node again.`,
            { cause: error.cause },
          );
        }
        throw readModelFailed(this.location, 'opening', error);
      }
      if ('position' in outcome) return outcome.position;
      if (round > 0) {
        throw readModelFailed(
          this.location,
          'opening',
          new Error('another node keeps resetting it'),
        );
      }
      onReset?.(
        `the read model was built by projection version ${outcome.other}, this is ${this.#options.fingerprint}`,
      );
      await this.drop();
    }
  }

  async apply(
    units: readonly ProjectionUnit[],
    run: RunHandler<{ sql: SqlClient }>,
    options: ApplyOptions,
  ): Promise<'applied' | 'already'> {
    try {
      return await this.#transaction(async (client) => {
        await client.query(`SET LOCAL search_path TO ${this.#schema}, public`);
        const { rows } = await client.query(
          'SELECT position, marks FROM jetactor_checkpoint FOR UPDATE',
        );
        const row = rows[0] as { position: string; marks: number[] } | undefined;
        const position = row === undefined ? 0 : Number(row.position);
        if (row === undefined || position !== options.expected) {
          throw fenced(this.location, options.expected, position);
        }
        if (options.mark !== undefined && row.marks.includes(options.mark)) return 'already';
        await runAll(units, run, { sql: sqlClient(client) });
        const marks =
          options.mark === undefined ? row.marks : [...row.marks, options.mark].slice(-MAX_MARKS);
        await client.query(
          'UPDATE jetactor_checkpoint SET position = $1, marks = $2, updated_at = now()',
          [options.to, JSON.stringify(marks)],
        );
        return 'applied';
      });
    } catch (error) {
      if (error instanceof HandlerFailure) throw error;
      throw readModelFailed(this.location, 'writing a batch', error);
    }
  }

  async checkpoint(): Promise<number> {
    try {
      const client = await this.#pool.connect();
      try {
        const { rows } = await client.query(
          `SELECT position FROM ${this.#schema}.jetactor_checkpoint`,
        );
        return rows[0] === undefined ? 0 : Number((rows[0] as { position: string }).position);
      } finally {
        client.release();
      }
    } catch (error) {
      if ((error as { code?: unknown }).code === '42P01') return 0;
      throw readModelFailed(this.location, 'reading the checkpoint', error);
    }
  }

  reader(): SqlClient {
    return {
      query: async <Row>(text: string, values?: readonly unknown[]) => {
        await Promise.resolve();
        return this.#transaction(async (client) => {
          await client.query(`SET LOCAL search_path TO ${this.#schema}, public`);
          const result = await client.query(text, values === undefined ? undefined : [...values]);
          return { rows: result.rows as Row[], rowCount: result.rowCount };
        }, 'BEGIN READ ONLY');
      },
    };
  }

  async drop(): Promise<void> {
    try {
      await this.#transaction(async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.#options.schema]);
        await client.query(`DROP SCHEMA IF EXISTS ${this.#schema} CASCADE`);
      });
    } catch (error) {
      throw readModelFailed(this.location, 'dropping the schema', error);
    }
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  async #transaction<T>(fn: (client: PgClientLike) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query(begin);
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollback: unknown) => {
        broken = rollback instanceof Error ? rollback : new Error(String(rollback));
      });
      throw error;
    } finally {
      client.release(broken);
    }
  }
}

function sqlClient(client: PgClientLike): SqlClient {
  return {
    query: async <Row>(text: string, values?: readonly unknown[]) => {
      const result = await client.query(text, values === undefined ? undefined : [...values]);
      return { rows: result.rows as Row[], rowCount: result.rowCount };
    },
  };
}

/** `name` as a quoted SQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Opens a `pg.Pool` on `connectionString` (the `pg` package is loaded when first needed, so
 * applications without PostgreSQL read models do not need it).
 */
export async function openPostgresPool(connectionString: string, max = 4): Promise<PgPoolLike> {
  let pg: (typeof import('pg'))['default'];
  try {
    pg = (await import('pg')).default;
  } catch (error) {
    throw new ConfigError(
      `A projection keeps its read model in PostgreSQL, but the "pg" package cannot be loaded (${describeError(error)}); install it with npm install pg.`,
      { cause: error },
    );
  }
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000 });
  // An idle client that loses its connection emits an error on the pool; the next query fails
  // and is retried, so the event itself is only logged by whoever awaits that query.
  pool.on('error', () => undefined);
  return pool;
}
