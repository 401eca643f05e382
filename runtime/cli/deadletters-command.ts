import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import {
  InfrastructureError,
  describeError,
  errorFromJSON,
  isJetactorError,
  type ErrorJSON,
} from '../errors.js';
import { reactorControlSubject } from '../nats/subjects.js';
import type { DeadLetter } from '../reactors/dead-letter-store.js';
import { deadLetterNotFound } from '../reactors/reactor-dispatcher.js';
import { JetStreamDeadLetterStore } from '../reactors/jetstream-dead-letter-store.js';
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

const help = `Usage: jetactor deadletters list [--domain <domain>] [--reactor <reactor>] [options]
       jetactor deadletters replay <id> [options]
       jetactor deadletters discard <id> [options]

Events a reactor gave up on (after its last retry, or because they could not be read) are kept in
the stream <prefix>_deadletters, one record each.

  list      print them as JSON lines, oldest first: {"id","domain","reactor","subject",
            "sequence","aggregate","aggregateId","eventType","version","error":{"code",
            "message"},"attempts","poison","policy","time"}
  replay    run the event through its reactor again, on a running node that hosts the reactor
            (asked on <prefix>.rx.<domain>.<reactor>.replay); on success the record is removed
            and, with the 'wait' policy, the aggregate's later events go on
  discard   remove the record without running the event (through the hosting node when one
            runs, so a waiting aggregate goes on at once; else directly from the stream)

  jetactor deadletters list --reactor welcome
  jetactor deadletters replay 42

Options:
  --domain <domain>      list: only this domain's dead letters
  --reactor <reactor>    list: only this reactor's dead letters
  --timeout <ms>         replay, discard: wait this long for the node (default 30000;
                         env JETACTOR_TIMEOUT_MS)

${connectionHelp}
Exit codes: 0 success, 1 not found, failed again, or no node, 2 usage or configuration error.
`;

const fields: Record<string, FieldSource> = {
  ...connectionFields,
  timeoutMs: { flag: 'timeout', env: 'JETACTOR_TIMEOUT_MS' },
};

const schema = connectionSchema.extend({ timeoutMs: wholeNumber(10).default(30_000) });

const replySchema = z.object({
  ok: z.boolean(),
  deadLetter: z.custom<DeadLetter>((v) => typeof v === 'object' && v !== null).optional(),
  error: z
    .custom<ErrorJSON>((v) => typeof (v as ErrorJSON | undefined)?.code === 'string')
    .optional(),
});

/** `jetactor deadletters list|replay|discard`. */
export function deadlettersCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'deadletters', async () => {
    const args = parseCommandArgs(
      argv,
      {
        ...connectionFlags,
        domain: { type: 'string' },
        reactor: { type: 'string' },
        timeout: { type: 'string' },
      },
      help,
      io,
    );
    if (args === undefined) return 0;
    const [operation, idText, ...extra] = args.positionals;
    if (operation !== 'list' && operation !== 'replay' && operation !== 'discard') {
      throw new UsageError(
        `${operation === undefined ? 'say what to do' : `unknown operation ${JSON.stringify(operation)}`}: use list, replay <id> or discard <id>.`,
      );
    }
    if (operation === 'list' && idText !== undefined) {
      throw new UsageError(`list takes no id; got ${JSON.stringify(idText)}.`);
    }
    if (extra.length > 0) {
      throw new UsageError(`unexpected ${JSON.stringify(extra.join(' '))} after the id.`);
    }
    if (
      operation !== 'list' &&
      (args.values.domain !== undefined || args.values.reactor !== undefined)
    ) {
      throw new UsageError(`--domain and --reactor filter list; ${operation} takes only an id.`);
    }
    const id = operation === 'list' ? 0 : parseId(idText, operation);
    const config = await resolveConfig(schema, fields, args.values, io.env);
    const nc = await connectNats(config, `jetactor deadletters ${operation}`);
    const store = new JetStreamDeadLetterStore({ connection: nc, prefix: config.prefix });
    try {
      if (operation === 'list') {
        const filter = {
          ...(typeof args.values.domain === 'string' ? { domain: args.values.domain } : {}),
          ...(typeof args.values.reactor === 'string' ? { reactor: args.values.reactor } : {}),
        };
        for (const deadLetter of await store.list(filter)) {
          io.stdout.write(`${JSON.stringify(deadLetter)}\n`);
        }
        return 0;
      }
      const deadLetter = await store.get(id);
      if (deadLetter === undefined) throw deadLetterNotFound(id, '');
      const done = await ask(nc, config.prefix, deadLetter, operation, config.timeoutMs, store);
      io.stdout.write(`${JSON.stringify(done)}\n`);
      io.stderr.write(
        `${operation === 'replay' ? 'replayed' : 'discarded'} dead letter ${id} (${deadLetter.domain}.${deadLetter.reactor}, ${deadLetter.subject} #${deadLetter.sequence}).\n`,
      );
      return 0;
    } catch (error) {
      if (!isJetactorError(error) || error.kind === 'config') throw error;
      io.stderr.write(`error ${error.code}: ${error.message}\n`);
      return 1;
    } finally {
      await nc.close();
    }
  });
}

