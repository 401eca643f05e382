import type { NatsConnection } from '@nats-io/transport-node';
import { InfrastructureError, describeError, errorFromJSON, isJetactorError } from '../errors.js';
import { isIdentifier } from '../names.js';
import { projectionControlSubject, projectionStatusSubject } from '../nats/subjects.js';
import type {
  ProjectionControlReply,
  ProjectionStatusReply,
} from '../projections/jetstream-projections.js';
import type { ProjectionStatus } from '../projections/projection-host.js';
import { parseCommandArgs, runCommand, UsageError, type CliIO } from './cli-io.js';
import {
  connectNats,
  connectionFields,
  connectionFlags,
  connectionHelp,
  connectionSchema,
  resolveConfig,
  wholeNumber,
  type FieldSource,
} from './connection-config.js';

const help = `Usage: jetactor projection status [--domain <domain>] [options]
       jetactor projection rebuild <domain>.<projection> [options]

  status    asks every running node (on <prefix>.px.status) and prints one JSON line per
            projection: {"domain","projection","state","node","position","lag","applied",
            "retries","deadLetters","store","location"}; "node" is the node running it, "lag" the
            commits of the domain stored and not applied yet
  rebuild   asks the node running the projection (on <prefix>.px.<domain>.<projection>.rebuild)
            to drop its read model (KV bucket or PostgreSQL schema) and build it again from the
            start of the stream; shows the progress on stderr and prints the final status on
            stdout once it reached the end of the stream as it was when the rebuild started.
            Meanwhile queries see the read model as far as it got.

  jetactor projection status
  jetactor projection rebuild bank.balances

Options:
  --domain <domain>      status: only this domain's projections
  --timeout <ms>         wait this long for the nodes' answers (default 5000; env
                         JETACTOR_TIMEOUT_MS); rebuild waits for the whole rebuild regardless

${connectionHelp}
Exit codes: 0 success, 1 no node runs it or it failed, 2 usage or configuration error.
`;

const fields: Record<string, FieldSource> = {
  ...connectionFields,
  timeoutMs: { flag: 'timeout', env: 'JETACTOR_TIMEOUT_MS' },
};

const schema = connectionSchema.extend({ timeoutMs: wholeNumber(10).default(5_000) });

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One line of `jetactor projection status`. */
type StatusLine = ProjectionStatus & { node: string | null };

/** `jetactor projection status|rebuild`. */
export function projectionCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'projection', async () => {
    const args = parseCommandArgs(
      argv,
      { ...connectionFlags, domain: { type: 'string' }, timeout: { type: 'string' } },
      help,
      io,
    );
    if (args === undefined) return 0;
    const [operation, target, ...extra] = args.positionals;
    if (operation !== 'status' && operation !== 'rebuild') {
      throw new UsageError(
        `${operation === undefined ? 'say what to do' : `unknown operation ${JSON.stringify(operation)}`}: use status or rebuild <domain>.<projection>.`,
      );
    }
    if (extra.length > 0 || (operation === 'status' && target !== undefined)) {
      throw new UsageError(
        `unexpected ${JSON.stringify([target, ...extra].filter(Boolean).join(' '))}.`,
      );
    }
    const domainFilter = args.values.domain;
    if (operation === 'rebuild' && domainFilter !== undefined) {
      throw new UsageError('--domain filters status; rebuild takes <domain>.<projection>.');
    }
    let names: { domain: string; projection: string } | undefined;
    if (operation === 'rebuild') {
      const [domain = '', projection = '', ...rest] = (target ?? '').split('.');
      if (rest.length > 0 || !isIdentifier(domain) || !isIdentifier(projection)) {
        throw new UsageError(
          `${target === undefined ? 'name the projection' : `${JSON.stringify(target)} is not <domain>.<projection>`}; e.g. jetactor projection rebuild bank.balances.`,
        );
      }
      names = { domain, projection };
    }
    const config = await resolveConfig(schema, fields, args.values, io.env);
    const nc = await connectNats(config, `jetactor projection ${operation}`);
    try {
      if (names === undefined) {
        const lines = await status(nc, config.prefix, config.timeoutMs);
        const shown = lines.filter((l) => domainFilter === undefined || l.domain === domainFilter);
        if (shown.length === 0) {
          io.stderr.write(
            `no running node hosts ${domainFilter === undefined ? 'projections' : `projections of domain "${domainFilter}"`} under prefix "${config.prefix}".\n`,
          );
          return 1;
        }
        for (const line of shown) io.stdout.write(`${JSON.stringify(line)}\n`);
        return 0;
      }
      return await rebuild(nc, config.prefix, names.domain, names.projection, config.timeoutMs, io);
    } catch (error) {
      if (!isJetactorError(error) || error.kind === 'config') throw error;
      io.stderr.write(`error ${error.code}: ${error.message}\n`);
      return 1;
    } finally {
      await nc.close();
    }
  });
}

