import PinoPretty from 'pino-pretty';
import { pino } from 'pino';
import { z } from 'zod';
import type { DomainDefinition } from '../domain/define-domain.js';
import { JetStreamEventStore } from '../event-store/jetstream-event-store.js';
import { KvSnapshotStore } from '../event-store/kv-snapshot-store.js';
import { loggerOptions, type Logger, type LogLevel } from '../logger.js';
import {
  CommandRouter,
  DEFAULT_FORWARD_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_PAYLOAD_BYTES,
} from '../messaging/command-router.js';
import { DEFAULT_LEASE_MS, DEFAULT_PARTITIONS } from '../node/partition-leases.js';
import { createNodeService } from '../messaging/node-service.js';
import { QueryServer } from '../messaging/query-server.js';
import type { Inspector } from '../inspector/inspector-server.js';
import { createNode } from '../node/domain-node.js';
import { commandSubject, domainCommandSubjects, domainViewSubjects } from '../nats/subjects.js';
import { UsageError, packageVersion, parseCommandArgs, runCommand, type CliIO } from './cli-io.js';
import {
  connectNats,
  connectionFields,
  connectionFlags,
  connectionHelp,
  connectionSchema,
  displayServers,
  resolveConfig,
  wholeNumber,
  type FieldSource,
} from './connection-config.js';
import { exampleCommand } from './example-command.js';
import {
  inspectFlags,
  inspectHelp,
  inspectOptions,
  startCliInspector,
  withInspectDefault,
} from './inspect-option.js';
import { loadDomains } from './load-domains.js';

const help = `Usage: jetactor node <domain modules…> [options]

Runs a node hosting the domains of the given modules (built .js files exporting domains made with
defineDomain, or "flight" / "bank" for the bundled ones) on NATS JetStream: creates or checks the
domains' streams, then serves commands on <prefix>.cmd.<domain>.<Aggregate>.<id>.<command> and
state on <prefix>.view.<domain>.<Aggregate>.<id>, in a queue group per domain, so every node
started on the same domains shares the load. Answers the NATS service protocol ($SRV.PING,
$SRV.INFO, $SRV.STATS; service name = the prefix), so "nats micro ls" lists it.

SIGINT or SIGTERM stops it gracefully: it stops taking commands, finishes those in flight (up to
--shutdown-timeout), passivates actors, drains the connection and exits 0. A second signal exits
at once (130 for SIGINT, 143 for SIGTERM). Logs (pino) go to stdout: pretty on a terminal, JSON
lines otherwise; one line per lifecycle event at info, one per command at debug.

Node options:
  --shutdown-timeout <ms>  time to finish in-flight commands when stopping (default 10000;
                           env JETACTOR_SHUTDOWN_TIMEOUT_MS)
  --max-in-flight <n>      commands executing at once; beyond it requests get the retryable
                           OVERLOADED (default ${DEFAULT_MAX_IN_FLIGHT}; env JETACTOR_MAX_IN_FLIGHT)
  --max-payload <bytes>    largest command body accepted (default ${DEFAULT_MAX_PAYLOAD_BYTES};
                           env JETACTOR_MAX_PAYLOAD_BYTES)
  --partitions <n>         partition affinity: partitions per domain, owned by the nodes through
                           leases; a node forwards a command to the owner of its partition
                           (default ${DEFAULT_PARTITIONS}, the same on every node; 0 turns affinity off;
                           env JETACTOR_PARTITIONS)
  --lease-time <ms>        lease time: a dead node's partitions, projections and reactors move
                           to other nodes after about this long (default ${DEFAULT_LEASE_MS}, the
                           same on every node; env JETACTOR_LEASE_MS)
  --node-id <id>           this node's id in the lease buckets, unique per process (default
                           <host>-<pid>-<random>; env JETACTOR_NODE_ID)
  --forward-timeout <ms>   wait this long for the owner, then serve a forwarded command here
                           (default ${DEFAULT_FORWARD_TIMEOUT_MS}; env JETACTOR_FORWARD_TIMEOUT_MS)
  --reactor-ack-wait <ms>  reactors: how long the server waits for an event's acknowledgement
                           before it hands the event to another listener, e.g. after this node
                           died (default 30000; env JETACTOR_REACTOR_ACK_WAIT_MS)
  --redact-payloads        log "[redacted]" for error details and data fields, which may hold
                           event and command data (env JETACTOR_REDACT_PAYLOADS=1); credentials
                           are never logged
  The config file may also hold "domains": [modules…], used when none is given here, and the
  options above as shutdownTimeoutMs, maxInFlight, maxPayloadBytes, partitions, leaseMs, nodeId,
  forwardTimeoutMs, reactorAckWaitMs, redactPayloads.

${inspectHelp}
${connectionHelp}
Exit codes: 0 stopped by a signal, 1 runtime failure (NATS unreachable, stream conflict),
2 usage or configuration error.
`;

