import { randomUUID } from 'node:crypto';
import { createActor, type AnyActor, type AnyMachineSnapshot } from 'xstate';
import {
  MsgpackCodec,
  systemClock,
  type DecideContext,
  type StoredEvent,
} from '../../runtime/index.js';
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
  actor: AnyActor;
  version: number;
  subject: string;
}

type Decided = { events: { type: string; data: unknown }[]; response: unknown };

/**
 * The floor of the design: per deposit, only what every jetactor command must do. The input is
 * checked by the command's zod schema, the bank domain's `decide` runs on the account's XState
 * snapshot, each event is checked by its zod schema, accepted (`can`) and applied (`send`) by the
 * account's live XState actor, the commit is encoded as jetactor encodes it (msgpack envelope
 * with the event metadata and the command record) and appended as the limit appends (plain
 * publish, `Nats-Msg-Id` = the command id, `Nats-Expected-Last-Subject-Sequence`, one
 * acknowledgement subscription). No mailbox, group commit, remembered command ids, supervisor,
 * node, errors or replies. What it reaches bounds what jetactor in-process can reach on this
 * machine, whatever the rest of the runtime costs.
 */
export class FloorContender implements BankContender {
  readonly name: string;
  readonly #bench: BenchServer;
  readonly #appends: AckedAppends;
  readonly #accounts = new Map<string, FloorAccount>();
  readonly #codec = new MsgpackCodec();
  readonly #deposit = Account.commands.deposit;
  readonly #events = Account.events;

  private constructor(name: string, bench: BenchServer) {
    this.name = name;
    this.#bench = bench;
    this.#appends = new AckedAppends(bench.nc);
  }

  /** Starts a fresh server with a stream `floor` on `floor.>`. */
  static async start(name: string): Promise<FloorContender> {
    const bench = await startBenchServer(name);
    await createRawStream(bench.nc, 'floor', 'floor.>');
    return new FloorContender(name, bench);
  }

  /** Opens the accounts in memory: a live actor each, opened; nothing is appended. */
  open(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      const actor = createActor(Account.machine).start();
      actor.send({
        type: 'Opened',
        data: { owner: 'bench', overdraftLimit: 0 },
        meta: {
          domain: 'bank',
          aggregate: 'Account',
          aggregateId: id,
          version: 1,
          timestamp: systemClock.now(),
          commandId: `open-${id}`,
          correlationId: `open-${id}`,
          causationId: `open-${id}`,
        },
      });
      this.#accounts.set(id, { actor, version: 1, subject: `floor.Account.${id}` });
    }
    return Promise.resolve();
  }

  async deposit(id: string, amount: number): Promise<unknown> {
    const account = this.#accounts.get(id);
    if (account === undefined) throw new Error(`account ${id} was not opened`);
    const input = this.#deposit.input.parse({ amount });
    const commandId = randomUUID();
    const ctx: DecideContext = {
      aggregateId: id,
      version: account.version,
      command: { id: commandId, name: 'deposit', correlationId: commandId, causationId: commandId },
      clock: systemClock,
    };
    const decided = this.#deposit.decide(
      account.actor.getSnapshot() as never,
      input,
      ctx,
    ) as Decided;
    const timestamp = systemClock.now();
    const events: StoredEvent[] = [];
    for (const [index, event] of decided.events.entries()) {
      const schema = this.#events[event.type as keyof typeof Account.events];
      const stored: StoredEvent = {
        type: event.type,
        data: schema.parse(event.data),
        meta: {
          domain: 'bank',
          aggregate: 'Account',
          aggregateId: id,
          version: account.version + index + 1,
          timestamp,
          commandId,
          correlationId: commandId,
          causationId: commandId,
        },
      };
      const snapshot = account.actor.getSnapshot() as AnyMachineSnapshot;
      if (!snapshot.can(stored)) throw new Error(`${event.type} not accepted by account ${id}`);
      account.actor.send(stored);
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
    return { commandId, version: account.version, position, response: decided.response };
  }

  processes(): WatchedProcess[] {
    return benchProcesses(this.#bench);
  }

  takeCounters(): Record<string, number> {
    const counters = { conflicts: this.#appends.conflicts };
    this.#appends.conflicts = 0;
    return counters;
  }

  async close(): Promise<void> {
    for (const account of this.#accounts.values()) account.actor.stop();
    await this.#bench.close();
  }
}
