import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, rmSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError, InfrastructureError, describeError } from '../errors.js';
import type { Logger } from '../logger.js';

/** Where the binary is looked for after `PATH`: the usual install locations on Linux. */
export const NATS_SERVER_FALLBACK_DIRS: readonly string[] = Object.freeze([
  '/usr/sbin',
  '/usr/local/bin',
  '/usr/bin',
]);

const INSTALL_HINT =
  'Install it with `apt-get install nats-server` (Debian, Ubuntu), or download a release from ' +
  'https://github.com/nats-io/nats-server/releases and put the nats-server binary on PATH, ' +
  'or set NATS_SERVER_BIN to its path.';

/** The cluster block a {@link LocalNatsServer} writes into its config file. */
export interface LocalNatsServerCluster {
  /** Cluster name, shared by every member. */
  name: string;
  /** Port this member listens on for routes from the other members (on `host`). */
  port: number;
  /** Route URLs of the members, e.g. `nats-route://127.0.0.1:6222`; this member's own is ignored. */
  routes: string[];
}

/** Options of {@link LocalNatsServer.start}; every field is optional. */
export interface LocalNatsServerOptions {
  /**
   * The nats-server binary: a path, or a command name looked up like `nats-server` is. Default:
   * `NATS_SERVER_BIN`, then `PATH`, then {@link NATS_SERVER_FALLBACK_DIRS}.
   */
  binary?: string;
  /**
   * A nats-server config file to start from, e.g. the project's `nats.conf` (see
   * {@link bundledNatsConfig}). It is copied into {@link LocalNatsServerOptions.dir}, with its
   * `store_dir` lines commented out and its `include` paths rewritten; listen address, ports,
   * store directory and server name are then set on the command line, so they override the file.
   * Default: no file, nats-server defaults.
   */
  config?: string;
  /** Address the client, monitoring and cluster listeners bind to. Default `127.0.0.1`. */
  host?: string;
  /** Client port; 0 (the default) picks a free one. {@link LocalNatsServer.restart} keeps it. */
  port?: number;
  /** HTTP monitoring port; 0 (the default) picks a free one. */
  monitorPort?: number;
  /**
   * JetStream store directory (nats-server adds `jetstream/` below it). Default: `store/` in
   * {@link LocalNatsServerOptions.dir}, so a fresh, empty store that cleanup() removes. A
   * directory given here is never removed.
   */
  storeDir?: string;
  /**
   * Directory for the server's files: config copy, ports file and, by default, the store.
   * Default: a fresh directory under the OS temp directory. cleanup() removes it if it was
   * created here.
   */
  dir?: string;
  /** Server name (JetStream clustering needs a distinct one per member). Default `jetactor-<random>`. */
  serverName?: string;
  /** Makes the server a member of a cluster; startNatsCluster() sets it for each member. */
  cluster?: LocalNatsServerCluster;
  /** Further nats-server flags, e.g. `['-DV']` for debug and trace logs. */
  args?: string[];
  /** How long start() and restart() wait for the server to accept connections. Default 10 000. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before it sends SIGKILL. Default 5 000. */
  stopTimeoutMs?: number;
  /** How many of the server's last log lines are kept for {@link LocalNatsServer.log}. Default 200. */
  logLines?: number;
  /** Receives the server's log lines: errors at `error`, warnings at `warn`, the rest at `debug`. */
  logger?: Logger;
}

const serverNamePattern = /^[A-Za-z0-9_.-]+$/;

