/**
 * `npm run bench`: runs the scenarios, prints the table on stdout and writes every figure to
 * bench/results/<date>.json. See docs/benchmarks.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { disablePretenuring } from '../runtime/pretenuring.js';
import { parseBenchArgs, type ScenarioName } from './bench-options.js';
import { depositCommitSize } from './commit-payload.js';
import { accountIds } from './contender.js';
import { EmmettContender, recreateBenchDatabase } from './contenders/emmett.js';
import { LimitContender } from './contenders/limit.js';
import { contenderNames, depositAccount } from './contenders/start-contenders.js';
import { closedLoop, describe } from './load.js';
import { machineInfo } from './machine.js';
import { formatTable, summarise, type BenchReport } from './report.js';
import { failedRow, median, type Row } from './results.js';
import type { Scenario, ScenarioContext } from './scenario.js';
import { coldActivation } from './scenarios/cold-activation.js';
import { hotAggregate } from './scenarios/hot-aggregate.js';
import { latency } from './scenarios/latency.js';
import { manyAggregates } from './scenarios/many-aggregates.js';
import { memory } from './scenarios/memory.js';
import { reactorsProjections } from './scenarios/reactors-projections.js';
import { replay } from './scenarios/replay.js';
import { threeNodes } from './scenarios/three-nodes.js';

const scenarios: Record<ScenarioName, Scenario> = {
  'many-aggregates': manyAggregates,
  'hot-aggregate': hotAggregate,
  latency,
  'cold-activation': coldActivation,
  replay,
  memory,
  'three-nodes': threeNodes,
  'reactors-projections': reactorsProjections,
};

async function main(): Promise<number> {
  // Every process of the benchmark collects as a `jetactor` process does (the CLI turns it off).
  disablePretenuring();
  const parsed = parseBenchArgs(process.argv.slice(2));
  if (!parsed.ok) {
    (parsed.exitCode === 0 ? process.stdout : process.stderr).write(parsed.text);
    return parsed.exitCode;
  }
  const { options } = parsed;
  const began = performance.now();
  const date = new Date().toISOString();
  const progress = (message: string): void => {
    const seconds = ((performance.now() - began) / 1000).toFixed(0).padStart(4);
    process.stderr.write(`[${seconds}s] ${message}\n`);
  };
  const machine = await machineInfo();
  if (
    options.scenarios.includes('many-aggregates') &&
    (options.contenders.length === 0 || options.contenders.includes('emmett'))
  ) {
    const why = await EmmettContender.unavailable();
    if (why === undefined) machine.postgres = await recreateBenchDatabase();
  }
  progress(
    `jetactor bench${options.quick ? ' --quick' : ''}: ${options.scenarios.join(', ')}; ${machine.cores} cores, Node ${machine.node}, nats-server ${machine.natsServer}`,
  );
  const rows: Row[] = [];
  let limit: number | undefined;
  let limitMeasured: Promise<number | undefined> | undefined;
  const payloadSize = depositCommitSize();
  const context: ScenarioContext = {
    options,
    payloadSize,
    progress,
    rows,
    maxThroughput: new Map(),
    add: (row) => {
      rows.push(row);
      return row;
    },
    setLimit: (value) => {
      limit = value;
    },
    limit: () => {
      if (limit !== undefined) return Promise.resolve(limit);
      limitMeasured ??= measureLimit(context).then((value) => {
        limit = value;
        return value;
      });
      return limitMeasured;
    },
  };
  let failures = 0;
  for (const name of options.scenarios) {
    const scenario = scenarios[name];
    progress(`${name}: ${scenario.title}`);
    try {
      await scenario.run(context);
    } catch (error) {
      failures += 1;
      progress(`${name}: FAILED: ${describe(error)}`);
      rows.push(failedRow(name, '(scenario)', '', error));
    }
  }
  const report: BenchReport = {
    date,
    durationSeconds: (performance.now() - began) / 1000,
    machine,
    options: { ...options },
    ...(limit === undefined ? {} : { limit }),
    payloadBytes: payloadSize,
    rows,
    summary: summarise(rows),
  };
  process.stdout.write(`${formatTable(report)}\n`);
  const dir = resolve(options.resultsDir);
  await mkdir(dir, { recursive: true });
  const file = join(dir, `${date.replace(/[:.]/g, '-')}${options.quick ? '-quick' : ''}.json`);
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  progress(`results written to ${file}`);
  return failures > 0 ? 1 : 0;
}

/** R alone, when the many-aggregates scenario (which measures it with the others) is not run. */
async function measureLimit(context: ScenarioContext): Promise<number | undefined> {
  const { callers, accounts, reps, warmupMs, durationMs } = context.options;
  context.progress(`limit: measuring R on a fresh server (many-aggregates is not run)`);
  const contender = await LimitContender.start(contenderNames.limit, context.payloadSize);
  try {
    const account = depositAccount(accountIds('acc', accounts), callers);
    const rates: number[] = [];
    for (let rep = 1; rep <= reps; rep++) {
      const run = await closedLoop({
        callers,
        warmupMs,
        durationMs,
        operation: (caller, n) => contender.deposit(account(caller, n)),
      });
      rates.push(run.perSecond);
      context.progress(`limit: run ${rep}/${reps}: ${Math.round(run.perSecond)} appends/s`);
    }
    return median(rates);
  } catch (error) {
    context.progress(`limit: failed: ${describe(error)}`);
    return undefined;
  } finally {
    await contender.close();
  }
}

// Ctrl-C and kill: exit through process.exit so the nats-servers started here are killed and
// their temp stores removed (LocalNatsServer does that on exit).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\njetactor bench: ${signal}, stopping\n`);
    process.exit(130);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `jetactor bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