const nodeFields: Record<string, FieldSource> = {
  ...connectionFields,
  domains: {},
  shutdownTimeoutMs: { flag: 'shutdown-timeout', env: 'JETACTOR_SHUTDOWN_TIMEOUT_MS' },
  maxInFlight: { flag: 'max-in-flight', env: 'JETACTOR_MAX_IN_FLIGHT' },
  maxPayloadBytes: { flag: 'max-payload', env: 'JETACTOR_MAX_PAYLOAD_BYTES' },
  partitions: { flag: 'partitions', env: 'JETACTOR_PARTITIONS' },
  leaseMs: { flag: 'lease-time', env: 'JETACTOR_LEASE_MS' },
  nodeId: { flag: 'node-id', env: 'JETACTOR_NODE_ID' },
  forwardTimeoutMs: { flag: 'forward-timeout', env: 'JETACTOR_FORWARD_TIMEOUT_MS' },
  reactorAckWaitMs: { flag: 'reactor-ack-wait', env: 'JETACTOR_REACTOR_ACK_WAIT_MS' },
  redactPayloads: { flag: 'redact-payloads', env: 'JETACTOR_REDACT_PAYLOADS' },
};

const nodeSchema = connectionSchema.extend({
  domains: z.array(z.string().min(1)).default([]),
  shutdownTimeoutMs: wholeNumber(0).default(10_000),
  maxInFlight: wholeNumber(1).default(DEFAULT_MAX_IN_FLIGHT),
  maxPayloadBytes: wholeNumber(1).default(DEFAULT_MAX_PAYLOAD_BYTES),
  partitions: wholeNumber(0, 1024).default(DEFAULT_PARTITIONS),
  leaseMs: wholeNumber(250, 600_000).default(DEFAULT_LEASE_MS),
  nodeId: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, "_" or "-"')
    .optional(),
  forwardTimeoutMs: wholeNumber(10, 600_000).default(DEFAULT_FORWARD_TIMEOUT_MS),
  reactorAckWaitMs: wholeNumber(100, 3_600_000).default(30_000),
  redactPayloads: z
    .union([z.boolean(), z.enum(['1', 'true', 'yes', '0', 'false', 'no'])])
    .transform((value) => value === true || value === '1' || value === 'true' || value === 'yes')
    .default(false),
});