const optionsSchema = z.strictObject({
  binary: z.string().min(1).optional(),
  config: z.string().min(1).optional(),
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65_535).default(0),
  monitorPort: z.number().int().min(0).max(65_535).default(0),
  storeDir: z.string().min(1).optional(),
  dir: z.string().min(1).optional(),
  serverName: z
    .string()
    .regex(serverNamePattern, 'must be letters, digits, ".", "_" or "-"')
    .optional(),
  cluster: z
    .strictObject({
      name: z.string().regex(serverNamePattern, 'must be letters, digits, ".", "_" or "-"'),
      port: z.number().int().min(1).max(65_535),
      routes: z.array(z.string().min(1)),
    })
    .optional(),
  args: z.array(z.string()).default([]),
  startTimeoutMs: z.number().int().positive().default(10_000),
  stopTimeoutMs: z.number().int().positive().default(5_000),
  logLines: z.number().int().positive().default(200),
  logger: z
    .custom<Logger>(
      (value) =>
        typeof value === 'object' &&
        value !== null &&
        typeof (value as { debug?: unknown }).debug === 'function',
      { message: 'expected a logger such as createLogger() returns' },
    )
    .optional(),
});

type ResolvedOptions = Readonly<z.output<typeof optionsSchema>>;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

interface Running {
  child: ChildProcess;
  exited: Promise<Exit>;
  exit: Exit | undefined;
}

/**
 * A nats-server child process with JetStream, for tests and for `jetactor dev`: own ports, own
 * store, own name, started and stopped from code, killed when this process exits.
 *
 * @example
 * const server = await LocalNatsServer.start({ config: bundledNatsConfig() });
 * const nc = await connect({ servers: server.url });
 * // …
 * await nc.close();
 * await server.cleanup();
 */
export class LocalNatsServer {
  /** Path of the nats-server binary. */
  readonly binary: string;
  /** The binary's version, e.g. `2.9.10`. */
  readonly version: string;
  /** Address the listeners bind to. */
  readonly host: string;
  /** The server's name. */
  readonly serverName: string;
  /** JetStream store directory; kept across kill() and restart(). */
  readonly storeDir: string;
  /** Directory of the server's files (config copy, ports file, default store). */
  readonly dir: string;
  /** The config file the server is started with. */
  readonly configFile: string;
  /** The cluster this server is a member of, if any. */
  readonly cluster: Readonly<LocalNatsServerCluster> | undefined;
  readonly #options: ResolvedOptions;
  readonly #ownsDir: boolean;
  readonly #log: string[] = [];
  #port: number;
  #monitorPort: number;
  #running: Running | undefined;
  #paused = false;
  #cleanedUp = false;

  private constructor(
    options: ResolvedOptions,
    binary: string,
    version: string,
    dir: string,
    ownsDir: boolean,
    configFile: string,
  ) {
    this.#options = options;
    this.binary = binary;
    this.version = version;
    this.host = options.host;
    this.serverName = options.serverName ?? `jetactor-${randomBytes(4).toString('hex')}`;
    this.dir = dir;
    this.#ownsDir = ownsDir;
    this.storeDir = options.storeDir === undefined ? join(dir, 'store') : resolve(options.storeDir);
    this.configFile = configFile;
    this.cluster = options.cluster;
    this.#port = options.port;
    this.#monitorPort = options.monitorPort;
  }

