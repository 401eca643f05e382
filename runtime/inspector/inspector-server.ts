import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { CommandRequest } from '../aggregate/command.js';
import { systemClock, type Clock } from '../clock.js';
import type { AnyAggregateDefinition } from '../domain/define-aggregate.js';
import {
  ConfigError,
  JetactorError,
  RejectionError,
  describeError,
  isJetactorError,
} from '../errors.js';
import type { ErrorCode } from '../error-codes.js';
import { createLogger, type Logger } from '../logger.js';
import { whyNotSubjectToken } from '../names.js';
import type { DomainNode } from '../node/domain-node.js';
import { activeStateIds } from './active-states.js';
import { buildCatalogue, type InspectorCatalogue } from './inspector-catalogue.js';
import { InspectorFeed, type FeedClient } from './inspector-feed.js';
import { replayAggregate } from './replay-aggregate.js';

/** The port `--inspect` listens on when none is given. */
export const DEFAULT_INSPECTOR_PORT = 4280;

/** Largest command body the page may post, in bytes. */
const MAX_BODY_BYTES = 256 * 1024;

/** Options of {@link startInspector}. */
export interface InspectorOptions {
  /** The node to inspect. */
  node: DomainNode;
  /**
   * Address to listen on. Default `127.0.0.1`: only this machine can open the page. Another
   * address shows the node's events to whoever reaches it.
   */
  host?: string;
  /** Port; 0 picks a free one (read it from `url`). Default {@link DEFAULT_INSPECTOR_PORT}. */
  port?: number;
  /** Let the page send commands (`POST /api/commands`). Default false: read-only. */
  commands?: boolean;
  /** Shown in the page's header; default the hosted domains' names. */
  title?: string;
  /** Timers of the feed; default the system clock. */
  clock?: Clock;
  /** Where `inspector listening` and request failures are logged; default the runtime's logger. */
  logger?: Logger;
}

const optionsSchema = z
  .object({
    node: z.custom<DomainNode>(
      (node) =>
        typeof (node as DomainNode | undefined)?.inspect === 'function' &&
        typeof (node as DomainNode | undefined)?.actors === 'function',
      'expected a node made with createNode',
    ),
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65_535).default(DEFAULT_INSPECTOR_PORT),
    commands: z.boolean().default(false),
    title: z.string().optional(),
    clock: z
      .custom<Clock>((c) => typeof (c as Clock | undefined)?.now === 'function', 'expected a Clock')
      .optional(),
    logger: z
      .custom<Logger>(
        (l) => typeof (l as Logger | undefined)?.child === 'function',
        'expected a pino logger',
      )
      .optional(),
  })
  .strict();

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

const securityHeaders = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy':
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
};

/** The live inspector of a node: a local web server. See {@link startInspector}. */
export class Inspector {
  /** The page's address, e.g. `http://127.0.0.1:4280/`. */
  readonly url: string;
  /** The address listened on. */
  readonly host: string;
  /** The port listened on (the one picked when 0 was asked). */
  readonly port: number;
  /** Whether the page may send commands. */
  readonly commands: boolean;
  readonly #server: Server;
  readonly #feed: InspectorFeed;
  readonly #streams: Set<ServerResponse>;
  #closed: Promise<void> | undefined;

  /** @internal Use {@link startInspector}. */
  constructor(parts: {
    server: Server;
    feed: InspectorFeed;
    streams: Set<ServerResponse>;
    host: string;
    port: number;
    commands: boolean;
  }) {
    this.#server = parts.server;
    this.#feed = parts.feed;
    this.#streams = parts.streams;
    this.host = parts.host;
    this.port = parts.port;
    this.commands = parts.commands;
    this.url = `http://${urlHost(parts.host)}:${parts.port}/`;
  }

  /** Pages connected now; the node is inspected only while this is above 0. */
  get pages(): number {
    return this.#feed.clients;
  }

  /** True while a page is connected and the node reports to the inspector. */
  get attached(): boolean {
    return this.#feed.attached;
  }

