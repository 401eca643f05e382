import pg from 'pg';
import { DEFAULT_DATABASE_URL } from '../../runtime/index.js';

/** The database the tests use, on the server of `DATABASE_URL`; {@link testPool} creates it. */
export const TEST_DATABASE = process.env.JETACTOR_TEST_DATABASE || 'jetactor_test';

/**
 * URL of the test database: `JETACTOR_TEST_DATABASE_URL`, else the server of `DATABASE_URL`
 * (default `postgres://postgres@127.0.0.1:5432/postgres`) with database {@link TEST_DATABASE}.
 */
export function testDatabaseUrl(): string {
  const explicit = process.env.JETACTOR_TEST_DATABASE_URL;
  if (explicit) return explicit;
  const url = new URL(process.env.DATABASE_URL || DEFAULT_DATABASE_URL);
  url.pathname = `/${TEST_DATABASE}`;
  return url.toString();
}

/** Creates {@link TEST_DATABASE} on the server of `DATABASE_URL` when it is missing. */
async function ensureTestDatabase(): Promise<void> {
  if (process.env.JETACTOR_TEST_DATABASE_URL) return;
  const server = new pg.Client({
    connectionString: process.env.DATABASE_URL || DEFAULT_DATABASE_URL,
    connectionTimeoutMillis: 5_000,
  });
  await server.connect();
  try {
    const { rows } = await server.query('SELECT 1 FROM pg_database WHERE datname = $1', [
      TEST_DATABASE,
    ]);
    if (rows.length > 0) return;
    await server
      .query(`CREATE DATABASE "${TEST_DATABASE.replaceAll('"', '""')}"`)
      .catch((error: { code?: string }) => {
        // Another test file created it in the meantime.
        if (error.code !== '42P04' && error.code !== '23505') throw error;
      });
  } finally {
    await server.end();
  }
}

/**
 * A pool on the test database, created first when missing. Fails (never skips) when PostgreSQL
 * cannot be reached, saying how to fix it. Call `end()` in `afterAll`.
 */
export async function testPool(): Promise<pg.Pool> {
  try {
    await ensureTestDatabase();
  } catch (error) {
    throw new Error(
      `The projection tests need PostgreSQL (${process.env.DATABASE_URL || DEFAULT_DATABASE_URL}): ${(error as Error).message}. Start it, or set DATABASE_URL / JETACTOR_TEST_DATABASE_URL.`,
      { cause: error },
    );
  }
  const pool = new pg.Pool({ connectionString: testDatabaseUrl(), max: 4 });
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end();
    throw new Error(
      `The projection tests need PostgreSQL with the database ${TEST_DATABASE} (${testDatabaseUrl()}): ${(error as Error).message}. Set DATABASE_URL / JETACTOR_TEST_DATABASE_URL to a database the tests may use.`,
      { cause: error },
    );
  }
  return pool;
}

/** Drops schemas (with everything in them); for afterAll. */
export async function dropSchemas(pool: pg.Pool, schemas: Iterable<string>): Promise<void> {
  for (const schema of schemas) {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema.replaceAll('"', '""')}" CASCADE`);
  }
}
