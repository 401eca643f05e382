import { z } from 'zod';
import type { DomainDefinition } from '../domain/define-domain.js';
import { ConfigError } from '../errors.js';
import { isIdentifier } from '../names.js';
import {
  DEFAULT_PREFIX,
  deadLetterStream,
  leaseBucket,
  projectionBucket,
  projectionLeaseBucket,
  snapshotBucket,
  streamName,
} from './subjects.js';

/**
 * What one NATS user may do, as a nats-server `permissions` block: every subject not listed is
 * refused (the server answers `Permissions Violation`).
 */
export interface NatsPermissions {
  /** Subjects the user may publish to (wildcards allowed). */
  readonly publish: readonly string[];
  /** Subjects the user may subscribe to (wildcards allowed). */
  readonly subscribe: readonly string[];
  /**
   * `allow_responses`: the user may publish one reply to the reply subject of each request it
   * received (how a node answers clients it cannot otherwise publish to).
   */
  readonly allowResponses: boolean;
}

/** Options of {@link clientPermissions}. */
export interface ClientPermissionOptions {
  /** First token of the subjects, as the nodes use; default `jetactor`. */
  prefix?: string;
  /**
   * The only reply subjects the client may receive: its connections must be opened with this
   * `inboxPrefix` (`connect({ inboxPrefix })`, `--inbox-prefix` on the CLI). A prefix per user
   * keeps one user's replies away from the others.
   */
  inboxPrefix: string;
  /** Names of the domains the client may call; default every domain. */
  domains?: readonly string[];
}

/** Options of {@link nodePermissions}. */
export interface NodePermissionOptions {
  /** First token of subjects, streams and buckets; default `jetactor`. */
  prefix?: string;
  /** The node's connections' `inboxPrefix` (`--inbox-prefix`); see {@link ClientPermissionOptions.inboxPrefix}. */
  inboxPrefix: string;
  /** The domains the node hosts; their reactors and projections name consumers and buckets. */
  domains: readonly Pick<DomainDefinition, 'name' | 'reactors' | 'projections'>[];
}

/** One user of a nats-server `authorization` block. */
export interface NatsUser {
  /** User name (with {@link NatsUser.password}); or give {@link NatsUser.nkey}. */
  user?: string;
  /**
   * The password, or a reference to an environment variable of the server such as
   * `$NATS_CLIENT_PASSWORD` (written unquoted, so nats-server reads the variable when it starts).
   */
  password?: string;
  /** Public nkey of an nkey user (`U…`), instead of user and password. */
  nkey?: string;
  /** What the user may do; undefined for every subject (an administrator). */
  permissions?: NatsPermissions;
  /** Comment lines written above the user. */
  comment?: readonly string[];
}

const inboxPattern = /^[^\s.*>]+(\.[^\s.*>]+)*$/u;

const inboxPrefix = z.string().regex(inboxPattern, {
  message:
    'must be subject tokens separated by "." without "*", ">" or whitespace, e.g. _INBOX_bank-node',
});

const prefix = z
  .string()
  .refine(isIdentifier, { message: 'must be letters, digits, "_" or "-", starting with a letter' })
  .default(DEFAULT_PREFIX);

const clientSchema = z.strictObject({
  prefix,
  inboxPrefix,
  domains: z.array(z.string().refine(isIdentifier, 'must be a domain name')).optional(),
});

const nodeSchema = z.strictObject({
  prefix,
  inboxPrefix,
  domains: z
    .array(
      z.custom<NodePermissionOptions['domains'][number]>(
        (d) =>
          typeof (d as DomainDefinition | undefined)?.name === 'string' &&
          isIdentifier((d as DomainDefinition).name) &&
          Array.isArray((d as DomainDefinition).reactors) &&
          Array.isArray((d as DomainDefinition).projections),
        'expected a domain made with defineDomain',
      ),
    )
    .min(1, 'give the domains the node hosts'),
});

/**
 * Permissions of a client: it may send commands, queries and state requests
 * (`<prefix>.cmd|qry|view.<domain>.…`) and receive their replies on its inbox, nothing else: no
 * event subject, no JetStream API, no KV bucket, no node subject.
 */
export function clientPermissions(options: ClientPermissionOptions): NatsPermissions {
  const o = parse(clientSchema, options, 'clientPermissions');
  const domains = o.domains ?? ['>'];
  return freeze({
    publish: domains.flatMap((domain) =>
      ['cmd', 'qry', 'view'].map((kind) => `${o.prefix}.${kind}.${domain}${tail(domain, kind)}`),
    ),
    subscribe: [`${o.inboxPrefix}.>`],
    allowResponses: false,
  });
}