  /** Ends every page's event stream, detaches from the node and stops listening. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      this.#feed.close();
      for (const stream of this.#streams) stream.end();
      this.#streams.clear();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#closed;
  }
}

/**
 * Starts the live inspector of a node: a web page (served from the package, Graphviz in
 * WebAssembly included, so it works offline) with the domains' diagrams, actors per state,
 * aggregates replayed at any version from their stream, a live feed of commands and commits and
 * the node's stats, pushed as server-sent events. The node is inspected only while a page is
 * open. Read-only unless `commands` is set.
 *
 * Listens on 127.0.0.1 by default and answers only requests addressed to the host it listens on
 * (or `localhost`), so other web sites cannot read it through DNS rebinding; commands must be
 * posted as JSON from the page's own origin.
 *
 * @example
 * const inspector = await startInspector({ node, port: 0 });
 * console.log(`open ${inspector.url}`);
 * await inspector.close();
 */
export async function startInspector(options: InspectorOptions): Promise<Inspector> {
  const parsed = optionsSchema.safeParse(options);
  if (!parsed.success) {
    const where = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`)
      .join('; ');
    throw new ConfigError(`Invalid inspector options: ${where}.`, {
      details: { issues: parsed.error.issues },
    });
  }
  const config = parsed.data;
  const { node } = config;
  const logger = config.logger ?? createLogger();
  const clock = config.clock ?? systemClock;
  const catalogue = buildCatalogue(node.domains, {
    title: config.title ?? node.domains.map((domain) => domain.name).join(', '),
    commands: config.commands,
  });
  const assets = loadPage();
  const feed = new InspectorFeed({ node, catalogue, clock });
  const streams = new Set<ServerResponse>();
  const api = new InspectorApi({
    node,
    catalogue,
    feed,
    streams,
    commands: config.commands,
    logger,
  });
  const server = createServer((request, response) => {
    api.handle(request, response, assets, config.host).catch((error: unknown) => {
      const expected = isJetactorError(error) && error.kind === 'rejection';
      logger[expected ? 'debug' : 'warn'](
        { err: error, url: request.url },
        'inspector request failed',
      );
      if (!response.headersSent) sendError(response, error);
      else response.end();
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new ConfigError(
          `The inspector cannot listen on ${config.host}:${config.port}: ${error.code === 'EADDRINUSE' ? 'the port is in use' : describeError(error)}. Pass another port to --inspect (0 picks a free one)${error.code === 'EADDRNOTAVAIL' ? ', or an address of this machine' : ''}.`,
          { code: 'INSPECTOR_UNAVAILABLE', cause: error },
        ),
      );
    });
    server.listen(config.port, config.host, () => resolve((server.address() as AddressInfo).port));
  });
  const inspector = new Inspector({
    server,
    feed,
    streams,
    host: config.host,
    port,
    commands: config.commands,
  });
  logger.info({ url: inspector.url, commands: config.commands }, 'inspector listening');
  return inspector;
}

interface Asset {
  body: Buffer;
  type: string;
}

/** The page's files (runtime/inspector/page, copied next to this module by the build). */
function loadPage(): Map<string, Asset> {
  const dir = fileURLToPath(new URL('./page/', import.meta.url));
  const assets = new Map<string, Asset>();
  try {
    for (const name of readdirSync(dir)) {
      const type = contentTypes[extname(name)];
      if (type !== undefined) assets.set(name, { body: readFileSync(join(dir, name)), type });
    }
  } catch (error) {
    throw new ConfigError(
      `The inspector's page is missing (${dir}): ${describeError(error)}. Build the package with "npm run build", which copies runtime/inspector/page next to the compiled inspector.`,
      { code: 'INSPECTOR_UNAVAILABLE', cause: error },
    );
  }
  return assets;
}

let vizScript: Promise<Buffer> | undefined;

/** The browser build of @viz-js/viz (Graphviz in WebAssembly), from the installed package. */
function loadViz(): Promise<Buffer> {
  vizScript ??= (async () => {
    const main = createRequire(import.meta.url).resolve('@viz-js/viz');
    return readFile(join(dirname(main), 'viz.js'));
  })().catch((error: unknown) => {
    vizScript = undefined;
    throw error;
  });
  return vizScript;
}

/** The inspector's HTTP routes. */
class InspectorApi {
  readonly #node: DomainNode;
  readonly #catalogue: string;
  readonly #graphs: Map<string, InspectorCatalogue['domains'][number]['aggregates'][number]>;
  readonly #feed: InspectorFeed;
  readonly #streams: Set<ServerResponse>;
  readonly #commands: boolean;
  readonly #logger: Logger;

