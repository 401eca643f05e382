import {
  CommandHandler,
  type CommandHandlerResult,
  type EventStore,
} from '@event-driven-io/emmett';
import {
  getPostgreSQLEventStore,
  type PostgresEventStore,
} from '@event-driven-io/emmett-postgresql';
import pg from 'pg';
import type { BankContender } from '../contender.js';
import { decide, evolve, initialState, type Account, type AccountEvent } from '../emmett-bank.js';
import { forEachLimited } from '../load.js';

/** Where the Emmett contender's PostgreSQL is: `PGURL`, else `DATABASE_URL`, else local trust. */
export function postgresUrl(): string {
  return (
    process.env.PGURL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  );
}

/** The database the benchmark creates (dropped first) next to the one {@link postgresUrl} names. */
export const BENCH_DATABASE = 'jetactor_bench';

/** The URL of {@link BENCH_DATABASE} on the server of {@link postgresUrl}. */
export function benchDatabaseUrl(): string {
  const url = new URL(postgresUrl());
  url.pathname = `/${BENCH_DATABASE}`;
  return url.toString();
}

/**
 * Drops and creates {@link BENCH_DATABASE}; returns the server's version. Throws when the server
 * cannot be reached.
 */
export async function recreateBenchDatabase(): Promise<string> {
  const client = new pg.Client({ connectionString: postgresUrl(), connectionTimeoutMillis: 3_000 });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${BENCH_DATABASE}`);
    const result = await client.query<{ server_version: string }>('SHOW server_version');
    return result.rows[0]?.server_version ?? 'unknown';
  } finally {
    await client.end();
  }
}

const handle = CommandHandler<Account, AccountEvent>({
  evolve,
  initialState,
  mapToStreamId: (id) => `account-${id}`,
  retry: { onVersionConflict: true },
});

/**
 * The peer: Emmett with its PostgreSQL event store, used as its documentation shows
 * (`getPostgreSQLEventStore(connectionString)` with its defaults, one `CommandHandler` built from
 * the decider's `evolve` and `initialState`, each command handled as
 * `handle(eventStore, id, (state) => decide(command, state))`, retried on version conflicts).
 */
export class EmmettContender implements BankContender {
  readonly name: string;
  readonly #store: PostgresEventStore;

  private constructor(name: string, store: PostgresEventStore) {
    this.name = name;
    this.#store = store;
  }

  /** Why Emmett cannot run here (PostgreSQL unreachable), or undefined when it can. */
  static async unavailable(): Promise<string | undefined> {
    try {
      await recreateBenchDatabase();
      return undefined;
    } catch (error) {
      const where = new URL(postgresUrl());
      return `PostgreSQL at ${where.host} not reachable (${error instanceof Error ? error.message : String(error)}); set PGURL`;
    }
  }

  /** Recreates the bench database and opens Emmett's event store on it (schema created). */
  static async start(name: string): Promise<EmmettContender> {
    await recreateBenchDatabase();
    const store = getPostgreSQLEventStore(benchDatabaseUrl());
    await store.schema.migrate();
    return new EmmettContender(name, store);
  }

  async open(ids: readonly string[], concurrency: number): Promise<void> {
    await forEachLimited(ids, concurrency, (id) =>
      this.#handle(id, (state) =>
        decide({ type: 'Open', data: { owner: 'bench', overdraftLimit: 0 } }, state),
      ),
    );
  }

  async deposit(id: string, amount: number): Promise<{ balance: number }> {
    const result = await this.#handle(id, (state) =>
      decide({ type: 'Deposit', data: { amount } }, state),
    );
    return { balance: result.newState.balance };
  }

  async close(): Promise<void> {
    await this.#store.close();
  }

  #handle(
    id: string,
    decision: (state: Account) => AccountEvent,
  ): Promise<CommandHandlerResult<Account, AccountEvent, EventStore>> {
    return handle(this.#store, id, decision);
  }
}