  /**
   * Starts a server and resolves once it accepts client connections.
   *
   * @throws ConfigError `NATS_SERVER_NOT_FOUND` when there is no binary (the message says how to
   *   install one), `INVALID_OPTIONS` for bad options or an unreadable config file.
   * @throws InfrastructureError `NATS_SERVER_FAILED` when the server exits or is not ready in
   *   time; the message ends with its last log lines.
   */
  static async start(options: LocalNatsServerOptions = {}): Promise<LocalNatsServer> {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw new ConfigError(
        `Invalid local nats-server options: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ')}.`,
        { details: { issues: parsed.error.issues } },
      );
    }
    const resolved: ResolvedOptions = Object.freeze(parsed.data);
    const binary = findNatsServer(resolved.binary);
    const version = await natsServerVersion(binary);
    let dir: string;
    let ownsDir: boolean;
    if (resolved.dir === undefined) {
      dir = await mkdtemp(join(tmpdir(), 'jetactor-nats-'));
      ownsDir = true;
    } else {
      dir = resolve(resolved.dir);
      ownsDir = !existsSync(dir);
      await mkdir(dir, { recursive: true });
    }
    if (ownsDir) removeDirOnExit(dir);
    let server: LocalNatsServer | undefined;
    try {
      const configFile = join(dir, 'nats-server.conf');
      await writeFile(configFile, await configText(resolved, dir));
      server = new LocalNatsServer(resolved, binary, version, dir, ownsDir, configFile);
      await server.#launch();
      return server;
    } catch (error) {
      if (server !== undefined) await server.cleanup();
      else if (ownsDir) await removeDir(dir);
      throw error;
    }
  }

  /** The client port (fixed after the first start, so restart() keeps it). */
  get port(): number {
    return this.#port;
  }

  /** Client URL, e.g. `nats://127.0.0.1:41234`. */
  get url(): string {
    return `nats://${urlHost(this.host)}:${this.#port}`;
  }

  /** The HTTP monitoring port. */
  get monitorPort(): number {
    return this.#monitorPort;
  }

  /** Monitoring base URL: append `/varz`, `/jsz`, `/healthz`, … */
  get monitorUrl(): string {
    return `http://${urlHost(this.host)}:${this.#monitorPort}`;
  }

  /** Process id of the running server, undefined when it is not running. */
  get pid(): number | undefined {
    return this.running ? this.#running?.child.pid : undefined;
  }

  /** Whether the server process is alive (it may be paused). */
  get running(): boolean {
    return this.#running !== undefined && this.#running.exit === undefined;
  }

  /** Whether the server is stopped with SIGSTOP by {@link LocalNatsServer.pause}. */
  get paused(): boolean {
    return this.running && this.#paused;
  }

  /** The server's last log lines (see {@link LocalNatsServerOptions.logLines}), one per line. */
  log(): string {
    return this.#log.join('\n');
  }

  /**
   * Stops the server gracefully: SIGTERM (after SIGCONT when paused), then SIGKILL if it has not
   * exited within `timeoutMs`. The store is kept. Does nothing when it is not running.
   */
  async stop(timeoutMs: number = this.#options.stopTimeoutMs): Promise<void> {
    const running = this.#running;
    if (running === undefined || running.exit !== undefined) return;
    // The child is unref'd so that it never keeps this process alive; waiting for it must.
    running.child.ref();
    if (this.#paused) running.child.kill('SIGCONT');
    running.child.kill('SIGTERM');
    if (!(await within(running.exited, timeoutMs))) {
      this.#note(`did not exit within ${timeoutMs} ms of SIGTERM; sending SIGKILL`);
      running.child.kill('SIGKILL');
      await running.exited;
    }
    this.#paused = false;
  }

  /** Kills the server with SIGKILL, as a crash would; the store is kept for restart(). */
  async kill(): Promise<void> {
    const running = this.#running;
    if (running === undefined || running.exit !== undefined) return;
    running.child.ref();
    running.child.kill('SIGKILL');
    await running.exited;
    this.#paused = false;
  }

  /**
   * Starts the server again on the same ports, with the same name and the same store, so
   * file-backed streams survive. Stops it first (gracefully) if it is running.
   *
   * @throws InfrastructureError `NATS_SERVER_STOPPED` after cleanup(), `NATS_SERVER_FAILED` as
   *   start() does.
   */
  async restart(): Promise<void> {
    this.#assertNotCleanedUp('restart()');
    await this.stop();
    await this.#launch();
  }

  /**
   * Freezes the server with SIGSTOP: connections stay open but nothing is answered until
   * resume(). Resolves once the process is stopped.
   *
   * @throws InfrastructureError `NATS_SERVER_STOPPED` when the server is not running.
   */
  async pause(): Promise<void> {
    const pid = this.#signal('SIGSTOP', 'pause()');
    this.#paused = true;
    await waitForProcessState(pid, (state) => state === 'T');
  }

  /**
   * Lets a paused server go on with SIGCONT. Resolves once the process runs again.
   *
   * @throws InfrastructureError `NATS_SERVER_STOPPED` when the server is not running.
   */
  async resume(): Promise<void> {
    const pid = this.#signal('SIGCONT', 'resume()');
    this.#paused = false;
    await waitForProcessState(pid, (state) => state !== 'T');
  }

  /**
   * Kills the server if it runs and removes {@link LocalNatsServer.dir} if it was created by
   * start() (and with it the default store). Safe to call more than once.
   */
  async cleanup(): Promise<void> {
    await this.kill();
    this.#cleanedUp = true;
    if (this.#ownsDir) {
      await removeDir(this.dir);
      ownedDirs.delete(this.dir);
    }
  }

  async #launch(): Promise<void> {
    const options = this.#options;
    const portsDir = join(this.dir, 'ports');
    await rm(portsDir, { recursive: true, force: true });
    await mkdir(portsDir, { recursive: true });
    await mkdir(this.storeDir, { recursive: true });
    const args = [
      '-c',
      this.configFile,
      '-a',
      this.host,
      '-p',
      String(this.#port === 0 ? -1 : this.#port),
      '-m',
      String(this.#monitorPort === 0 ? -1 : this.#monitorPort),
      '-sd',
      this.storeDir,
      '-n',
      this.serverName,
      '-js',
      '--ports_file_dir',
      portsDir,
      ...options.args,
    ];
    const child = spawn(this.binary, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const running: Running = {
      child,
      exit: undefined,
      exited: new Promise<Exit>((resolveExit) => {
        const done = (exit: Exit) => {
          if (running.exit !== undefined) return;
          running.exit = exit;
          liveChildren.delete(child);
          resolveExit(exit);
        };
        // 'close' rather than 'exit': it comes after the last log line has been read.
        child.once('close', (code, signal) => done({ code, signal }));
        child.once('error', (error) => done({ code: null, signal: null, error }));
      }),
    };
    this.#running = running;
    this.#paused = false;
    if (child.pid !== undefined) liveChildren.add(child);
    registerExitHook();
    child.unref();
    for (const stream of [child.stdout, child.stderr]) {
      (stream as unknown as { unref?: () => void } | null)?.unref?.();
      if (stream !== null)
        createInterface({ input: stream }).on('line', (line) => this.#onLog(line));
    }
    const deadline = Date.now() + options.startTimeoutMs;
    for (;;) {
      if (running.exit !== undefined) {
        const { code, signal, error } = running.exit;
        const how =
          error === undefined
            ? `exited (${signal === null ? `code ${code}` : signal}) before it was ready`
            : `could not be run: ${error.message}`;
        throw this.#failure(`nats-server ${this.serverName} ${how}`, error);
      }
      const ports = child.pid === undefined ? undefined : await readPorts(portsDir, child.pid);
      if (ports !== undefined) {
        this.#port = ports.client;
        this.#monitorPort = ports.monitor ?? this.#monitorPort;
        return;
      }
      if (Date.now() >= deadline) {
        await this.kill();
        throw this.#failure(
          `nats-server ${this.serverName} did not accept connections within ${options.startTimeoutMs} ms (raise startTimeoutMs if the machine is slow or the store is large)`,
        );
      }
      await sleep(15);
    }
  }

  #failure(message: string, cause?: unknown): InfrastructureError {
    const tail = this.#log.slice(-25).join('\n');
    return new InfrastructureError(
      'NATS_SERVER_FAILED',
      `${message}. Command: ${this.binary} -c ${this.configFile} …; last log lines:\n${tail || '(no output)'}`,
      { cause, details: { serverName: this.serverName, dir: this.dir, log: this.log() } },
    );
  }

  #signal(signal: NodeJS.Signals, call: string): number {
    this.#assertNotCleanedUp(call);
    const running = this.#running;
    if (running === undefined || running.exit !== undefined) {
      throw new InfrastructureError(
        'NATS_SERVER_STOPPED',
        `${call} needs a running server, but nats-server ${this.serverName} is not running; call restart() first.`,
      );
    }
    running.child.kill(signal);
    return running.child.pid ?? 0;
  }

  #assertNotCleanedUp(call: string): void {
    if (this.#cleanedUp) {
      throw new InfrastructureError(
        'NATS_SERVER_STOPPED',
        `${call}: nats-server ${this.serverName} was cleaned up and its directory removed; start a new LocalNatsServer.`,
      );
    }
  }

  #onLog(line: string): void {
    this.#log.push(line);
    if (this.#log.length > this.#options.logLines) this.#log.shift();
    const logger = this.#options.logger;
    if (logger === undefined) return;
    const fields = { natsServer: this.serverName };
    if (/\[(ERR|FTL)\]/.test(line)) logger.error(fields, line);
    else if (line.includes('[WRN]')) logger.warn(fields, line);
    else logger.debug(fields, line);
  }

  #note(message: string): void {
    this.#onLog(`[jetactor] ${message}`);
  }
}