  constructor(deps: {
    node: DomainNode;
    catalogue: InspectorCatalogue;
    feed: InspectorFeed;
    streams: Set<ServerResponse>;
    commands: boolean;
    logger: Logger;
  }) {
    this.#node = deps.node;
    this.#catalogue = JSON.stringify(deps.catalogue);
    this.#graphs = new Map(
      deps.catalogue.domains.flatMap((d) => d.aggregates).map((a) => [a.key, a] as const),
    );
    this.#feed = deps.feed;
    this.#streams = deps.streams;
    this.#commands = deps.commands;
    this.#logger = deps.logger;
  }

  async handle(
    request: IncomingMessage,
    response: ServerResponse,
    assets: Map<string, Asset>,
    host: string,
  ): Promise<void> {
    for (const [name, value] of Object.entries(securityHeaders)) response.setHeader(name, value);
    if (!hostAllowed(request.headers.host, host)) {
      throw httpError(
        403,
        'INVALID_REQUEST',
        `Host ${JSON.stringify(request.headers.host ?? '')} is not this inspector's; open it as http://${urlHost(host)}:<port>/ or http://localhost:<port>/.`,
      );
    }
    const url = new URL(request.url ?? '/', 'http://inspector');
    const parts = url.pathname.split('/').slice(1).map(decodeSegment);
    const method = request.method ?? 'GET';
    if (method === 'POST' && url.pathname === '/api/commands') {
      return this.#postCommand(request, response);
    }
    if (method !== 'GET' && method !== 'HEAD') {
      throw httpError(
        405,
        'INVALID_REQUEST',
        `${method} ${url.pathname} is not served; the inspector answers GET, and POST /api/commands.`,
      );
    }
    if (url.pathname === '/') return sendAsset(response, assets.get('index.html'));
    if (parts[0] === 'assets' && parts.length === 2) {
      return sendAsset(response, assets.get(parts[1] ?? ''));
    }
    if (url.pathname === '/vendor/viz.js') {
      return sendAsset(
        response,
        { body: await loadViz(), type: contentTypes['.js'] ?? '' },
        'max-age=86400',
      );
    }
    if (url.pathname === '/api/catalogue') return sendJson(response, 200, this.#catalogue);
    if (url.pathname === '/api/stats') {
      return sendJson(response, 200, JSON.stringify(this.#feed.stats()));
    }
    if (url.pathname === '/api/events') return this.#openStream(request, response);
    if (parts[0] === 'api' && parts[1] === 'aggregate' && parts.length === 5) {
      const [, , domain = '', aggregate = '', id = ''] = parts;
      return this.#aggregate(response, domain, aggregate, id, url.searchParams.get('version'));
    }
    throw httpError(
      404,
      'INVALID_REQUEST',
      `Nothing is served at ${url.pathname}; the page is at /, its API under /api/ (catalogue, stats, events, aggregate/<domain>/<Aggregate>/<id>?version=<n>, commands).`,
    );
  }

  /** `GET /api/aggregate/:domain/:type/:id?version=n`: the aggregate replayed from its stream. */
  async #aggregate(
    response: ServerResponse,
    domainName: string,
    aggregate: string,
    id: string,
    versionParam: string | null,
  ): Promise<void> {
    const definition = this.#definition(domainName, aggregate);
    const why = whyNotSubjectToken(id);
    if (why !== undefined) {
      throw new RejectionError(
        'INVALID_ID',
        `Aggregate id ${JSON.stringify(id)} is not valid: ${why}.`,
        { details: { id } },
      );
    }
    let version: number | undefined;
    if (versionParam !== null && versionParam !== '') {
      version = Number(versionParam);
      if (!/^\d+$/.test(versionParam) || !Number.isSafeInteger(version)) {
        throw new RejectionError(
          'INVALID_REQUEST',
          `version=${JSON.stringify(versionParam)} is not a whole number; ask for ?version=0 up to the aggregate's latest version, or leave it out for the latest.`,
          { details: { version: versionParam } },
        );
      }
    }
    const replayed = await replayAggregate({
      store: this.#node.store,
      domain: domainName,
      definition,
      id,
      version,
    });
    const graph = this.#graphs.get(`${domainName}.${definition.name}`)?.graph;
    let live: unknown;
    for (const actor of this.#node.actors()) {
      if (actor.id === id && actor.aggregate === definition.name && actor.domain === domainName) {
        live = {
          lifecycle: actor.lifecycle,
          version: actor.version,
          mailboxDepth: actor.mailboxDepth,
        };
        break;
      }
    }
    sendJson(
      response,
      200,
      JSON.stringify({
        ...replayed,
        activeStates: graph === undefined ? [] : activeStateIds(graph, replayed.value),
        ...(live === undefined ? {} : { live }),
      }),
    );
  }

  #definition(domainName: string, aggregate: string): AnyAggregateDefinition {
    const domain = this.#node.domains.find((d) => d.name === domainName);
    if (domain === undefined) {
      throw httpError(
        404,
        'UNKNOWN_DOMAIN',
        `This node hosts no domain ${JSON.stringify(domainName)}; it hosts: ${this.#node.domains.map((d) => d.name).join(', ')}.`,
        { domain: domainName },
      );
    }
    const definition = Object.hasOwn(domain.aggregates, aggregate)
      ? domain.aggregates[aggregate]
      : undefined;
    if (definition === undefined) {
      throw httpError(
        404,
        'UNKNOWN_AGGREGATE',
        `Domain "${domain.name}" has no aggregate ${JSON.stringify(aggregate)}; its aggregates: ${Object.keys(domain.aggregates).join(', ')}.`,
        { aggregate },
      );
    }
    return definition;
  }

  /** `GET /api/events`: server-sent events (`stats`, `feed`) while the page is open. */
  #openStream(request: IncomingMessage, response: ServerResponse): void {
    response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
    });
    response.write('retry: 1000\n\n');
    this.#streams.add(response);
    let backedUp = false;
    const client: FeedClient = {
      send: (event, data) => {
        if (backedUp) return;
        backedUp = !response.write(`event: ${event}\ndata: ${data}\n\n`);
        if (backedUp) response.once('drain', () => (backedUp = false));
      },
    };
    const ping = setInterval(() => response.write(': ping\n\n'), 15_000);
    ping.unref();
    const disconnect = this.#feed.connect(client);
    const closed = () => {
      clearInterval(ping);
      this.#streams.delete(response);
      disconnect();
    };
    request.once('close', closed);
    response.once('close', closed);
  }

  /** `POST /api/commands`: executes a command sent from the page (`--inspect-commands` only). */
  async #postCommand(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (!this.#commands) {
      request.resume();
      throw httpError(
        403,
        'COMMANDS_DISABLED',
        'The inspector is read-only; start the node with --inspect-commands to send commands from the page.',
      );
    }
    const type = request.headers['content-type'] ?? '';
    if (!/^application\/json\b/i.test(type)) {
      request.resume();
      throw httpError(
        415,
        'INVALID_REQUEST',
        `Commands are posted as JSON (Content-Type: application/json), not ${JSON.stringify(type)}.`,
      );
    }
    const origin = request.headers.origin;
    if (origin !== undefined && new URL(origin).host !== request.headers.host) {
      request.resume();
      throw httpError(
        403,
        'INVALID_REQUEST',
        `Commands are accepted from the inspector's own page only, not from ${origin}.`,
      );
    }
    const body = await readBody(request);
    let payload: unknown;
    try {
      payload = JSON.parse(body);
    } catch (error) {
      throw new RejectionError(
        'INVALID_REQUEST',
        `The body is not JSON (${describeError(error)}); post { "domain", "aggregate", "id", "command", "input" }.`,
      );
    }
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
      throw new RejectionError(
        'INVALID_REQUEST',
        `The body must be a JSON object { "domain", "aggregate", "id", "command", "input" }; got ${body.slice(0, 80)}.`,
      );
    }
    const command: Record<string, unknown> = { actor: 'inspector', ...payload };
    this.#logger.info(
      { aggregate: command.aggregate, id: command.id, command: command.command },
      'inspector: command sent from the page',
    );
    const result = await this.#node.execute(command as unknown as CommandRequest);
    sendJson(response, 200, JSON.stringify(result));
  }
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        request.destroy();
        reject(
          httpError(
            413,
            'PAYLOAD_TOO_LARGE',
            `The command is larger than ${MAX_BODY_BYTES} bytes; send a smaller input.`,
            { maxBytes: MAX_BODY_BYTES },
          ),
        );
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function sendAsset(response: ServerResponse, asset: Asset | undefined, cache = 'no-cache'): void {
  if (asset === undefined) {
    throw httpError(404, 'INVALID_REQUEST', 'No such file in the inspector page.');
  }
  response.writeHead(200, {
    'Content-Type': asset.type,
    'Content-Length': asset.body.length,
    'Cache-Control': cache,
  });
  response.end(asset.body);
}

