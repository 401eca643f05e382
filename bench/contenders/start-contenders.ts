import type { ContenderKey } from '../bench-options.js';
import type { BankContender } from '../contender.js';
import { describe } from '../load.js';
import { failedRow, notRunnableRow, type Row } from '../results.js';
import type { ScenarioContext } from '../scenario.js';
import { EmmettContender, postgresUrl } from './emmett.js';
import { HandWrittenContender } from './hand-written.js';
import { JetactorEndToEndContender, endToEndAvailability } from './jetactor-end-to-end.js';
import { JetactorInProcessContender } from './jetactor-in-process.js';
import { FloorContender } from './floor.js';
import { LimitContender } from './limit.js';
import { RequestLimitContender } from './request-limit.js';

/** The names contenders have in the table. */
export const contenderNames = Object.freeze({
  limit: 'limit R (raw appends)',
  requestLimit: 'request limit (raw request, append, reply)',
  floor: 'floor (XState, zod, envelope, append)',
  floorEndToEnd: 'floor end-to-end (request, floor, reply)',
  handWritten: 'hand-written',
  emmett: 'Emmett + PostgreSQL',
  inProcess: 'jetactor in-process',
  endToEnd: 'jetactor end-to-end',
});

/** Which contenders a scenario wants. */
export type ContenderChoice = Partial<Record<keyof typeof contenderNames, boolean>>;

/** Started contenders, rows for those that could not start, and how to stop them all. */
export interface StartedContenders {
  /** Contenders that started, in table order. */
  contenders: BankContender[];
  /** Rows of contenders that are not runnable or failed to start. */
  missing: Row[];
  /** The table names. */
  names: typeof contenderNames;
  /** Stops every started contender. */
  close(): Promise<void>;
}

/**
 * Starts the chosen contenders, each on its own fresh nats-server (Emmett on a freshly created
 * PostgreSQL database). One that cannot run gets a row saying why instead.
 */
export async function startContenders(
  context: ScenarioContext,
  scenario: string,
  choice: ContenderChoice,
): Promise<StartedContenders> {
  const contenders: BankContender[] = [];
  const missing: Row[] = [];
  const names = contenderNames;
  const only = context.options.contenders;
  const wanted = (key: ContenderKey, chosen: boolean | undefined): boolean =>
    chosen === true && (only.length === 0 || only.includes(key));
  const attempt = async (
    name: string,
    start: () => Promise<BankContender>,
    unavailable?: () => Promise<string | undefined>,
  ): Promise<void> => {
    const why = await unavailable?.();
    if (why !== undefined) {
      context.progress(`${scenario}: ${name}: not runnable: ${why}`);
      missing.push(notRunnableRow(scenario, name, 'cmd/s', why));
      return;
    }
    context.progress(`${scenario}: ${name}: starting`);
    try {
      contenders.push(await start());
    } catch (error) {
      context.progress(`${scenario}: ${name}: failed to start: ${describe(error)}`);
      missing.push(failedRow(scenario, name, 'cmd/s', error));
    }
  };
  if (wanted('limit', choice.limit))
    await attempt(names.limit, () => LimitContender.start(names.limit, context.payloadSize));
  if (wanted('request-limit', choice.requestLimit)) {
    await attempt(names.requestLimit, () =>
      RequestLimitContender.start(names.requestLimit, context.payloadSize),
    );
  }
  if (wanted('floor', choice.floor)) {
    await attempt(names.floor, () => FloorContender.start(names.floor));
  }
  if (wanted('floor-end-to-end', choice.floorEndToEnd)) {
    await attempt(names.floorEndToEnd, () => RequestLimitContender.startFloor(names.floorEndToEnd));
  }
  if (wanted('hand-written', choice.handWritten)) {
    await attempt(names.handWritten, () =>
      HandWrittenContender.start(names.handWritten, context.payloadSize),
    );
  }
  if (wanted('emmett', choice.emmett)) {
    await attempt(
      names.emmett,
      () => EmmettContender.start(names.emmett),
      () => EmmettContender.unavailable(),
    );
  }
  if (wanted('in-process', choice.inProcess)) {
    await attempt(names.inProcess, () => JetactorInProcessContender.start(names.inProcess));
  }
  if (wanted('end-to-end', choice.endToEnd)) {
    await attempt(
      names.endToEnd,
      () => JetactorEndToEndContender.start(names.endToEnd),
      () => Promise.resolve(endToEndAvailability()),
    );
  }
  return {
    contenders,
    missing,
    names,
    close: async () => {
      for (const contender of contenders) {
        await contender.close().catch((error: unknown) => {
          context.progress(`${scenario}: ${contender.name}: close failed: ${describe(error)}`);
        });
      }
    },
  };
}

/**
 * How callers choose accounts in the throughput scenarios: caller c owns accounts c, c + callers,
 * c + 2·callers, … and deposits into them in turn, so it never has two commands in flight for one
 * account and no two callers share one.
 */
export function depositAccount(
  ids: readonly string[],
  callers: number,
): (caller: number, n: number) => string {
  const perCaller = Math.max(1, Math.floor(ids.length / callers));
  return (caller, n) => ids[(caller + callers * (n % perCaller)) % ids.length] as string;
}

export { postgresUrl };