/** Starts a {@link LocalNatsServer}; the same as `LocalNatsServer.start(options)`. */
export function startNatsServer(options: LocalNatsServerOptions = {}): Promise<LocalNatsServer> {
  return LocalNatsServer.start(options);
}

/**
 * Finds the nats-server binary: `binary` if given (a path, or a command name searched like
 * `nats-server`), else `NATS_SERVER_BIN`, else `nats-server` on `PATH` or in
 * {@link NATS_SERVER_FALLBACK_DIRS}.
 *
 * @throws ConfigError `NATS_SERVER_NOT_FOUND`, whose message says how to install nats-server.
 */
export function findNatsServer(binary?: string): string {
  const fromEnv = process.env.NATS_SERVER_BIN;
  const requested = binary ?? (fromEnv === '' ? undefined : fromEnv);
  const source = binary !== undefined ? 'binary option' : 'NATS_SERVER_BIN';
  if (requested !== undefined && /[/\\]/.test(requested)) {
    const path = resolve(requested);
    if (isExecutableFile(path)) return path;
    throw new ConfigError(
      `nats-server not found: ${source} is ${JSON.stringify(requested)}, which is not an executable file. ${INSTALL_HINT}`,
      { code: 'NATS_SERVER_NOT_FOUND', details: { searched: [path] } },
    );
  }
  const name = requested ?? 'nats-server';
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== ''),
    ...NATS_SERVER_FALLBACK_DIRS,
  ];
  const searched = [...new Set(dirs.map((dir) => join(dir, name)))];
  const found = searched.find(isExecutableFile);
  if (found !== undefined) return found;
  throw new ConfigError(
    `nats-server not found: no executable ${JSON.stringify(name)} on PATH or in ${NATS_SERVER_FALLBACK_DIRS.join(', ')}. ${INSTALL_HINT}`,
    { code: 'NATS_SERVER_NOT_FOUND', details: { searched } },
  );
}