/** `jetactor node <domain modules…>`: a node process serving commands over NATS. */
export function nodeCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'node', async () => {
    const args = parseCommandArgs(
      withInspectDefault(argv),
      {
        ...connectionFlags,
        'shutdown-timeout': { type: 'string' },
        'max-in-flight': { type: 'string' },
        'max-payload': { type: 'string' },
        partitions: { type: 'string' },
        'lease-time': { type: 'string' },
        'node-id': { type: 'string' },
        'forward-timeout': { type: 'string' },
        'reactor-ack-wait': { type: 'string' },
        'redact-payloads': { type: 'boolean' },
        ...inspectFlags,
      },
      help,
      io,
    );
    if (args === undefined) return 0;
    const config = await resolveConfig(nodeSchema, nodeFields, args.values, io.env);
    const specs = args.positionals.length > 0 ? args.positionals : config.domains;
    if (specs.length === 0) {
      throw new UsageError(
        'name at least one domain module, e.g. "jetactor node bank" or "jetactor node dist/my-domain.js".',
      );
    }
    const domains = await loadDomains(specs);
    const inspect = inspectOptions(args.values);
    const level: LogLevel = config.logLevel ?? 'info';
    const logger = nodeLogger(level, config.redactPayloads, io.stdoutIsTTY);
    const names = domains.map((d) => d.name);
    const nc = await connectNats(config, `jetactor node ${names.join(',')}`, { reconnect: true });
    logger.info(
      { server: nc.getServer(), serverVersion: nc.info?.version, prefix: config.prefix },
      'connected',
    );
    let signals = 0;
    let resolveStop: (why: string) => void = () => undefined;
    const stopRequested = new Promise<string>((resolve) => (resolveStop = resolve));
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals === 1) {
        resolveStop(signal);
        return;
      }
      io.stderr.write(`jetactor node: ${signal} again; exiting at once.\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    nc.closed()
      .then((error) => resolveStop(`connection closed${error ? `: ${error.message}` : ''}`))
      .catch(() => undefined);
    let inspector: Inspector | undefined;
    try {
      const store = await JetStreamEventStore.open({
        connection: nc,
        prefix: config.prefix,
        logger,
      });
      const snapshots = new KvSnapshotStore({ connection: nc, prefix: config.prefix });
      const node = createNode({
        domains,
        store,
        snapshots,
        // The node's own start/stop lines repeat the lifecycle lines below; keep them for debug.
        logger: level === 'info' ? logger.child({}, { level: 'warn' }) : logger,
        // A dead node's projections and reactors move to another node after the same lease time.
        projections: { leaseMs: config.leaseMs },
        reactors: { ackWaitMs: config.reactorAckWaitMs },
        ...(config.nodeId === undefined ? {} : { nodeId: config.nodeId }),
      });
      await node.start();
      if (inspect !== undefined) {
        inspector = await startCliInspector(node, inspect, {
          logger,
          title: `${names.join(', ')} on NATS at ${displayServers(config)}`,
          out: io.stderr,
          command: 'node',
        });
      }
      logger.info(
        { domains: names, streams: names.map((d) => store.streamName(d)) },
        'streams ready',
      );
      const router = new CommandRouter({
        node,
        connection: nc,
        prefix: config.prefix,
        maxInFlight: config.maxInFlight,
        maxPayloadBytes: config.maxPayloadBytes,
        logger,
        affinity:
          config.partitions === 0
            ? false
            : {
                partitions: config.partitions,
                leaseMs: config.leaseMs,
                forwardTimeoutMs: config.forwardTimeoutMs,
                nodeId: node.id,
                // Lease lifecycle lines repeat the node's; keep them for debug.
                logger: level === 'info' ? logger.child({}, { level: 'warn' }) : logger,
              },
      });
      await router.start();
      const queries = new QueryServer({
        node,
        connection: nc,
        prefix: config.prefix,
        maxPayloadBytes: config.maxPayloadBytes,
        logger,
      });
      await queries.start();
      const service = createNodeService({
        connection: nc,
        node,
        router,
        prefix: config.prefix,
        version: packageVersion(),
        logger,
        queries,
      });
      await service.start();
      logger.info(
        {
          subjects: [...router.subjects, ...queries.subjects],
          service: service.name,
          serviceId: service.id,
          ...(router.nodeId === undefined
            ? { affinity: false }
            : { nodeId: router.nodeId, partitions: config.partitions, leaseMs: config.leaseMs }),
        },
        'listening',
      );
      io.stderr.write(
        banner(config.prefix, displayServers(config), domains, service.name, router.nodeId),
      );

      const why = await stopRequested;
      await inspector?.close();
      const started = Date.now();
      const left = () => Math.max(0, config.shutdownTimeoutMs - (Date.now() - started));
      logger.info({ reason: why, timeoutMs: config.shutdownTimeoutMs }, 'stopping');
      const { inFlight } = await router.stop(left());
      await queries.stop(left());
      const { interrupted } = await node.stop(left());
      // Appends still in flight (only after a timeout) finish or fail here; then every request
      // taken has its reply.
      await store.close();
      await router.settled();
      await service.stop();
      if (!nc.isClosed()) await nc.drain();
      logger.info({ interrupted, unfinishedAtTimeout: inFlight }, 'stopped');
      if (why.startsWith('connection closed')) {
        io.stderr.write(`jetactor node: the NATS ${why}.\n`);
        return 1;
      }
      return 0;
    } catch (error) {
      await inspector?.close();
      if (!nc.isClosed()) await nc.close();
      throw error;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      logger.flush();
    }
  });
}

/** pino on stdout: pretty on a terminal, JSON lines otherwise; credentials (and payloads if asked) redacted. */
function nodeLogger(level: LogLevel, redactPayloads: boolean, pretty: boolean): Logger {
  const options = loggerOptions({ level, redactPayloads });
  if (pretty) {
    return pino(
      options,
      PinoPretty({ destination: 1, colorize: true, sync: true, ignore: 'pid,hostname' }),
    );
  }
  return pino(options, pino.destination({ fd: 1, sync: true }));
}

function banner(
  prefix: string,
  server: string,
  domains: readonly DomainDefinition[],
  service: string,
  nodeId: string | undefined,
): string {
  const example = exampleCommand(domains);
  const subject = commandSubject(
    prefix,
    { domain: example.domain, aggregate: example.aggregate, id: 'demo-1' },
    example.command,
  );
  const connection = `--nats ${server}${prefix === 'jetactor' ? '' : ` --prefix ${prefix}`}`;
  const lines = [
    `jetactor node: hosting ${domains.map((d) => `${d.name} (${Object.keys(d.aggregates).join(', ')})`).join('; ')} on NATS at ${server}.`,
    'Serving, in one queue group per domain (start more nodes to share the load):',
    ...domains.flatMap((d) => [
      `  ${domainCommandSubjects(prefix, d.name)}   commands: ${prefix}.cmd.${d.name}.<Aggregate>.<id>.<command>`,
      `  ${domainViewSubjects(prefix, d.name)}  state:    ${prefix}.view.${d.name}.<Aggregate>.<id>`,
    ]),
    ...domains
      .filter((d) => Object.keys(d.queries).length > 0)
      .map(
        (d) =>
          `  ${prefix}.qry.${d.name}.*   queries: ${Object.keys(d.queries).join(', ')} (jetactor query ${d.name}.<name> [json])`,
      ),
    ...domains
      .filter((d) => d.projections.length > 0)
      .map(
        (d) =>
          `  projections of ${d.name}: ${d.projections.map((p) => p.name).join(', ')} (one node runs each; jetactor projection status)`,
      ),
    `  $SRV.PING|INFO|STATS.${service}   NATS service protocol (nats micro ls)`,
    nodeId === undefined
      ? 'Partition affinity is off: every node serves whatever command it receives.'
      : `Partition affinity on, as node ${nodeId}: commands for partitions other nodes own are forwarded to them (${prefix}.fwd.<domain>.<partition>).`,
    'Try:',
    `  nats req ${subject} '${example.input}' --server ${server}`,
    `  jetactor send ${example.domain}.${example.aggregate}.demo-1 ${example.command} '${example.input}' ${connection}`,
    `  jetactor state ${example.domain}.${example.aggregate}.demo-1 ${connection}`,
    'Ctrl-C stops it gracefully.',
  ];
  return `${lines.join('\n')}\n`;
}