/**
 * Permissions of a node hosting `domains`, exactly what it uses: each domain's stream
 * `<prefix>_<domain>` (create, read, append, consumers; never purge, delete or edit), its event
 * subjects, its snapshot and partition lease buckets, its projections' KV buckets, its keys in
 * the shared lease bucket of projections and reactors, its subjects in the shared dead-letter
 * stream, its command, view, query, forward and control subjects, the service protocol (`$SRV`)
 * and its inbox. Replies to requests it received are allowed by `allow_responses`.
 */
export function nodePermissions(options: NodePermissionOptions): NatsPermissions {
  const o = parse(nodeSchema, options, 'nodePermissions');
  const p = o.prefix;
  const publish = new Set<string>(['$JS.API.INFO']);
  const subscribe = new Set<string>([
    `${o.inboxPrefix}.>`,
    `${p}.px.status`,
    '$SRV.*',
    `$SRV.*.${p}`,
    `$SRV.*.${p}.*`,
  ]);
  const add = (set: Set<string>, subjects: readonly string[]) => {
    for (const subject of subjects) set.add(subject);
  };
  for (const domain of o.domains) {
    const d = domain.name;
    add(publish, [...streamApi(streamName(p, d)), `${p}.evt.${d}.>`, `${p}.fwd.${d}.*`]);
    add(publish, bucketApi(snapshotBucket(p, d)));
    add(publish, bucketApi(leaseBucket(p, d)));
    for (const projection of domain.projections) {
      if ((projection.store as { kind?: string }).kind !== 'documents') continue;
      const bucket = projectionBucket(p, d, projection.name);
      // A read model of another projection version is dropped and built again.
      add(publish, [...bucketApi(bucket), `$JS.API.STREAM.DELETE.KV_${bucket}`]);
    }
    if (domain.reactors.length > 0 || domain.projections.length > 0) {
      const leases = projectionLeaseBucket(p);
      add(publish, [
        `$JS.API.STREAM.INFO.KV_${leases}`,
        `$JS.API.STREAM.CREATE.KV_${leases}`,
        `$JS.API.DIRECT.GET.KV_${leases}.$KV.${leases}.${d}.>`,
        `$KV.${leases}.${d}.>`,
      ]);
    }
    if (domain.reactors.length > 0 || domain.projections.length > 0) {
      const dlq = deadLetterStream(p);
      add(publish, [
        `$JS.API.STREAM.INFO.${dlq}`,
        `$JS.API.STREAM.CREATE.${dlq}`,
        `$JS.API.STREAM.MSG.GET.${dlq}`,
        `$JS.API.STREAM.MSG.DELETE.${dlq}`,
        `$JS.API.CONSUMER.CREATE.${dlq}.*.${p}.dlq.${d}.*`,
        `$JS.API.CONSUMER.MSG.NEXT.${dlq}.*`,
        `$JS.API.CONSUMER.INFO.${dlq}.*`,
        `$JS.API.CONSUMER.DELETE.${dlq}.*`,
        `$JS.ACK.${dlq}.>`,
        `${p}.dlq.${d}.*`,
      ]);
    }
    add(subscribe, [
      `${p}.cmd.${d}.>`,
      `${p}.view.${d}.>`,
      `${p}.qry.${d}.*`,
      `${p}.fwd.${d}.*`,
      `${p}.rx.${d}.>`,
      `${p}.px.${d}.>`,
    ]);
  }
  return freeze({ publish: [...publish], subscribe: [...subscribe], allowResponses: true });
}

/** The inbox prefix {@link roleUsers} gives a user: `_INBOX_<user>`. */
export function userInboxPrefix(user: string): string {
  return `_INBOX_${user}`;
}

/** Options of {@link roleUsers}. */
export interface RoleUsersOptions {
  /** First token of subjects, streams and buckets; default `jetactor`. */
  prefix?: string;
  /** The domains: one node user each, and the client may call them all. */
  domains: readonly Pick<DomainDefinition, 'name' | 'reactors' | 'projections'>[];
}

/**
 * The three roles as users: `admin` (everything), `client` (commands, queries, state) and one
 * `<domain>-node` per domain. Passwords are references to the server's environment:
 * `$NATS_ADMIN_PASSWORD`, `$NATS_CLIENT_PASSWORD`, `$NATS_<DOMAIN>_NODE_PASSWORD`. Each user but
 * admin must connect with the inbox prefix `_INBOX_<user>`.
 */
