import type { NatsConnection } from '@nats-io/transport-node';
import {
  JetStreamEventStore,
  createLogger,
  createNode,
  type DomainDefinition,
  type DomainNode,
  type SupervisorOptions,
} from '../../runtime/index.js';
import { benchBank } from '../bench-domain.js';
import { benchProcesses, startBenchServer, type BenchServer } from '../bench-server.js';
import type { BankContender } from '../contender.js';
import { forEachLimited } from '../load.js';
import type { WatchedProcess } from '../process-cpu.js';

/** Supervisor settings of every benchmark node: no passivation while a scenario runs. */
export const benchSupervisor: Partial<SupervisorOptions> = {
  idleTimeoutMs: 30 * 60_000,
  maxActive: 1_000_000,
};

/**
 * A node on a JetStream store over `nc`, started, hosting `domain`: by default the benchmark's
 * bank domain (the `Account` aggregate alone, no reactor or projection).
 */
export async function startBankNode(
  nc: NatsConnection,
  supervisor: Partial<SupervisorOptions> = {},
  domain: DomainDefinition = benchBank,
): Promise<DomainNode> {
  const store = await JetStreamEventStore.open({ connection: nc });
  const node = createNode({
    domains: [domain],
    store,
    logger: createLogger('error'),
    supervisor: { ...benchSupervisor, ...supervisor },
  });
  await node.start();
  return node;
}

/**
 * jetactor in-process: a node with the bank domain's `Account` aggregate (no reactor, no
 * projection) on a `JetStreamEventStore`, called through the domain API (`node.execute`) in the
 * load generator's process; no command transport.
 */
export class JetactorInProcessContender implements BankContender {
  readonly name: string;
  /** The node under load. */
  readonly node: DomainNode;
  readonly #bench: BenchServer;

  private constructor(name: string, bench: BenchServer, node: DomainNode) {
    this.name = name;
    this.#bench = bench;
    this.node = node;
  }

  /** Starts a fresh server and a node on it. */
  static async start(name: string): Promise<JetactorInProcessContender> {
    const bench = await startBenchServer(name);
    try {
      return new JetactorInProcessContender(name, bench, await startBankNode(bench.nc));
    } catch (error) {
      await bench.close();
      throw error;
    }
  }

  async open(ids: readonly string[], concurrency: number): Promise<void> {
    await forEachLimited(ids, concurrency, (id) =>
      this.node.execute({ aggregate: 'Account', id, command: 'open', input: { owner: 'bench' } }),
    );
  }

  deposit(id: string, amount: number): Promise<unknown> {
    return this.node.execute({
      domain: 'bank',
      aggregate: 'Account',
      id,
      command: 'deposit',
      input: { amount },
    });
  }

  processes(): WatchedProcess[] {
    return benchProcesses(this.#bench);
  }

  async close(): Promise<void> {
    await this.node.stop(5_000);
    await this.node.store.close();
    await this.#bench.close();
  }
}
