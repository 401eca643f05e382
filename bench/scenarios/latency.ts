import { accountIds, type BankContender } from '../contender.js';
import { contenderNames, depositAccount, startContenders } from '../contenders/start-contenders.js';
import { openLoop, closedLoop, type RunResult } from '../load.js';
import { atMost, median, type Row } from '../results.js';
import { formatRate, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'latency';

/**
 * Latency at half of the maximum throughput: deposits sent at a fixed rate (open loop) into the
 * 10k accounts, half the contender's throughput measured by many-aggregates in this run (or
 * measured here first), latency counted from when each command was due. For reference, the raw
 * limit and the end-to-end floor then run at jetactor end-to-end's rate: what nats-server and
 * the three processes of the end-to-end path give at that load with no work, or only the floor's.
 */
export const latency: Scenario = {
  name: NAME,
  title: 'p99 at half of the maximum throughput (open loop, 10k accounts)',
  async run(context: ScenarioContext): Promise<void> {
    const { callers, accounts, reps, warmupMs, durationMs } = context.options;
    const ids = accountIds('acc', accounts);
    const started = await startContenders(context, NAME, {
      inProcess: true,
      endToEnd: true,
      limit: true,
      floorEndToEnd: true,
    });
    const isReference = (contender: BankContender): boolean =>
      contender.name === contenderNames.limit || contender.name === contenderNames.floorEndToEnd;
    // jetactor first: the references take jetactor end-to-end's rate.
    const ordered = [
      ...started.contenders.filter((contender) => !isReference(contender)),
      ...started.contenders.filter(isReference),
    ];
    let endToEndRate: number | undefined;
    try {
      for (const contender of ordered) {
        context.progress(`${NAME}: ${contender.name}: opening ${accounts} accounts`);
        await contender.open(ids, callers);
        const reference = isReference(contender);
        const max =
          reference && endToEndRate !== undefined
            ? undefined
            : await maximum(context, contender, ids);
        const rate =
          max === undefined ? (endToEndRate as number) : Math.max(1, Math.round(max / 2));
        const runs: RunResult[] = [];
        for (let rep = 1; rep <= reps; rep++) {
          let n = 0;
          const run = await openLoop({
            rate,
            warmupMs,
            durationMs,
            maxInFlight: 20_000,
            operation: () => {
              const index = n++;
              return contender.deposit(pick(index % callers, Math.floor(index / callers)), 100);
            },
          });
          runs.push(run);
          context.progress(
            `${NAME}: ${contender.name} at ${formatRate(rate)} cmd/s, run ${rep}/${reps}: p50 ${run.latency.p50.toFixed(1)} ms, p99 ${run.latency.p99.toFixed(1)} ms, max ${run.latency.max.toFixed(1)} ms`,
          );
        }
        const isEndToEnd = contender.name === contenderNames.endToEnd;
        if (isEndToEnd) endToEndRate = rate;
        const p99 = median(runs.map((run) => run.latency.p99));
        const row: Row = {
          scenario: NAME,
          contender: contender.name,
          status: 'measured',
          unit: 'ms p99',
          value: p99,
          values: runs.map((run) => run.latency.p99),
          latency: {
            count: median(runs.map((run) => run.latency.count)),
            p50: median(runs.map((run) => run.latency.p50)),
            p99,
            max: median(runs.map((run) => run.latency.max)),
          },
          runs,
          checks: isEndToEnd ? [atMost('p99 ≤ 25 ms', p99, 25)] : [],
          note: latencyNote(contender.name, rate, max),
          extra: {
            rate,
            ...(max === undefined ? {} : { maxThroughput: max }),
            errors: runs.reduce((sum, run) => sum + run.errors, 0),
            achieved: median(runs.map((run) => run.perSecond)),
          },
        };
        context.add(row);
      }
      for (const row of started.missing) {
        if (row.contender === contenderNames.endToEnd) {
          row.checks.push({ target: 'p99 ≤ 25 ms', pass: undefined });
          context.add(row);
        } else {
          context.add({ ...row, unit: 'ms p99' });
        }
      }
    } finally {
      await started.close();
    }

    function pick(caller: number, n: number): string {
      return depositAccount(ids, callers)(caller, n);
    }
  },
};

/** What a latency row measured, and at which rate. */
function latencyNote(name: string, rate: number, max: number | undefined): string {
  const at = `open loop at ${formatRate(rate)} cmd/s`;
  if (max === undefined) {
    const what =
      name === contenderNames.limit
        ? 'raw appends, no request and no node'
        : "the same three processes and four messages per command, with only the floor's work";
    return `${at}, jetactor end-to-end's rate; for reference: ${what}`;
  }
  const half = `${at} = half of ${formatRate(max)} cmd/s`;
  if (name === contenderNames.endToEnd) return half;
  if (name === contenderNames.inProcess) return `${half}; for reference (the target is end-to-end)`;
  return `${half} (jetactor end-to-end did not run); for reference`;
}

/** The contender's maximum throughput: from this run's many-aggregates, or measured now. */
async function maximum(
  context: ScenarioContext,
  contender: BankContender,
  ids: readonly string[],
): Promise<number> {
  const known = context.maxThroughput.get(contender.name);
  if (known !== undefined) return known;
  const { callers, warmupMs, durationMs } = context.options;
  context.progress(`${NAME}: ${contender.name}: measuring its maximum throughput first`);
  const account = depositAccount(ids, callers);
  const run = await closedLoop({
    callers,
    warmupMs,
    durationMs,
    operation: (caller, n) => contender.deposit(account(caller, n), 100),
  });
  context.maxThroughput.set(contender.name, run.perSecond);
  return run.perSecond;
}
