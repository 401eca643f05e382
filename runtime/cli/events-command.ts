import {
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerMessages,
  type StreamInfo,
} from '@nats-io/jetstream';
import { MsgpackCodec } from '../codec/msgpack-codec.js';
import { decodeEnvelope } from '../event-store/commit-envelope.js';
import { InfrastructureError, describeError } from '../errors.js';
import { isIdentifier, whyNotSubjectToken } from '../names.js';
import { domainEventSubjects, parseEventSubject, streamName } from '../nats/subjects.js';
import { parseCommandArgs, runCommand, UsageError, type CliIO } from './cli-io.js';
import {
  connectNats,
  connectionFields,
  connectionFlags,
  connectionHelp,
  connectionSchema,
  resolveConfig,
} from './connection-config.js';

const help = `Usage: jetactor events <domain> [--aggregate <Aggregate>] [--id <id>] [--follow] [options]

Prints the stored events of a domain, oldest first, one JSON line each ({"type","data","meta"}),
read directly from its JetStream stream <prefix>_<domain> (no node needs to run). Events are shown
as stored: older event versions are not upcast.

  jetactor events bank --aggregate Account --id acc-1
  jetactor events bank --follow        # keeps printing new events until Ctrl-C

Options:
  --aggregate <name>     only this aggregate type
  --id <id>              only this aggregate instance (needs --aggregate)
  --follow               after the stored events, wait for new ones until Ctrl-C

${connectionHelp}
Exit codes: 0 success, 1 no such stream or NATS failure, 2 usage or configuration error.
`;

/** `jetactor events <domain> [--aggregate X] [--id Y] [--follow]`. */
export function eventsCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'events', async () => {
    const args = parseCommandArgs(
      argv,
      {
        ...connectionFlags,
        aggregate: { type: 'string' },
        id: { type: 'string' },
        follow: { type: 'boolean' },
      },
      help,
      io,
    );
    if (args === undefined) return 0;
    const [domain, ...extra] = args.positionals;
    if (domain === undefined || !isIdentifier(domain)) {
      throw new UsageError(
        `${domain === undefined ? 'name the domain' : `${JSON.stringify(domain)} is not a domain name`}, e.g. jetactor events bank.`,
      );
    }
    if (extra.length > 0) {
      throw new UsageError(`unexpected ${JSON.stringify(extra.join(' '))} after the domain.`);
    }
    const aggregate = args.values.aggregate as string | undefined;
    const id = args.values.id as string | undefined;
    if (aggregate !== undefined && !isIdentifier(aggregate)) {
      throw new UsageError(`--aggregate ${JSON.stringify(aggregate)} is not an aggregate name.`);
    }
    if (id !== undefined && (aggregate === undefined || whyNotSubjectToken(id) !== undefined)) {
      throw new UsageError(
        aggregate === undefined
          ? '--id needs --aggregate (ids are unique per aggregate type).'
          : `--id ${JSON.stringify(id)} is not valid: ${whyNotSubjectToken(id)}.`,
      );
    }
    const follow = args.values.follow === true;
    const config = await resolveConfig(connectionSchema, connectionFields, args.values, io.env);
    const nc = await connectNats(config, 'jetactor events', { reconnect: follow });
    const name = streamName(config.prefix, domain);
    const all = domainEventSubjects(config.prefix, domain);
    const filter = aggregate === undefined ? all : `${all.slice(0, -1)}${aggregate}.${id ?? '>'}`;
    let messages: ConsumerMessages | undefined;
    const stop = () => {
      void messages?.close();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      const jsm = await jetstreamManager(nc);
      let info: StreamInfo;
      try {
        info = await jsm.streams.info(name, { subjects_filter: filter });
      } catch (error) {
        if (/stream not found/i.test(describeError(error))) {
          throw new InfrastructureError(
            'STORE_UNAVAILABLE',
            `There is no stream ${name}: no node has hosted domain "${domain}" with prefix "${config.prefix}" on this server. Check the domain name and --prefix.`,
            { cause: error },
          );
        }
        throw error;
      }
      const matching =
        aggregate === undefined
          ? info.state.messages
          : Object.values(info.state.subjects ?? {}).reduce((sum, n) => sum + n, 0);
      if (matching === 0 && !follow) return 0;
      const consumer = await jetstream(nc).consumers.get(name, {
        filter_subjects: filter,
        deliver_policy: DeliverPolicy.All,
      });
      const codec = new MsgpackCodec();
      messages = await consumer.consume({ max_messages: 512 });
      for await (const msg of messages) {
        const stream = parseEventSubject(config.prefix, msg.subject);
        if (stream !== undefined) {
          const { commit } = decodeEnvelope(
            codec,
            stream,
            { subject: msg.subject, sequence: msg.seq },
            msg.data,
          );
          for (const event of commit.events) io.stdout.write(`${JSON.stringify(event)}\n`);
        }
        if (!follow && msg.info.pending === 0) break;
      }
      return 0;
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await messages?.close();
      await nc.close();
    }
  });
}
