import { parseArgs } from 'node:util';

/** Scenario names, in the order a full run takes them. */
export const SCENARIO_NAMES = [
  'many-aggregates',
  'hot-aggregate',
  'latency',
  'cold-activation',
  'replay',
  'memory',
  'three-nodes',
  'reactors-projections',
] as const;

/** One scenario's name. */
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/** Contenders `--contender` can choose, as they are named on the command line. */
export const CONTENDER_KEYS = [
  'limit',
  'request-limit',
  'floor',
  'floor-end-to-end',
  'hand-written',
  'emmett',
  'in-process',
  'end-to-end',
] as const;

/** One contender's command-line name. */
export type ContenderKey = (typeof CONTENDER_KEYS)[number];

/** Sizes and durations of one benchmark run. */
export interface BenchOptions {
  /** A short smoke run: one repetition, short windows, smaller data. */
  quick: boolean;
  /** Scenarios to run, in run order. */
  scenarios: ScenarioName[];
  /** Contenders of the throughput scenarios to run; all of them when empty. */
  contenders: ContenderKey[];
  /** Repetitions of each measurement; the table shows their median. */
  reps: number;
  /** Time before each timed window, in milliseconds. */
  warmupMs: number;
  /** Length of each timed window, in milliseconds. */
  durationMs: number;
  /** Concurrent callers of the throughput scenarios. */
  callers: number;
  /** Accounts of the many-aggregates scenario. */
  accounts: number;
  /** Aggregates activated per repetition of the cold-activation scenario. */
  coldAggregates: number;
  /** Events of the one aggregate of the replay scenario. */
  replayEvents: number;
  /** Idle actors of the memory scenario. */
  idleActors: number;
  /** Commits of the backlog the reactors-projections scenario drains. */
  backlogCommits: number;
  /** Where the JSON results go (directory). */
  resultsDir: string;
}

/** What the command line asked for: options, or a usage text to print. */
export type ParsedCommandLine =
  { ok: true; options: BenchOptions } | { ok: false; exitCode: number; text: string };

export const USAGE = `Usage: npm run bench -- [options]

Runs the jetactor benchmark: each scenario against fresh nats-servers it starts itself, side by
side with the raw JetStream limit, the request limit (raw requests to a process that appends and
replies), the floor (only what every jetactor command must do), hand-written JetStream code and
Emmett on PostgreSQL.
Progress goes to stderr, the table to stdout, every figure to bench/results/<date>.json.

Options:
  --quick               ~1-minute smoke run: 1 repetition, 1 s windows, 500 callers,
                        5k accounts and smaller data; figures are not comparable to a full run
  --scenario <name>     run only this scenario (repeatable, or comma-separated):
                        ${SCENARIO_NAMES.join(', ')}
  --contender <name>    run only this contender where a scenario has several (repeatable, or
                        comma-separated): ${CONTENDER_KEYS.join(', ')}; for comparing
                        variants while working on one, not for the table
  --reps <n>            repetitions of each measurement (default 3; the median is shown)
  --duration <ms>       timed window of each throughput measurement (default 3000)
  --results <dir>       directory of the JSON results (default bench/results)
  --help                this text

Environment:
  PGURL or DATABASE_URL  PostgreSQL for the Emmett contender (default
                         postgres://postgres@127.0.0.1:5432/postgres); the benchmark drops and
                         creates the database jetactor_bench on that server
  NATS_SERVER_BIN        the nats-server binary (default: found on PATH)
`;

/** Parses the command line of `npm run bench`. */
export function parseBenchArgs(argv: readonly string[]): ParsedCommandLine {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean', default: false },
        scenario: { type: 'string', multiple: true },
        contender: { type: 'string', multiple: true },
        reps: { type: 'string' },
        duration: { type: 'string' },
        results: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    return { ok: false, exitCode: 2, text: `${(error as Error).message}\n\n${USAGE}` };
  }
  if (values.help) return { ok: false, exitCode: 0, text: USAGE };
  const requested = (values.scenario ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
  const unknown = requested.filter((s) => !(SCENARIO_NAMES as readonly string[]).includes(s));
  if (unknown.length > 0) {
    return {
      ok: false,
      exitCode: 2,
      text: `Unknown scenario ${unknown.map((s) => JSON.stringify(s)).join(', ')}; choose from ${SCENARIO_NAMES.join(', ')}.\n`,
    };
  }
  const contenders = (values.contender ?? []).flatMap((s) => s.split(',')).filter((s) => s !== '');
  const unknownContenders = contenders.filter(
    (s) => !(CONTENDER_KEYS as readonly string[]).includes(s),
  );
  if (unknownContenders.length > 0) {
    return {
      ok: false,
      exitCode: 2,
      text: `Unknown contender ${unknownContenders.map((s) => JSON.stringify(s)).join(', ')}; choose from ${CONTENDER_KEYS.join(', ')}.\n`,
    };
  }
  const positive = (value: string | undefined, name: string): number | string | undefined => {
    if (value === undefined) return undefined;
    const n = Number(value);
    return Number.isInteger(n) && n > 0 ? n : `--${name} must be a positive integer, got ${value}`;
  };
  const reps = positive(values.reps, 'reps');
  const duration = positive(values.duration, 'duration');
  for (const problem of [reps, duration]) {
    if (typeof problem === 'string') return { ok: false, exitCode: 2, text: `${problem}\n` };
  }
  const quick = values.quick;
  const scenarios = SCENARIO_NAMES.filter(
    (name) => requested.length === 0 || requested.includes(name),
  );
  return {
    ok: true,
    options: {
      quick,
      scenarios,
      contenders: CONTENDER_KEYS.filter((key) => contenders.includes(key)),
      reps: (reps as number | undefined) ?? (quick ? 1 : 3),
      warmupMs: quick ? 300 : 1_000,
      durationMs: (duration as number | undefined) ?? (quick ? 1_000 : 3_000),
      callers: quick ? 500 : 1_000,
      accounts: quick ? 5_000 : 10_000,
      coldAggregates: quick ? 2_000 : 10_000,
      replayEvents: quick ? 20_000 : 100_000,
      idleActors: quick ? 20_000 : 100_000,
      backlogCommits: quick ? 10_000 : 50_000,
      resultsDir: values.results ?? 'bench/results',
    },
  };
}
