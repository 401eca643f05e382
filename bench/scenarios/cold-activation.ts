import { startBenchServer } from '../bench-server.js';
import { accountIds } from '../contender.js';
import { startBankNode } from '../contenders/jetactor-in-process.js';
import { contenderNames } from '../contenders/start-contenders.js';
import { forEachLimited, timedBatch, type BatchResult } from '../load.js';
import { atLeast, median, type Row } from '../results.js';
import { formatRate, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'cold-activation';

/** Commits (one event each) every aggregate has before it is activated. */
const EVENTS_BEFORE = 5;

/**
 * Cold activation: aggregates with 5 events each (open + 4 deposits, one commit each), written
 * and passivated by one node; then a fresh node (new connection, new store) activates each by
 * one deposit, 1k at a time. Each repetition activates its own set of aggregates, so every
 * activation replays exactly 5 commits.
 */
export const coldActivation: Scenario = {
  name: NAME,
  title: `aggregates with ${EVENTS_BEFORE} events, each activated by one command`,
  async run(context: ScenarioContext): Promise<void> {
    const { coldAggregates, reps, callers } = context.options;
    const bench = await startBenchServer(NAME);
    try {
      const sets = Array.from({ length: reps }, (_, rep) =>
        accountIds(`cold${rep}`, coldAggregates),
      );
      const all = sets.flat();
      context.progress(
        `${NAME}: writing ${all.length} aggregates × ${EVENTS_BEFORE} commits through a node`,
      );
      const writer = await startBankNode(bench.nc);
      await forEachLimited(all, callers, async (id) => {
        await writer.execute({
          aggregate: 'Account',
          id,
          command: 'open',
          input: { owner: 'bench' },
        });
        for (let i = 1; i < EVENTS_BEFORE; i++) {
          await writer.execute({
            aggregate: 'Account',
            id,
            command: 'deposit',
            input: { amount: 100 },
          });
        }
      });
      await writer.stop(10_000);
      await writer.store.close();
      const results: BatchResult[] = [];
      const cpuPerActivation: number[] = [];
      for (const [rep, ids] of sets.entries()) {
        const nc = await bench.connect(`${NAME} ${rep + 1}`);
        const node = await startBankNode(nc);
        const cpu = process.cpuUsage();
        const result = await timedBatch(ids, callers, (id) =>
          node.execute({ aggregate: 'Account', id, command: 'deposit', input: { amount: 100 } }),
        );
        const used = process.cpuUsage(cpu);
        const perActivation = (used.user + used.system) / ids.length;
        results.push(result);
        cpuPerActivation.push(perActivation);
        context.progress(
          `${NAME}: run ${rep + 1}/${reps}: ${formatRate(result.perSecond)} activations/s (${result.ops} in ${result.elapsedMs.toFixed(0)} ms, p99 ${result.latency.p99.toFixed(1)} ms, ${perActivation.toFixed(0)} µs of CPU per activation${result.errors > 0 ? `, ${result.errors} errors: ${result.firstError ?? ''}` : ''})`,
        );
        await node.stop(10_000);
        await node.store.close();
        await nc.close();
      }
      const value = median(results.map((r) => r.perSecond));
      const row: Row = {
        scenario: NAME,
        contender: contenderNames.inProcess,
        status: 'measured',
        unit: 'activations/s',
        value,
        values: results.map((r) => r.perSecond),
        latency: {
          count: median(results.map((r) => r.latency.count)),
          p50: median(results.map((r) => r.latency.p50)),
          p99: median(results.map((r) => r.latency.p99)),
          max: median(results.map((r) => r.latency.max)),
        },
        checks: [atLeast('≥ 5k activations/s', value, 5_000)],
        note: `${coldAggregates} aggregates per run, ${EVENTS_BEFORE} commits each, ${callers} at a time; latency of one activation (replay + command); ${median(cpuPerActivation).toFixed(0)} µs of CPU per activation in the node's process`,
        extra: {
          errors: results.reduce((sum, r) => sum + r.errors, 0),
          cpuUsPerActivation: cpuPerActivation,
          batches: results,
        },
      };
      context.add(row);
    } finally {
      await bench.close();
    }
  },
};
