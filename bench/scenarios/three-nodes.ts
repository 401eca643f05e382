import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { MsgpackCodec } from '../../runtime/index.js';
import { parseEventSubject } from '../../runtime/nats/subjects.js';
import { decodeEnvelope } from '../../runtime/event-store/commit-envelope.js';
import { accountIds } from '../contender.js';
import {
  JetactorEndToEndContender,
  endToEndAvailability,
} from '../contenders/jetactor-end-to-end.js';
import { depositAccount } from '../contenders/start-contenders.js';
import { closedLoop, type RunResult } from '../load.js';
import { median, notRunnableRow, throughputRow } from '../results.js';
import { formatRate, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'three-nodes';

/**
 * Three nodes on one domain: three `jetactor node bank` processes in one queue group, the load
 * generator sending deposits into the 10k accounts as in many-aggregates. NATS spreads the
 * requests over the nodes at random, so one account has actors on several nodes, and a node whose
 * actor is behind gets a conflict, catches up and decides again.
 *
 * Conflicts are counted from outside, without touching the nodes: a node catches up after a
 * conflict by a direct get of the account's last commit, so the load generator listens to the
 * stream's direct-get requests; per node (reply inbox) and account the first is the actor's
 * activation, every later one a conflict. At the end every balance is read back and compared
 * with the deposits acknowledged.
 */
export const threeNodes: Scenario = {
  name: NAME,
  title: 'three node processes on one domain: throughput, conflict rate, balances',
  async run(context: ScenarioContext): Promise<void> {
    const name = 'jetactor end-to-end ×3 nodes';
    const why = endToEndAvailability();
    if (why !== undefined) {
      context.add(notRunnableRow(NAME, name, 'cmd/s', why, ['reported (no target)']));
      return;
    }
    const { callers, accounts, reps, warmupMs, durationMs } = context.options;
    const ids = accountIds('acc', accounts);
    context.progress(`${NAME}: starting a server and 3 node processes`);
    const contender = await JetactorEndToEndContender.start(name, 3);
    try {
      const counter = await DirectGetCounter.start(
        await contender.bench.connect(`${NAME} observer`),
      );
      context.progress(`${NAME}: opening ${accounts} accounts`);
      await contender.open(ids, callers);
      const deposits = new Map<string, number>(ids.map((id) => [id, 0]));
      const account = depositAccount(ids, callers);
      const runs: RunResult[] = [];
      const conflictRates: number[] = [];
      for (let rep = 1; rep <= reps; rep++) {
        const before = counter.conflicts;
        let completed = 0;
        const run = await closedLoop({
          callers,
          warmupMs,
          durationMs,
          operation: async (caller, n) => {
            const id = account(caller, n);
            try {
              await contender.deposit(id, 100);
              deposits.set(id, (deposits.get(id) ?? 0) + 1);
            } finally {
              completed += 1;
            }
          },
        });
        // Conflicts of the whole run (warm-up and drain included) per command it completed.
        const conflicts = counter.conflicts - before;
        run.counters = { conflicts, activations: counter.activations };
        runs.push(run);
        conflictRates.push(conflicts / Math.max(1, completed));
        context.progress(
          `${NAME}: run ${rep}/${reps}: ${formatRate(run.perSecond)} cmd/s, ${conflicts} conflicts (${((100 * conflicts) / Math.max(1, completed)).toFixed(1)}% of commands)${run.errors > 0 ? `, ${run.errors} errors (${run.firstError ?? ''})` : ''}`,
        );
      }
      await counter.stop();
      context.progress(`${NAME}: reading the whole stream back to check every account`);
      const stored = await depositsInStream(contender.bench.nc);
      let wrong = 0;
      for (const id of ids) if ((stored.get(id) ?? 0) !== (deposits.get(id) ?? 0)) wrong += 1;
      const row = throughputRow(NAME, name, runs);
      const single = context.maxThroughput.get('jetactor end-to-end');
      const rate = median(conflictRates);
      row.note = `conflict rate ${(100 * rate).toFixed(1)}% (catch-ups after a conflict per command, counted from the nodes' direct gets)${single === undefined ? '' : `; one node end-to-end: ${formatRate(single)} cmd/s`}; every acknowledged deposit checked in the stream`;
      row.extra = {
        ...row.extra,
        conflictRate: rate,
        conflictRates,
        accountsOff: wrong,
        ...(single === undefined ? {} : { singleNodeEndToEnd: single }),
      };
      const R = await context.limit();
      if (R !== undefined && row.value !== undefined) row.ratioToR = row.value / R;
      row.checks.push({
        target: 'deposits stored exactly once',
        pass: wrong === 0,
        actual: `${wrong} accounts off`,
      });
      context.add(row);
    } finally {
      await contender.close();
    }
  },
};

/**
 * Counts catch-ups after conflicts by listening to direct gets of the last commit of an account
 * (`$JS.API.DIRECT.GET.<stream>.<subject>`): the first per node (reply inbox) and subject is an
 * activation, the others conflicts.
 */
class DirectGetCounter {
  conflicts = 0;
  /** First direct gets per node and account (activations) seen so far. */
  get activations(): number {
    return this.#seen.size;
  }
  readonly #seen = new Set<string>();
  readonly #subscription: Subscription;
  readonly #nc: NatsConnection;

  private constructor(nc: NatsConnection) {
    this.#nc = nc;
    this.#subscription = nc.subscribe('$JS.API.DIRECT.GET.jetactor_bank.>', {
      callback: (error, msg) => {
        if (error !== null || msg.reply === undefined) return;
        const inbox = msg.reply.slice(0, msg.reply.lastIndexOf('.'));
        const key = `${inbox} ${msg.subject}`;
        if (this.#seen.has(key)) this.conflicts += 1;
        else this.#seen.add(key);
      },
    });
  }

  static async start(nc: NatsConnection): Promise<DirectGetCounter> {
    const counter = new DirectGetCounter(nc);
    await nc.flush();
    return counter;
  }

  async stop(): Promise<void> {
    this.#subscription.unsubscribe();
    await this.#nc.flush();
  }
}

/** Deposits stored per account id, read from the whole stream by an ordered consumer. */
async function depositsInStream(nc: NatsConnection): Promise<Map<string, number>> {
  const stream = 'jetactor_bank';
  const last = (await (await jetstreamManager(nc)).streams.info(stream)).state.last_seq;
  const counts = new Map<string, number>();
  if (last === 0) return counts;
  const codec = new MsgpackCodec();
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume({ max_messages: 1024 });
  try {
    for await (const msg of messages) {
      const ref = parseEventSubject('jetactor', msg.subject);
      if (ref !== undefined) {
        const { commit } = decodeEnvelope(
          codec,
          ref,
          { subject: msg.subject, sequence: msg.seq },
          msg.data,
        );
        const n = commit.events.filter((event) => event.type === 'Deposited').length;
        counts.set(ref.id, (counts.get(ref.id) ?? 0) + n);
      }
      if (msg.seq >= last) break;
    }
  } finally {
    await messages.close();
  }
  return counts;
}
