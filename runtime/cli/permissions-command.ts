import { z } from 'zod';
import { isIdentifier } from '../names.js';
import { natsAuthorization, roleUsers } from '../nats/nats-permissions.js';
import { DEFAULT_PREFIX } from '../nats/subjects.js';
import { UsageError, parseCommandArgs, runCommand, type CliIO } from './cli-io.js';
import { resolveConfig } from './connection-config.js';
import { loadDomains } from './load-domains.js';

const help = `Usage: jetactor permissions <domain modules…> [--prefix <name>]

Prints a nats-server "authorization" block with one user per role, for the domains of the given
modules (built .js files exporting domains, or "flight" / "bank" for the bundled ones):

  admin          every subject (the nats CLI, jetactor events, projection, deadletters)
  client         commands, queries and state requests (<prefix>.cmd|qry|view.>) and their
                 replies on its inbox _INBOX_client; nothing else
  <domain>-node  one per domain: its stream, its buckets, its subjects, the dead letters of
                 its reactors, the service protocol ($SRV) and its inbox _INBOX_<domain>-node

Paste it into the server's nats.conf and set the passwords in the server's environment
(NATS_ADMIN_PASSWORD, NATS_CLIENT_PASSWORD, NATS_<DOMAIN>_NODE_PASSWORD). Users other than admin
connect with their inbox prefix, e.g.

  jetactor node bank --user bank-node --password … --inbox-prefix _INBOX_bank-node
  jetactor send bank.Account.a-1 open '{"owner":"ann"}' --user client --password … \\
    --inbox-prefix _INBOX_client

docs/security.md explains each permission, nkeys instead of passwords, and TLS.

Options:
  --prefix <name>   subject, stream and bucket prefix of the nodes (env JETACTOR_PREFIX; default
                    ${DEFAULT_PREFIX})
`;

const schema = z.object({
  prefix: z
    .string()
    .refine(isIdentifier, {
      message:
        'must be letters, digits, "_" or "-", starting with a letter (it names subjects and streams)',
    })
    .default(DEFAULT_PREFIX),
});

/** `jetactor permissions <domain modules…>`: the NATS users and permissions of each role. */
export function permissionsCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'permissions', async () => {
    const args = parseCommandArgs(argv, { prefix: { type: 'string' } }, help, io);
    if (args === undefined) return 0;
    if (args.positionals.length === 0) {
      throw new UsageError(
        'name at least one domain module, e.g. "jetactor permissions bank" or "jetactor permissions dist/my-domain.js".',
      );
    }
    const config = await resolveConfig(
      schema,
      { prefix: { flag: 'prefix', env: 'JETACTOR_PREFIX' } },
      args.values,
      io.env,
    );
    const domains = await loadDomains(args.positionals);
    io.stdout.write(
      `# NATS users of jetactor's roles for domain${domains.length > 1 ? 's' : ''} ${domains.map((d) => d.name).join(', ')}, prefix ${config.prefix}\n` +
        `# (jetactor permissions ${args.positionals.join(' ')}${config.prefix === DEFAULT_PREFIX ? '' : ` --prefix ${config.prefix}`}). Passwords come from the server's environment.\n` +
        natsAuthorization(roleUsers({ prefix: config.prefix, domains })),
    );
    return 0;
  });
}
