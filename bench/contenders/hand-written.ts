import { randomUUID } from 'node:crypto';
import {
  JetStreamApiError,
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import {
  benchProcesses,
  createRawStream,
  startBenchServer,
  type BenchServer,
} from '../bench-server.js';
import { paddedJson } from '../commit-payload.js';
import type { BankContender } from '../contender.js';
import type { WatchedProcess } from '../process-cpu.js';
import { forEachLimited } from '../load.js';

/** What the hand-written code keeps in each event: the event and the account's state after it. */
interface AccountRecord {
  type: 'Opened' | 'Deposited';
  data: Record<string, unknown>;
  status: 'open' | 'frozen' | 'closed';
  balance: number;
  version: number;
  commandId: string;
  at: number;
}

/** JetStream's error code for a failed expected-last-subject-sequence check. */
const WRONG_LAST_SEQUENCE = 10071;

/** Tries of one command before it fails with the conflict (read, decide, publish each time). */
const MAX_TRIES = 10;

/**
 * What a user writes without jetactor, with the nats.js JetStream client as documented: per
 * command, read the account's state (a direct get of the last message on its subject; each event
 * carries the state after it, so one read is enough), check the rule, `js.publish()` the event
 * with `expect.lastSubjectSequence` and `msgID`, await the acknowledgement and answer; on a
 * wrong-last-sequence error, read again and retry (up to 10 tries).
 */
export class HandWrittenContender implements BankContender {
  readonly name: string;
  readonly #bench: BenchServer;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #size: number;
  #conflicts = 0;

  private constructor(name: string, bench: BenchServer, jsm: JetStreamManager, size: number) {
    this.name = name;
    this.#bench = bench;
    this.#jsm = jsm;
    this.#js = jetstream(bench.nc);
    this.#size = size;
  }

  /** Starts a fresh server with a stream `bank` on `bank.account.>`. */
  static async start(name: string, payloadSize: number): Promise<HandWrittenContender> {
    const bench = await startBenchServer(name);
    const jsm = await createRawStream(bench.nc, 'bank', 'bank.account.>');
    return new HandWrittenContender(name, bench, jsm, payloadSize);
  }

  async open(ids: readonly string[], concurrency: number): Promise<void> {
    await forEachLimited(ids, concurrency, (id) =>
      this.#handle(id, (state) => {
        if (state !== undefined) throw new Error(`account ${id} is already open`);
        return {
          type: 'Opened',
          data: { owner: 'bench', overdraftLimit: 0 },
          status: 'open',
          balance: 0,
          version: 1,
          commandId: '',
          at: 0,
        };
      }),
    );
  }

  deposit(id: string, amount: number): Promise<{ balance: number }> {
    return this.#handle(id, (state) => {
      if (state === undefined || state.status === 'closed') {
        throw new Error(`account ${id} is not open`);
      }
      return {
        type: 'Deposited',
        data: { amount },
        status: state.status,
        balance: state.balance + amount,
        version: state.version + 1,
        commandId: '',
        at: 0,
      };
    });
  }

  processes(): WatchedProcess[] {
    return benchProcesses(this.#bench);
  }

  takeCounters(): Record<string, number> {
    const counters = { conflicts: this.#conflicts };
    this.#conflicts = 0;
    return counters;
  }

  async close(): Promise<void> {
    await this.#bench.close();
  }

  async #handle(
    id: string,
    decide: (state: AccountRecord | undefined) => AccountRecord,
  ): Promise<{ balance: number }> {
    const subject = `bank.account.${id}`;
    const commandId = randomUUID();
    for (let attempt = 1; ; attempt++) {
      const last = await this.#jsm.direct.getMessage('bank', { last_by_subj: subject });
      const state = last === null ? undefined : last.json<AccountRecord>();
      const event = { ...decide(state), commandId, at: Date.now() };
      try {
        await this.#js.publish(subject, paddedJson({ ...event }, this.#size), {
          msgID: commandId,
          expect: { lastSubjectSequence: last?.seq ?? 0 },
        });
        return { balance: event.balance };
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === WRONG_LAST_SEQUENCE) {
          this.#conflicts += 1;
          if (attempt < MAX_TRIES) continue;
        }
        throw error;
      }
    }
  }
}