/**
 * The `nats.conf` shipped with jetactor (at the package root), or undefined when it is missing.
 */
export function bundledNatsConfig(): string | undefined {
  // From runtime/nats/ in the sources, and from dist/runtime/nats/ once built.
  for (const candidate of ['../../nats.conf', '../../../nats.conf']) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  return undefined;
}

const versions = new Map<string, Promise<string>>();

function natsServerVersion(binary: string): Promise<string> {
  let version = versions.get(binary);
  if (version === undefined) {
    version = new Promise<string>((resolveVersion, reject) => {
      execFile(binary, ['--version'], { timeout: 10_000 }, (error, stdout, stderr) => {
        const match = /v?(\d+\.\d+\.\d+\S*)/.exec(`${stdout}${stderr}`);
        if (error === null && match?.[1] !== undefined) {
          resolveVersion(match[1]);
          return;
        }
        reject(
          new InfrastructureError(
            'NATS_SERVER_FAILED',
            `\`${binary} --version\` ${error === null ? `printed no version (${JSON.stringify(stdout.trim())})` : `failed: ${describeError(error)}`}; is it a nats-server binary? Set NATS_SERVER_BIN to the right one.`,
            { cause: error ?? undefined },
          ),
        );
      });
    });
    versions.set(binary, version);
    version.catch(() => versions.delete(binary));
  }
  return version;
}

