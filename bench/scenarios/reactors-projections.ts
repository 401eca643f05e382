import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  JetStreamEventStore,
  createLogger,
  createNode,
  defineDomain,
  defineProjection,
  defineReactor,
  type CommandResult,
  type DomainDefinition,
  type DomainNode,
} from '../../runtime/index.js';
import { Account, balances } from '../../domains/bank/index.js';
import { startBenchServer } from '../bench-server.js';
import { accountIds } from '../contender.js';
import { benchSupervisor } from '../contenders/jetactor-in-process.js';
import { contenderNames, depositAccount } from '../contenders/start-contenders.js';
import { LatencyHistogram } from '../latency-histogram.js';
import { closedLoop, forEachLimited, type RunResult } from '../load.js';
import { median, type Row } from '../results.js';
import { formatRate, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'reactors-projections';

/** How often the lag probe asks the projection to reach the last acknowledged deposit. */
const PROBE_INTERVAL_MS = 20;

/** One backlog drain: events handled, how long it took, CPU of this process per event. */
interface Drain {
  events: number;
  ms: number;
  perSecond: number;
  cpuUsPerEvent: number;
}

/**
 * Reactors and projections, on JetStream, in-process (the node runs in the benchmark's process):
 *
 * - events per second through a reactor: a backlog of one-event commits (the accounts of
 *   many-aggregates opened, then deposits) drained by a fresh reactor whose handlers do nothing,
 *   so the figure is the runtime's own cost (durable consumer, dispatch per aggregate, workers,
 *   acknowledgements);
 * - events per second through a KV projection: the same backlog drained by the bank domain's
 *   `balances` projection (per deposit two reads and two writes of documents, written in batches
 *   with the checkpoint);
 * - projection lag under the many-aggregates load: a node hosting `Account` and `balances` takes
 *   deposits from 1k callers on 10k accounts; every 20 ms a probe takes the last acknowledged
 *   deposit and waits until the projection has applied it (`projections.waitFor`), and the
 *   projection's lag in commits is sampled.
 *
 * Each repetition drains with a reactor or projection of its own name (own consumer, own bucket).
 */
export const reactorsProjections: Scenario = {
  name: NAME,
  title: 'events through a reactor and a KV projection; projection lag under load',
  async run(context: ScenarioContext): Promise<void> {
    await drains(context);
    await lagUnderLoad(context);
  },
};

async function drains(context: ScenarioContext): Promise<void> {
  const { accounts, backlogCommits, callers, reps } = context.options;
  const bench = await startBenchServer(`${NAME} backlog`);
  try {
    const ids = accountIds('acc', accounts);
    const deposits = Math.max(0, Math.round(backlogCommits / accounts) - 1);
    const commits = accounts * (1 + deposits);
    context.progress(
      `${NAME}: writing a backlog of ${commits} one-event commits (${accounts} accounts opened, ${deposits} deposits each)`,
    );
    const store = await JetStreamEventStore.open({ connection: bench.nc });
    const writer = await startNode(store, defineDomain({ name: 'bank', aggregates: [Account] }));
    let last = 0;
    await forEachLimited(ids, callers, async (id) => {
      const opened = await writer.execute({
        aggregate: 'Account',
        id,
        command: 'open',
        input: { owner: `owner-${id}` },
      });
      last = Math.max(last, opened.position);
      for (let i = 0; i < deposits; i++) {
        const deposited = await writer.execute({
          aggregate: 'Account',
          id,
          command: 'deposit',
          input: { amount: 1 },
        });
        last = Math.max(last, deposited.position);
      }
    });
    await writer.stop(10_000);

    const reactorRuns: Drain[] = [];
    const projectionRuns: Drain[] = [];
    for (let rep = 1; rep <= reps; rep++) {
      const reactor = countingReactor(`drain${rep}`);
      const reactorRun = await drain(
        store,
        defineDomain({ name: 'bank', aggregates: [Account], reactors: [reactor] }),
        (node) => (node.stats().reactors[`bank.${reactor.name}`]?.handled ?? 0) >= commits,
        commits,
      );
      reactorRuns.push(reactorRun);
      context.progress(`${NAME}: reactor, run ${rep}/${reps}: ${formatDrain(reactorRun)}`);

      const projection = balancesNamed(`balances${rep}`);
      const projectionRun = await drain(
        store,
        defineDomain({ name: 'bank', aggregates: [Account], projections: [projection] }),
        (node) => (node.stats().projections[`bank.${projection.name}`]?.position ?? 0) >= last,
        commits,
      );
      projectionRuns.push(projectionRun);
      context.progress(`${NAME}: KV projection, run ${rep}/${reps}: ${formatDrain(projectionRun)}`);
    }
    await store.close();
    context.add(
      drainRow(
        `${contenderNames.inProcess}, reactor`,
        reactorRuns,
        `backlog of ${commits} one-event commits on ${accounts} accounts, drained by a fresh reactor whose handlers do nothing (default concurrency 16)`,
      ),
    );
    context.add(
      drainRow(
        `${contenderNames.inProcess}, KV projection`,
        projectionRuns,
        `the same backlog through the bank domain's balances projection (NATS KV, two documents per deposit, batches of at most 256 commits)`,
      ),
    );
  } finally {
    await bench.close();
  }
}

async function lagUnderLoad(context: ScenarioContext): Promise<void> {
  const { accounts, callers, reps, warmupMs, durationMs } = context.options;
  const bench = await startBenchServer(`${NAME} lag`);
  try {
    const store = await JetStreamEventStore.open({ connection: bench.nc });
    const projection = balancesNamed('balances');
    const node = await startNode(
      store,
      defineDomain({ name: 'bank', aggregates: [Account], projections: [projection] }),
    );
    const key = `bank.${projection.name}`;
    const ids = accountIds('acc', accounts);
    context.progress(`${NAME}: lag: opening ${accounts} accounts on a node with the projection`);
    let opened = 0;
    await forEachLimited(ids, callers, async (id) => {
      const result = await node.execute({
        aggregate: 'Account',
        id,
        command: 'open',
        input: { owner: `owner-${id}` },
      });
      opened = Math.max(opened, result.position);
    });
    await node.projections.waitFor('bank', projection.name, opened, 60_000);
    const account = depositAccount(ids, callers);
    const runs: RunResult[] = [];
    const lags: LatencyHistogram[] = [];
    const behind: number[][] = [];
    const catchUps: number[] = [];
    const appliedRates: number[] = [];
    for (let rep = 1; rep <= reps; rep++) {
      let latest: { position: number; at: number } | undefined;
      let loading = true;
      const histogram = new LatencyHistogram();
      const samples: number[] = [];
      const windowOpens = performance.now() + warmupMs;
      const probes: Promise<void>[] = [];
      let appliedAtOpen: number | undefined;
      const probe = (async () => {
        while (loading) {
          await sleep(PROBE_INTERVAL_MS);
          const target = latest;
          const stats = node.stats().projections[key];
          if (target === undefined || performance.now() < windowOpens) continue;
          appliedAtOpen ??= stats?.applied ?? 0;
          samples.push(stats?.lag ?? 0);
          probes.push(
            node.projections
              .waitFor('bank', projection.name, target.position, 120_000)
              .then(() => histogram.record(performance.now() - target.at)),
          );
        }
      })();
      const run = await closedLoop({
        callers,
        warmupMs,
        durationMs,
        operation: async (caller, n) => {
          const result: CommandResult = await node.execute({
            domain: 'bank',
            aggregate: 'Account',
            id: account(caller, n),
            command: 'deposit',
            input: { amount: 1 },
          });
          latest = { position: result.position, at: performance.now() };
        },
      });
      loading = false;
      const stopped = performance.now();
      const applied =
        (((node.stats().projections[key]?.applied ?? 0) - (appliedAtOpen ?? 0)) * 1000) /
        durationMs;
      await probe;
      const end = latest?.position ?? 0;
      await node.projections.waitFor('bank', projection.name, end, 120_000);
      const catchUp = performance.now() - stopped;
      await Promise.all(probes);
      appliedRates.push(applied);
      runs.push(run);
      lags.push(histogram);
      behind.push(samples);
      catchUps.push(catchUp);
      const lag = histogram.summary();
      context.progress(
        `${NAME}: lag, run ${rep}/${reps}: ${formatRate(run.perSecond)} cmd/s with the projection applying ${formatRate(applied)} events/s; lag p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms, max ${lag.max.toFixed(1)} ms; at most ${Math.max(0, ...samples)} commits behind; caught up ${catchUp.toFixed(0)} ms after the load stopped`,
      );
    }
    await node.stop(10_000);
    await store.close();
    const summaries = lags.map((h) => h.summary());
    const p99 = median(summaries.map((s) => s.p99));
    const rate = median(runs.map((r) => r.perSecond));
    const alone = context.maxThroughput.get(contenderNames.inProcess);
    context.add({
      scenario: NAME,
      contender: `${contenderNames.inProcess}, projection lag under load`,
      status: 'measured',
      unit: 'ms p99',
      value: p99,
      values: summaries.map((s) => s.p99),
      latency: {
        count: median(summaries.map((s) => s.count)),
        p50: median(summaries.map((s) => s.p50)),
        p99,
        max: median(summaries.map((s) => s.max)),
      },
      checks: [],
      note: `many-aggregates load (${callers} callers, ${accounts} accounts) on a node hosting Account and the balances projection: ${formatRate(rate)} cmd/s${alone === undefined ? '' : ` (${(rate / alone).toFixed(2)}× the node alone in many-aggregates)`}, the projection applying ${formatRate(median(appliedRates))} events/s meanwhile; lag = from a deposit's acknowledgement until the projection has applied it, probed every ${PROBE_INTERVAL_MS} ms; at most ${formatRate(median(behind.map((s) => Math.max(0, ...s))))} commits behind; caught up ${median(catchUps).toFixed(0)} ms after the load stopped`,
      extra: {
        commandsPerSecond: rate,
        appliedPerSecond: appliedRates,
        commandRuns: runs,
        lagRuns: summaries,
        commitsBehindMax: behind.map((s) => Math.max(0, ...s)),
        commitsBehindMedian: behind.map((s) => median(s)),
        catchUpMs: catchUps,
      },
    });
  } finally {
    await bench.close();
  }
}

/** Starts a fresh node on `store` hosting `domain`, waits until `done`, and stops it. */
async function drain(
  store: JetStreamEventStore,
  domain: DomainDefinition,
  done: (node: DomainNode) => boolean,
  events: number,
): Promise<Drain> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const node = await startNode(store, domain);
  const deadline = start + 300_000;
  while (!done(node)) {
    if (performance.now() > deadline) {
      await node.stop(5_000);
      throw new Error(`${events} events not handled within 300 s: ${JSON.stringify(node.stats())}`);
    }
    await sleep(2);
  }
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  await node.stop(10_000);
  return {
    events,
    ms,
    perSecond: (events * 1000) / ms,
    cpuUsPerEvent: (used.user + used.system) / events,
  };
}

