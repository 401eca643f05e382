import type { AnyMachineSnapshot } from 'xstate';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  MsgpackCodec,
  randomCommandId,
  systemClock,
  type CommandResult,
  type DecideContext,
  type StoredEvent,
} from '../../runtime/index.js';
import { MachineSteps } from '../../runtime/aggregate/machine-steps.js';
import { encodeEnvelope } from '../../runtime/event-store/commit-envelope.js';
import { EncodedHeaders } from '../../runtime/nats/encoded-headers.js';
import { Account } from '../../domains/bank/index.js';
import {
  benchProcesses,
  createRawStream,
  startBenchServer,
  type BenchServer,
} from '../bench-server.js';
import type { BankContender } from '../contender.js';
import type { WatchedProcess } from '../process-cpu.js';
import { AckedAppends } from './limit.js';

interface FloorAccount {
  state: AnyMachineSnapshot;
  version: number;
  subject: string;
}

type Decided = { events: { type: string; data: unknown }[]; response: unknown };

/** An account event's metadata, as jetactor writes it for a command without a correlation. */
function metaOf(
  id: string,
  version: number,
  commandId: string,
  timestamp: number,
): StoredEvent['meta'] {
  return {
    domain: 'bank',
    aggregate: 'Account',
    aggregateId: id,
    version,
    timestamp,
    commandId,
    correlationId: commandId,
    causationId: commandId,
  };
}

/**
 * The floor of the design: per deposit, only what every jetactor command must do. The input is
 * checked by the command's zod schema, the bank domain's `decide` runs on the account's XState
 * snapshot, each event is checked by its zod schema, accepted (`can`) and applied (the machine's
 * transition, as jetactor's {@link MachineSteps}), the commit is encoded as jetactor encodes it (msgpack envelope
 * with the event metadata and the command record) and appended as the limit appends (plain
 * publish, `Nats-Msg-Id` = the command id, `Nats-Expected-Last-Subject-Sequence`, one
 * acknowledgement subscription). No mailbox, group commit, remembered command ids, supervisor,
 * node or errors. Accounts live in memory, opened without an append.
 */
export class FloorAccounts {
  readonly #appends: AckedAppends;
  readonly #accounts = new Map<string, FloorAccount>();
  readonly #codec = new MsgpackCodec();
  readonly #deposit = Account.commands.deposit;
  readonly #events = Account.events;
  readonly #steps = MachineSteps.of(Account.machine);

  /** Appends to `floor.Account.<id>` over `nc` (a stream must take `floor.>`). */
  constructor(nc: NatsConnection) {
    this.#appends = new AckedAppends(nc);
  }

  /** Appends refused on a wrong expected sequence, since the last call. */
  takeConflicts(): number {
    const conflicts = this.#appends.conflicts;
    this.#appends.conflicts = 0;
    return conflicts;
  }

  /** The account's state, opened on first use. */
  open(id: string): FloorAccount {
    let account = this.#accounts.get(id);
    if (account === undefined) {
      const state = this.#steps.transition(this.#steps.initial(), {
        type: 'Opened',
        data: { owner: 'bench', overdraftLimit: 0 },
        meta: metaOf(id, 1, `open-${id}`, systemClock.now()),
      } as { type: string });
      account = { state, version: 1, subject: `floor.Account.${id}` };
      this.#accounts.set(id, account);
    }
    return account;
  }

  /** One deposit; resolves with what jetactor replies (its `CommandResult`) once appended. */
  async deposit(id: string, amount: unknown): Promise<CommandResult> {
    const account = this.open(id);
    const input = this.#deposit.input.parse({ amount });
    const commandId = randomCommandId();
    const ctx: DecideContext = {
      aggregateId: id,
      version: account.version,
      command: { id: commandId, name: 'deposit', correlationId: commandId, causationId: commandId },
      clock: systemClock,
    };
    const decided = this.#deposit.decide(account.state as never, input, ctx) as Decided;
    const timestamp = systemClock.now();
    const events: StoredEvent[] = [];
    for (const [index, event] of decided.events.entries()) {
      const schema = this.#events[event.type as keyof typeof Account.events];
      const stored: StoredEvent = {
        type: event.type,
        data: schema.parse(event.data),
        meta: metaOf(id, account.version + index + 1, commandId, timestamp),
      };
      if (!this.#steps.accepts(account.state, stored))
        throw new Error(`${event.type} not accepted by account ${id}`);
      account.state = this.#steps.transition(account.state, stored);
      events.push(stored);
    }
    const expected = this.#appends.lastSequenceOf(account.subject);
    const payload = encodeEnvelope(this.#codec, expected, events, [
      { id: commandId, response: decided.response },
    ]);
    const h = new EncodedHeaders([
      ['Nats-Msg-Id', commandId],
      ['Nats-Expected-Last-Subject-Sequence', String(expected)],
    ]);
    const position = await this.#appends.append(account.subject, payload, h);
    account.version += events.length;
    return {
      commandId,
      version: account.version,
      events,
      response: decided.response,
      duplicate: false,
      position,
    };
  }

  /** Forgets every account. */
  stop(): void {
    this.#accounts.clear();
  }
}

/**
 * The floor in this process ({@link FloorAccounts}): what it reaches bounds what jetactor
 * in-process can reach on this machine, whatever the rest of the runtime costs.
 */
export class FloorContender implements BankContender {
  readonly name: string;
  readonly #bench: BenchServer;
  readonly #accounts: FloorAccounts;

  private constructor(name: string, bench: BenchServer) {
    this.name = name;
    this.#bench = bench;
    this.#accounts = new FloorAccounts(bench.nc);
  }

  /** Starts a fresh server with a stream `floor` on `floor.>`. */
  static async start(name: string): Promise<FloorContender> {
    const bench = await startBenchServer(name);
    await createRawStream(bench.nc, 'floor', 'floor.>');
    return new FloorContender(name, bench);
  }

  /** Opens the accounts in memory: a live actor each, opened; nothing is appended. */
  open(ids: readonly string[]): Promise<void> {
    for (const id of ids) this.#accounts.open(id);
    return Promise.resolve();
  }

  deposit(id: string, amount: number): Promise<unknown> {
    return this.#accounts.deposit(id, amount);
  }

  processes(): WatchedProcess[] {
    return benchProcesses(this.#bench);
  }

  takeCounters(): Record<string, number> {
    return { conflicts: this.#accounts.takeConflicts() };
  }

  async close(): Promise<void> {
    this.#accounts.stop();
    await this.#bench.close();
  }
}
