import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from '@nats-io/transport-node';
import { createClient, type JetactorClient } from '../../runtime/messaging/client.js';
import { benchBank } from '../bench-domain.js';
import { benchProcesses, startBenchServer, type BenchServer } from '../bench-server.js';
import type { BankContender } from '../contender.js';
import { forEachLimited } from '../load.js';
import type { WatchedProcess } from '../process-cpu.js';

/** The built parts the end-to-end contender needs: the typed client and `jetactor node`. */
const needed = [
  { file: '../../runtime/messaging/client.js', what: 'runtime/messaging/client.ts (typed client)' },
  {
    file: '../../runtime/cli/node-command.js',
    what: '`jetactor node` (runtime/cli/node-command.ts)',
  },
];

const cli = fileURLToPath(new URL('../../runtime/cli/main.js', import.meta.url));

/** The domain module the node processes host: {@link benchBank} (the `Account` aggregate alone). */
const benchDomainModule = fileURLToPath(new URL('../bench-domain.js', import.meta.url));

/** Why the end-to-end contender cannot run, or undefined when it can. */
export function endToEndAvailability(): string | undefined {
  const absent = needed.filter(
    ({ file }) => !existsSync(fileURLToPath(new URL(file, import.meta.url))),
  );
  if (absent.length === 0) return undefined;
  return `not yet runnable: needs ${absent.map((a) => a.what).join(' and ')}`;
}

const children = new Set<ChildProcess>();
let exitHook = false;

/**
 * jetactor end-to-end: `jetactor node dist/bench/bench-domain.js` (the bank domain's `Account`
 * aggregate, no reactor or projection) running as its own process (1 or more, one queue group),
 * and this process as the load generator, sending each command as a NATS request with the typed
 * client (`createClient(...).execute`).
 */
export class JetactorEndToEndContender implements BankContender {
  readonly name: string;
  /** The load generator's client. */
  readonly client: JetactorClient;
  /** The server. */
  readonly bench: BenchServer;
  readonly #nodes: NodeProcess[];

  private constructor(
    name: string,
    bench: BenchServer,
    client: JetactorClient,
    nodes: NodeProcess[],
  ) {
    this.name = name;
    this.bench = bench;
    this.client = client;
    this.#nodes = nodes;
  }

  /** Starts a fresh server, `nodes` node processes on it, and a client. */
  static async start(name: string, nodes = 1): Promise<JetactorEndToEndContender> {
    const bench = await startBenchServer(name);
    const started: NodeProcess[] = [];
    try {
      for (let i = 0; i < nodes; i++) started.push(await NodeProcess.start(bench.server.url));
      const nc: NatsConnection = await bench.connect(`${name} load generator`);
      const client = createClient({ connection: nc, domains: [benchBank] });
      return new JetactorEndToEndContender(name, bench, client, started);
    } catch (error) {
      await Promise.all(started.map((node) => node.stop()));
      await bench.close();
      throw error;
    }
  }

  async open(ids: readonly string[], concurrency: number): Promise<void> {
    await forEachLimited(ids, concurrency, (id) =>
      this.client.execute({
        domain: 'bank',
        aggregate: 'Account',
        id,
        command: 'open',
        input: { owner: 'bench' },
      }),
    );
  }

  deposit(id: string, amount: number): Promise<unknown> {
    return this.client.execute({
      domain: 'bank',
      aggregate: 'Account',
      id,
      command: 'deposit',
      input: { amount },
    });
  }

  processes(): WatchedProcess[] {
    const nodes = this.#nodes.flatMap((node, index) =>
      node.pid === undefined
        ? []
        : [{ role: index === 0 ? 'node' : `node ${index + 1}`, pid: node.pid }],
    );
    return [...benchProcesses(this.bench), ...nodes];
  }

  async close(): Promise<void> {
    this.client.close();
    await Promise.all(this.#nodes.map((node) => node.stop()));
    await this.bench.close();
  }
}

/** One `jetactor node` child process hosting {@link benchBank}. */
class NodeProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #log = '';

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('close', () => resolve()));
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        this.#log = (this.#log + chunk).slice(-4_000);
        if (nodeLog !== undefined) appendFileSync(nodeLog, chunk);
      });
    }
  }

  /** Spawns a node on `url` and resolves once it serves commands. */
  static async start(url: string): Promise<NodeProcess> {
    const child = spawn(
      process.execPath,
      [...nodeFlags(), cli, 'node', benchDomainModule, '--nats', url, '--log-level', 'warn'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.add(child);
    child.once('close', () => children.delete(child));
    registerExitHook();
    const node = new NodeProcess(child);
    const deadline = Date.now() + 30_000;
    while (!node.#log.includes('jetactor node: hosting')) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`jetactor node exited before serving: ${node.#log.slice(-1_000)}`);
      }
      if (Date.now() > deadline) {
        await node.stop();
        throw new Error(`jetactor node did not serve within 30 s: ${node.#log.slice(-1_000)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return node;
  }

  /** Its pid while it runs. */
  get pid(): number | undefined {
    return this.#child.exitCode === null ? this.#child.pid : undefined;
  }

  /** SIGTERM (graceful stop), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }
}

/**
 * Node flags of the node processes: `JETACTOR_BENCH_NODE_FLAGS` (space-separated, e.g.
 * `--cpu-prof --cpu-prof-dir=.tmp/prof` to profile them), none by default.
 */
function nodeFlags(): string[] {
  return (process.env.JETACTOR_BENCH_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== '');
}

/**
 * Where the node processes' output goes as well, if anywhere: `JETACTOR_BENCH_NODE_LOG` (a file,
 * appended to), e.g. to read `--trace-gc` given in `JETACTOR_BENCH_NODE_FLAGS`.
 */
const nodeLog = process.env.JETACTOR_BENCH_NODE_LOG || undefined;

/** Kills node processes left running if this process exits without stopping them. */
function registerExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
  });
}