async function startNode(
  store: JetStreamEventStore,
  domain: DomainDefinition,
): Promise<DomainNode> {
  const node = createNode({
    domains: [domain],
    store,
    logger: createLogger('error'),
    supervisor: benchSupervisor,
  });
  await node.start();
  return node;
}

/** A reactor on `Account` whose handlers do nothing. */
function countingReactor(name: string) {
  return defineReactor({
    name,
    aggregates: [Account],
    on: {
      'Account.Opened': () => undefined,
      'Account.Deposited': () => undefined,
    },
  });
}

/** The bank domain's `balances` projection under another name (its own consumer and bucket). */
function balancesNamed(name: string) {
  return defineProjection({
    name,
    aggregates: balances.aggregates,
    store: balances.store,
    on: balances.on,
  });
}

function drainRow(contender: string, runs: readonly Drain[], note: string): Row {
  const value = median(runs.map((r) => r.perSecond));
  return {
    scenario: NAME,
    contender,
    status: 'measured',
    unit: 'events/s',
    value,
    values: runs.map((r) => r.perSecond),
    checks: [],
    note: `${note}; ${median(runs.map((r) => r.cpuUsPerEvent)).toFixed(0)} µs of CPU per event in the node's process`,
    extra: { runs },
  };
}

function formatDrain(run: Drain): string {
  return `${run.events} events in ${run.ms.toFixed(0)} ms = ${formatRate(run.perSecond)} events/s, ${run.cpuUsPerEvent.toFixed(0)} µs CPU/event`;
}
