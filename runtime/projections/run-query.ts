import type { z } from 'zod';
import type { Clock } from '../clock.js';
import type { DomainDefinition } from '../domain/define-domain.js';
import type { AnyProjectionDefinition } from '../domain/define-projection.js';
import type { AnyQueryDefinition, QueryContext } from '../domain/define-query.js';
import { InfrastructureError, RejectionError, describeError, isJetactorError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ProjectionHost } from './projection-host.js';

/** Options of a query call. */
export interface QueryCallOptions {
  /**
   * Read-your-writes: answer only once the projections the query reads have applied the commit at
   * this position (`result.position` of a command of the same domain). Refused with the retryable
   * `PROJECTION_BEHIND` when they do not get there within `waitTimeoutMs`.
   */
  waitFor?: number;
  /** How long `waitFor` may wait, in milliseconds; default the node's `projections.waitTimeoutMs`. */
  waitTimeoutMs?: number;
}

/** What {@link runQuery} needs from the node. */
export interface QueryDeps {
  /** The node's projections. */
  projections: ProjectionHost;
  /** Clock given to handlers. */
  clock: Clock;
  /** Logger given to handlers. */
  logger: Logger;
  /** Default wait of `waitFor`. */
  waitTimeoutMs: number;
}

/**
 * Runs a query of a hosted domain: validates the input (`VALIDATION_FAILED`), waits for
 * `waitFor` (`PROJECTION_BEHIND`), runs the handler (`QUERY_FAILED` when it throws something
 * other than a `JetactorError`). Throws `UNKNOWN_QUERY` for a name the domain does not define.
 */
export async function runQuery(
  deps: QueryDeps,
  domain: DomainDefinition,
  name: string,
  input: unknown,
  options: QueryCallOptions = {},
): Promise<unknown> {
  const query: AnyQueryDefinition | undefined = Object.hasOwn(domain.queries, name)
    ? (domain.queries as Record<string, AnyQueryDefinition>)[name]
    : undefined;
  if (query === undefined) {
    const known = Object.keys(domain.queries);
    throw new RejectionError(
      'UNKNOWN_QUERY',
      `Domain "${domain.name}" has no query ${JSON.stringify(name)}; ${known.length === 0 ? 'it defines none (defineDomain({ queries }))' : `its queries: ${known.join(', ')}`}.`,
      { details: { query: name, known } },
    );
  }
  const parsed = (query.input as z.ZodType).safeParse(input ?? {});
  if (!parsed.success) {
    throw new RejectionError(
      'VALIDATION_FAILED',
      `Input of query ${domain.name}.${name} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(input)'}: ${i.message}`).join('; ')}.`,
      { details: { issues: parsed.error.issues } },
    );
  }
  const { waitFor } = options;
  if (waitFor !== undefined) {
    if (!Number.isSafeInteger(waitFor) || waitFor < 0) {
      throw new RejectionError(
        'VALIDATION_FAILED',
        `waitFor ${JSON.stringify(waitFor)} is not a position; give the whole number a command result carries as position.`,
        { details: { waitFor } },
      );
    }
    const timeoutMs = options.waitTimeoutMs ?? deps.waitTimeoutMs;
    const projections = query.projections ?? domain.projections;
    const results = await Promise.all(
      projections.map(async (projection) => ({
        projection,
        reached: await deps.projections.waitFor(domain.name, projection.name, waitFor, timeoutMs),
      })),
    );
    const behind = results.filter((r) => !r.reached).map((r) => r.projection.name);
    if (behind.length > 0) {
      const stats = deps.projections.stats();
      const at = behind.map((p) => `${p} at ${stats[`${domain.name}.${p}`]?.position ?? '?'}`);
      throw new InfrastructureError(
        'PROJECTION_BEHIND',
        `Query ${domain.name}.${name} waited ${timeoutMs} ms for position ${waitFor}, but projection ${at.join(', ')} did not get there; ask again later (check \`jetactor projection status\` when it persists).`,
        { details: { projection: behind[0], projections: behind, waitFor, timeoutMs } },
      );
    }
  }
  const logger = deps.logger.child({ query: `${domain.name}.${name}` });
  const ctx: QueryContext = {
    readModel: (projection: AnyProjectionDefinition) => {
      if (!domain.projections.includes(projection)) {
        throw new RejectionError(
          'UNKNOWN_PROJECTION',
          `Query ${domain.name}.${name} reads projection "${(projection as { name?: string } | undefined)?.name}", which is not a projection of domain "${domain.name}"; queries read their own domain's projections.`,
        );
      }
      return deps.projections.readModel(domain.name, projection.name) as never;
    },
    logger,
    clock: deps.clock,
  };
  try {
    return await query.handler(parsed.data, ctx);
  } catch (error) {
    if (isJetactorError(error)) throw error;
    throw new InfrastructureError(
      'QUERY_FAILED',
      `Query ${domain.name}.${name} failed: ${describeError(error)}.`,
      { cause: error },
    );
  }
}