function sendJson(response: ServerResponse, status: number, body: string): void {
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
  });
  response.end(body);
}

/** An error as `{ error: { code, message, kind, details } }`, with an HTTP status that fits it. */
function sendError(response: ServerResponse, error: unknown): void {
  const json = isJetactorError(error)
    ? error.toJSON()
    : { code: 'INTERNAL_ERROR', message: describeError(error), kind: 'infrastructure' };
  sendJson(response, statusOf(error), JSON.stringify({ error: json }));
}

const statuses = new WeakMap<object, number>();

/** A rejection answered with this HTTP status. */
function httpError(
  status: number,
  code: ErrorCode,
  message: string,
  details?: unknown,
): RejectionError {
  const error = new RejectionError(code, message, details === undefined ? {} : { details });
  statuses.set(error, status);
  return error;
}

function statusOf(error: unknown): number {
  if (!(error instanceof JetactorError)) return 500;
  const status = statuses.get(error);
  if (status !== undefined) return status;
  switch (error.kind) {
    case 'rejection':
      return 400;
    case 'conflict':
      return 409;
    case 'infrastructure':
      return 503;
    default:
      return 500;
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** `[::1]` for IPv6 addresses; the loopback address for the wildcard ones. */
function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

const loopbackNames = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Requests must name the host listened on or a loopback name (DNS rebinding); any for wildcards. */
function hostAllowed(header: string | undefined, host: string): boolean {
  if (host === '0.0.0.0' || host === '::') return true;
  if (header === undefined) return false;
  const name = header.replace(/:\d+$/, '').toLowerCase();
  return loopbackNames.has(name) || name === host.toLowerCase() || name === urlHost(host);
}
