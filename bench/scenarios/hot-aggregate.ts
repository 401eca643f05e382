import { startContenders } from '../contenders/start-contenders.js';
import { ratioOfR, throughputRow, type Row } from '../results.js';
import { measureRounds, type Entrant, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'hot-aggregate';

/** The reference of the hot aggregate: appends to one subject, each after the last is acked. */
export const ONE_AT_A_TIME = 'one-at-a-time appends';

/**
 * One hot aggregate: 1k concurrent callers deposit into one account. Optimistic concurrency on
 * one subject allows one append in flight at a time; jetactor's group commit decides everything
 * that waits into the next commit. The reference is the raw limit of one-at-a-time appends (one
 * caller, each append waiting for the last acknowledgement).
 */
export const hotAggregate: Scenario = {
  name: NAME,
  title: 'one account, 1k concurrent callers, deposits',
  async run(context: ScenarioContext): Promise<void> {
    const { callers } = context.options;
    const started = await startContenders(context, NAME, {
      limit: true,
      handWritten: true,
      inProcess: true,
      endToEnd: true,
    });
    const { names } = started;
    try {
      const R = await context.limit();
      const entrants: Entrant[] = [];
      for (const contender of started.contenders) {
        context.progress(`${NAME}: ${contender.name}: opening the account`);
        await contender.open(['hot'], 1);
        entrants.push({
          contender,
          callers: contender.name === names.limit ? 1 : callers,
          account: () => 'hot',
        });
      }
      const runs = await measureRounds(context, NAME, entrants);
      for (const [index, entrant] of entrants.entries()) {
        const isReference = entrant.contender.name === names.limit;
        const row: Row = throughputRow(
          NAME,
          isReference ? ONE_AT_A_TIME : entrant.contender.name,
          runs[index] ?? [],
        );
        if (R !== undefined && row.value !== undefined) row.ratioToR = row.value / R;
        if (isReference)
          row.note = 'raw appends, 1 caller: optimistic concurrency without batching';
        if (entrant.contender.name === names.handWritten) {
          row.note = 'read, publish, retry on conflict: mostly conflicts';
        }
        if (
          entrant.contender.name === names.inProcess ||
          entrant.contender.name === names.endToEnd
        ) {
          row.checks.push(ratioOfR(0.3, row.value, R));
        }
        context.add(row);
      }
      for (const row of started.missing) {
        if (row.contender === names.limit) row.contender = ONE_AT_A_TIME;
        if (row.contender === names.endToEnd)
          row.checks.push({ target: '≥ 0.3 R', pass: undefined });
        context.add(row);
      }
    } finally {
      await started.close();
    }
  },
};
