import { depositAccount, startContenders } from '../contenders/start-contenders.js';
import { accountIds } from '../contender.js';
import { ratioOfR, throughputRow, timesOf, type Row } from '../results.js';
import { measureRounds, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'many-aggregates';

/**
 * Many aggregates: 10k accounts, 1k concurrent callers, deposits. Each caller owns 10 accounts and
 * deposits into them in turn, so no two commands are ever in flight for one account: throughput
 * without conflicts and without group commit.
 */
export const manyAggregates: Scenario = {
  name: NAME,
  title: '10k accounts, 1k concurrent callers, deposits',
  async run(context: ScenarioContext): Promise<void> {
    const { callers, accounts } = context.options;
    const ids = accountIds('acc', accounts);
    const started = await startContenders(context, NAME, {
      limit: true,
      requestLimit: true,
      floor: true,
      floorEndToEnd: true,
      handWritten: true,
      emmett: true,
      inProcess: true,
      endToEnd: true,
    });
    try {
      for (const contender of started.contenders) {
        context.progress(`${NAME}: ${contender.name}: opening ${accounts} accounts`);
        await contender.open(ids, callers);
      }
      const runs = await measureRounds(
        context,
        NAME,
        started.contenders.map((contender) => ({
          contender,
          callers,
          account: depositAccount(ids, callers),
        })),
      );
      const rows = new Map<string, Row>();
      for (const [index, contender] of started.contenders.entries()) {
        rows.set(contender.name, throughputRow(NAME, contender.name, runs[index] ?? []));
      }
      const R = rows.get(started.names.limit)?.value;
      if (R !== undefined) context.setLimit(R);
      const value = (name: string): number | undefined => rows.get(name)?.value;
      const hand = value(started.names.handWritten);
      const requestLimit = value(started.names.requestLimit);
      const floor = value(started.names.floor);
      const floorEndToEnd = value(started.names.floorEndToEnd);
      const emmett = value(started.names.emmett);
      for (const [name, row] of rows) {
        if (R !== undefined && row.value !== undefined) row.ratioToR = row.value / R;
        if (row.value !== undefined) context.maxThroughput.set(name, row.value);
        if (name === started.names.limit) row.note = 'R: the limit every ratio refers to';
        if (name === started.names.requestLimit) {
          row.note =
            "the bound of end-to-end: this process sends raw NATS requests, a responder process makes the limit's acknowledged append and replies (the same 4 messages per command and 3 processes as jetactor end-to-end, no work of their own)";
        }
        if (name === started.names.floor) {
          row.note =
            "the bound of in-process: per deposit only what every jetactor command does (zod on input and event, the domain's decide, the account's XState transition, jetactor's commit envelope, the limit's append); no mailbox, command ids, supervisor or node";
        }
        if (name === started.names.floorEndToEnd) {
          row.note =
            "the bound of end-to-end: the request limit's path with the floor's work in the responder, its reply a compact msgpack CommandResult as jetactor's, read by this process as the typed client reads it";
        }
        if (name === started.names.emmett) {
          row.note =
            'PostgreSQL 15 on this machine; Emmett defaults (node-postgres pool of 10 connections), retry on version conflict';
        }
        if (name === started.names.inProcess) {
          if (floor !== undefined && row.value !== undefined) {
            row.note = `${(row.value / floor).toFixed(2)}× the floor`;
          }
          row.checks.push(ratioOfR(0.7, row.value, R), timesOf(2, 'hand-written', row.value, hand));
        }
      }
      for (const row of rows.values()) context.add(row);
      for (const row of started.missing) {
        if (row.contender === started.names.endToEnd) {
          row.checks.push(
            { target: '≥ 0.4 R', pass: undefined },
            { target: '≥ 2× hand-written', pass: undefined },
            { target: '≥ 3× Emmett', pass: undefined },
          );
        }
        context.add(row);
      }
      const e2e = rows.get(started.names.endToEnd);
      if (e2e !== undefined) {
        const of: string[] = [];
        if (requestLimit !== undefined && e2e.value !== undefined) {
          of.push(`${(e2e.value / requestLimit).toFixed(2)}× the request limit`);
        }
        if (floorEndToEnd !== undefined && e2e.value !== undefined) {
          of.push(`${(e2e.value / floorEndToEnd).toFixed(2)}× the end-to-end floor`);
        }
        if (of.length > 0) e2e.note = of.join(', ');
        e2e.checks.push(
          ratioOfR(0.4, e2e.value, R),
          timesOf(2, 'hand-written', e2e.value, hand),
          timesOf(3, 'Emmett', e2e.value, emmett),
        );
      }
    } finally {
      await started.close();
    }
  },
};