async function configText(options: ResolvedOptions, dir: string): Promise<string> {
  const parts = [
    '# Written by jetactor LocalNatsServer; the command line sets ports, store and name.',
  ];
  if (options.config !== undefined) {
    const base = resolve(options.config);
    let text: string;
    try {
      text = await readFile(base, 'utf8');
    } catch (error) {
      throw new ConfigError(
        `Cannot read the nats-server config file ${JSON.stringify(options.config)} (${describeError(error)}); pass the path of a readable config file such as the project's nats.conf, or leave config out.`,
        { cause: error, details: { config: base } },
      );
    }
    parts.push(`# Copied from ${base}:`, rewriteBaseConfig(text, dirname(base), dir));
  }
  const cluster = options.cluster;
  if (cluster !== undefined) {
    parts.push(
      'cluster {',
      `  name: "${cluster.name}"`,
      `  listen: "${urlHost(options.host)}:${cluster.port}"`,
      '  routes: [',
      ...cluster.routes.map((route) => `    "${route}"`),
      '  ]',
      '}',
    );
  }
  return `${parts.join('\n')}\n`;
}

/**
 * Comments out `store_dir` (nats-server refuses `-sd` next to it) and makes `include` paths,
 * relative to the original file, relative to the copy.
 */
function rewriteBaseConfig(text: string, baseDir: string, copyDir: string): string {
  return text
    .split('\n')
    .map((line) => {
      if (/^\s*(store_dir|storedir|store)\s*[:=\s]/.test(line)) {
        return `# ${line.trim()}   # replaced by -sd`;
      }
      const include = /^(\s*)include\s+(["']?)([^"'\s;]+)\2\s*;?\s*$/.exec(line);
      if (include !== null && !isAbsolute(include[3] ?? '')) {
        const target = resolve(baseDir, include[3] ?? '');
        return `${include[1] ?? ''}include "${relative(copyDir, target)}"`;
      }
      return line;
    })
    .join('\n');
}

async function readPorts(
  portsDir: string,
  pid: number,
): Promise<{ client: number; monitor: number | undefined } | undefined> {
  try {
    const file = (await readdir(portsDir)).find((name) => name.endsWith(`_${pid}.ports`));
    if (file === undefined) return undefined;
    const ports = JSON.parse(await readFile(join(portsDir, file), 'utf8')) as {
      nats?: string[];
      monitoring?: string[];
    };
    const client = portOf(ports.nats?.[0]);
    if (client === undefined) return undefined;
    return { client, monitor: portOf(ports.monitoring?.[0]) };
  } catch {
    // Not written yet, or half written: look again.
    return undefined;
  }
}

function portOf(url: string | undefined): number | undefined {
  if (url === undefined) return undefined;
  const port = Number.parseInt(new URL(url).port, 10);
  return Number.isNaN(port) ? undefined : port;
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      promise.then(() => true),
      sleep(ms, false, { signal: timer.signal }),
    ]);
  } finally {
    timer.abort();
  }
}

/**
 * Waits (at most a second) until Linux reports the process in a state that `done` accepts; where
 * there is no `/proc`, returns at once.
 */
async function waitForProcessState(pid: number, done: (state: string) => boolean): Promise<void> {
  const deadline = Date.now() + 1_000;
  while (Date.now() < deadline) {
    let stat: string;
    try {
      stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return;
    }
    // The state follows the command name, which is in parentheses and may contain spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (done(state)) return;
    await sleep(2);
  }
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

const liveChildren = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let exitHookRegistered = false;

/**
 * Has `dir` removed if this process exits before the returned function is called (used for
 * directories a harness creates, such as a cluster's). Internal: not exported from the package.
 */
export function removeDirOnExit(dir: string): () => void {
  ownedDirs.add(dir);
  registerExitHook();
  return () => ownedDirs.delete(dir);
}

/** Kills every server still running and removes their directories when this process exits. */
function registerExitHook(): void {
  if (exitHookRegistered) return;
  exitHookRegistered = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const dir of ownedDirs) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // Best effort: the OS temp directory is cleaned eventually.
      }
    }
  });
}
