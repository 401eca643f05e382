import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { MsgpackCodec, type ServiceStats } from '../../runtime/index.js';
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
 * requests over the nodes at random; with partition affinity (on by default for `jetactor node`)
 * the node that gets a command forwards it to the owner of the account's partition, so one
 * account is written by one node and conflicts are rare.
 *
 * Conflicts are the nodes' own count (`conflicts` in their `$SRV.STATS`: every append the stream
 * refused because another node had written the account first), read before and after each run.
 * At the end every balance is read back and compared with the deposits acknowledged.
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
      const observer = await contender.bench.connect(`${NAME} observer`);
      context.progress(`${NAME}: opening ${accounts} accounts`);
      await contender.open(ids, callers);
      const deposits = new Map<string, number>(ids.map((id) => [id, 0]));
      const account = depositAccount(ids, callers);
      const runs: RunResult[] = [];
      const conflictRates: number[] = [];
      for (let rep = 1; rep <= reps; rep++) {
        const before = await nodeCounters(observer, 3);
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
        const after = await nodeCounters(observer, 3);
        // Conflicts of the whole run (warm-up and drain included) per command it completed.
        const conflicts = after.conflicts - before.conflicts;
        const forwarded = after.forwarded - before.forwarded;
        run.counters = { conflicts, forwarded };
        runs.push(run);
        conflictRates.push(conflicts / Math.max(1, completed));
        context.progress(
          `${NAME}: run ${rep}/${reps}: ${formatRate(run.perSecond)} cmd/s, ${conflicts} conflicts (${((100 * conflicts) / Math.max(1, completed)).toFixed(2)}% of commands), ${((100 * forwarded) / Math.max(1, completed)).toFixed(0)}% forwarded to the partition's owner${run.errors > 0 ? `, ${run.errors} errors (${run.firstError ?? ''})` : ''}`,
        );
      }
      await observer.close();
      context.progress(`${NAME}: reading the whole stream back to check every account`);
      const stored = await depositsInStream(contender.bench.nc);
      let wrong = 0;
      for (const id of ids) if ((stored.get(id) ?? 0) !== (deposits.get(id) ?? 0)) wrong += 1;
      const row = throughputRow(NAME, name, runs);
      const single = context.maxThroughput.get('jetactor end-to-end');
      const rate = median(conflictRates);
      row.note = `conflict rate ${(100 * rate).toFixed(2)}% (appends refused because another node wrote the account first, per command; the nodes' own counter) with partition affinity${single === undefined ? '' : `; one node end-to-end: ${formatRate(single)} cmd/s`}; every acknowledged deposit checked in the stream`;
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
 * The nodes' conflicts and forwarded commands, summed over the `nodes` that answer
 * `$SRV.STATS.jetactor` (from each node's command endpoint of domain bank).
 */
async function nodeCounters(
  nc: NatsConnection,
  nodes: number,
): Promise<{ conflicts: number; forwarded: number }> {
  const totals = { conflicts: 0, forwarded: 0 };
  let answered = 0;
  const replies = await nc.requestMany('$SRV.STATS.jetactor', '', {
    strategy: 'count',
    maxMessages: nodes,
    maxWait: 2_000,
  });
  for await (const msg of replies) {
    const endpoint = msg.json<ServiceStats>().endpoints.find((e) => e.name === 'cmd-bank');
    const data = endpoint?.data as
      { forwarded?: number; actors?: { conflicts?: number } } | undefined;
    totals.conflicts += data?.actors?.conflicts ?? 0;
    totals.forwarded += data?.forwarded ?? 0;
    answered += 1;
  }
  if (answered !== nodes) {
    throw new Error(`${answered} of ${nodes} nodes answered $SRV.STATS.jetactor within 2 s`);
  }
  return totals;
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