export function roleUsers(options: RoleUsersOptions): NatsUser[] {
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const withPrefix = prefix === DEFAULT_PREFIX ? '' : ` --prefix ${prefix}`;
  const connect = (user: string, what: string) =>
    `${what}: --user ${user} --password … --inbox-prefix ${userInboxPrefix(user)}${withPrefix}`;
  return [
    {
      user: 'admin',
      password: '$NATS_ADMIN_PASSWORD',
      comment: ['admin: every subject (nats CLI, jetactor events, projection, deadletters).'],
    },
    {
      user: 'client',
      password: '$NATS_CLIENT_PASSWORD',
      permissions: clientPermissions({ prefix, inboxPrefix: userInboxPrefix('client') }),
      comment: [
        'client: commands, queries and state requests, and their replies; nothing else.',
        connect('client', 'jetactor send|state|query'),
      ],
    },
    ...options.domains.map((domain) => {
      const user = `${domain.name}-node`;
      return {
        user,
        password: `$NATS_${domain.name.toUpperCase().replace(/-/g, '_')}_NODE_PASSWORD`,
        permissions: nodePermissions({
          prefix,
          inboxPrefix: userInboxPrefix(user),
          domains: [domain],
        }),
        comment: [
          `${user}: nodes hosting domain ${domain.name} (its stream, buckets and subjects only).`,
          connect(user, `jetactor node ${domain.name}`),
        ],
      };
    }),
  ];
}

/**
 * A nats-server `authorization { users = [...] }` block for `users`, to paste into a nats.conf
 * (checked with nats-server 2.9.10).
 */
export function natsAuthorization(users: readonly NatsUser[]): string {
  const lines = ['authorization {', '  users = ['];
  users.forEach((user, index) => {
    if (user.nkey === undefined && (user.user === undefined || user.password === undefined)) {
      throw new ConfigError(
        `natsAuthorization: user ${index + 1} needs user and password, or nkey; it has ${Object.keys(user).join(', ') || 'neither'}.`,
      );
    }
    for (const comment of user.comment ?? []) lines.push(`    # ${comment}`);
    lines.push('    {');
    if (user.nkey !== undefined) lines.push(`      nkey: ${JSON.stringify(user.nkey)}`);
    if (user.user !== undefined) lines.push(`      user: ${JSON.stringify(user.user)}`);
    if (user.password !== undefined) lines.push(`      password: ${password(user.password)}`);
    if (user.permissions !== undefined) {
      const { publish, subscribe, allowResponses } = user.permissions;
      lines.push(
        '      permissions: {',
        ...list('publish', publish),
        ...list('subscribe', subscribe),
        ...(allowResponses ? ['        allow_responses: true'] : []),
        '      }',
      );
    }
    lines.push(index === users.length - 1 ? '    }' : '    },');
  });
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
}

function list(name: string, subjects: readonly string[]): string[] {
  return [
    `        ${name}: {`,
    '          allow: [',
    ...subjects.map(
      (s, i) => `            ${JSON.stringify(s)}${i === subjects.length - 1 ? '' : ','}`,
    ),
    '          ]',
    '        }',
  ];
}

function password(value: string): string {
  return /^\$[A-Za-z_][A-Za-z0-9_]*$/.test(value) ? value : JSON.stringify(value);
}

/** The JetStream API a node uses on a stream it owns: no purge, delete, update or message delete. */
function streamApi(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.CREATE.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.*.${stream}`,
    `$JS.API.CONSUMER.*.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`,
    `$JS.ACK.${stream}.>`,
  ];
}

/** A KV bucket: its stream's API and its keys. */
function bucketApi(bucket: string): string[] {
  return [...streamApi(`KV_${bucket}`), `$KV.${bucket}.>`];
}

/** `>` after a domain for commands and views (several tokens follow), `.*` for queries. */
function tail(domain: string, kind: string): string {
  if (domain === '>') return '';
  return kind === 'qry' ? '.*' : '.>';
}

function freeze(permissions: NatsPermissions): NatsPermissions {
  return Object.freeze({
    publish: Object.freeze([...permissions.publish]),
    subscribe: Object.freeze([...permissions.subscribe]),
    allowResponses: permissions.allowResponses,
  });
}

function parse<S extends z.ZodType>(schema: S, options: unknown, call: string): z.output<S> {
  const parsed = schema.safeParse(options);
  if (!parsed.success) {
    throw new ConfigError(
      `Invalid ${call} options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}.`,
      { details: { issues: parsed.error.issues } },
    );
  }
  return parsed.data;
}