/** Every node's projections, one line per projection (the view of the node that runs it). */
async function status(
  nc: NatsConnection,
  prefix: string,
  timeoutMs: number,
): Promise<StatusLine[]> {
  const byKey = new Map<string, StatusLine>();
  let replies: AsyncIterable<{ data: Uint8Array }>;
  try {
    replies = await nc.requestMany(projectionStatusSubject(prefix), encoder.encode('{}'), {
      maxWait: timeoutMs,
      strategy: 'stall',
      stall: 300,
    });
  } catch (error) {
    if (/no responders/i.test(describeError(error))) return [];
    throw error;
  }
  try {
    for await (const reply of replies) {
      const body = parse(reply.data) as ProjectionStatusReply | undefined;
      if (!Array.isArray(body?.projections)) continue;
      for (const { leader, here, ...projection } of body.projections) {
        const key = `${projection.domain}.${projection.projection}`;
        const known = byKey.get(key);
        if (here) byKey.set(key, { ...projection, node: body.node });
        else if (known === undefined) byKey.set(key, { ...projection, node: leader ?? null });
      }
    }
  } catch (error) {
    if (!/no responders/i.test(describeError(error))) throw error;
  }
  return [...byKey.values()].sort((a, b) =>
    `${a.domain}.${a.projection}`.localeCompare(`${b.domain}.${b.projection}`),
  );
}

async function ask(
  nc: NatsConnection,
  subject: string,
  timeoutMs: number,
  key: string,
): Promise<ProjectionControlReply> {
  let data: Uint8Array;
  try {
    data = (await nc.request(subject, encoder.encode('{}'), { timeout: timeoutMs })).data;
  } catch (error) {
    const why = describeError(error);
    throw new InfrastructureError(
      'PROJECTION_UNAVAILABLE',
      /no responders/i.test(why) || (error as Error).name === 'NoRespondersError'
        ? `No running node runs projection "${key}" (nothing answers on ${subject}); start a node hosting its domain, check the names and --prefix (jetactor projection status lists them).`
        : `The node running projection "${key}" did not answer within ${timeoutMs} ms (${why}); give more --timeout.`,
      { cause: error },
    );
  }
  const reply = parse(data) as ProjectionControlReply | undefined;
  if (reply?.ok !== true) {
    throw reply?.error === undefined
      ? new InfrastructureError(
          'PROJECTION_UNAVAILABLE',
          `The answer on ${subject} is not a projection reply.`,
        )
      : errorFromJSON(reply.error);
  }
  return reply;
}

async function rebuild(
  nc: NatsConnection,
  prefix: string,
  domain: string,
  projection: string,
  timeoutMs: number,
  io: CliIO,
): Promise<number> {
  const key = `${domain}.${projection}`;
  const started = Date.now();
  const reply = await ask(
    nc,
    projectionControlSubject(prefix, domain, projection, 'rebuild'),
    Math.max(timeoutMs, 30_000),
    key,
  );
  const target = reply.rebuild?.target ?? 0;
  const tty = (io.stderr as { isTTY?: boolean }).isTTY === true;
  let shown = -1;
  const progress = (position: number, done: boolean) => {
    const ratio = target === 0 ? 1 : Math.min(1, position / target);
    const percent = Math.floor(ratio * 100);
    if (!tty && !done && percent < shown + 10) return;
    shown = percent;
    const width = 30;
    const filled = Math.round(ratio * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const line = `rebuilding ${key} [${bar}] ${String(percent).padStart(3)}% ${position}/${target} commits`;
    io.stderr.write(tty ? `\r${line}${done ? '\n' : ''}` : `${line}\n`);
  };
  let failures = 0;
  for (;;) {
    let status: ProjectionStatus | undefined;
    try {
      status = (
        await ask(
          nc,
          projectionControlSubject(prefix, domain, projection, 'status'),
          timeoutMs,
          key,
        )
      ).status;
      failures = 0;
    } catch (error) {
      // The projection may move to another node meanwhile; it goes on there from its checkpoint.
      failures += 1;
      if (failures > 10) throw error;
    }
    if (status !== undefined) {
      const done = status.position >= target;
      progress(Math.min(status.position, target), done);
      if (done) {
        io.stdout.write(`${JSON.stringify({ ...status, target, ms: Date.now() - started })}\n`);
        return 0;
      }
      if (status.state === 'blocked' || status.state === 'failed') {
        if (tty) io.stderr.write('\n');
        io.stderr.write(
          `projection ${key} is ${status.state} at ${status.position}${status.blockedBy === undefined ? '' : ` behind dead letter ${status.blockedBy} (jetactor deadletters list)`}${status.lastError === undefined ? '' : `: ${status.lastError}`}.\n`,
        );
        io.stdout.write(`${JSON.stringify({ ...status, target })}\n`);
        return 1;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function parse(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}