function parseId(text: string | undefined, operation: string): number {
  const id = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(id) || id <= 0) {
    throw new UsageError(
      `${text === undefined ? 'the id is missing' : `${JSON.stringify(text)} is not a dead letter id`}: ${operation} takes the number \`jetactor deadletters list\` prints as "id", e.g. jetactor deadletters ${operation} 42.`,
    );
  }
  return id;
}

/**
 * Asks the node hosting the dead letter's reactor to replay or discard it. With no node running,
 * a discard removes the record from the stream directly; a replay needs a node.
 */
async function ask(
  nc: NatsConnection,
  prefix: string,
  deadLetter: DeadLetter,
  operation: 'replay' | 'discard',
  timeoutMs: number,
  store: JetStreamDeadLetterStore,
): Promise<DeadLetter> {
  const subject = reactorControlSubject(prefix, deadLetter.domain, deadLetter.reactor, operation);
  let data: Uint8Array;
  try {
    const reply = await nc.request(subject, JSON.stringify({ id: deadLetter.id }), {
      timeout: timeoutMs,
    });
    data = reply.data;
  } catch (error) {
    const why = describeError(error);
    if (/no responders/i.test(why) || (error as Error).name === 'NoRespondersError') {
      if (operation === 'discard') {
        if (!(await store.remove(deadLetter.id))) throw deadLetterNotFound(deadLetter.id, '');
        return deadLetter;
      }
      throw new InfrastructureError(
        'REACTOR_UNAVAILABLE',
        `No running node hosts reactor "${deadLetter.reactor}" of domain "${deadLetter.domain}" under prefix "${prefix}" (nothing answers on ${subject}); start one (e.g. jetactor node <domain module>), then replay again.`,
        { cause: error },
      );
    }
    throw new InfrastructureError(
      'REACTOR_UNAVAILABLE',
      `The node hosting reactor "${deadLetter.reactor}" did not answer the ${operation} of dead letter ${deadLetter.id} within ${timeoutMs} ms (${why}); it may still be running the handler. Check with \`jetactor deadletters list\`, or give more --timeout.`,
      { cause: error },
    );
  }
  const reply = replySchema.safeParse(parseJson(data));
  if (!reply.success) {
    throw new InfrastructureError(
      'REACTOR_UNAVAILABLE',
      `The answer on ${subject} is not a dead-letter reply; is another program listening there?`,
    );
  }
  if (!reply.data.ok || reply.data.deadLetter === undefined) {
    throw reply.data.error === undefined
      ? new InfrastructureError('REACTOR_HANDLER_FAILED', `The node could not ${operation} it.`)
      : errorFromJSON(reply.data.error);
  }
  return reply.data.deadLetter;
}

function parseJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
