import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConflictError,
  JetactorError,
  isConflictError,
  isInfrastructureError,
  type AppendRequest,
  type Commit,
  type EventStore,
  type StoredEvent,
  type StoreSubscription,
  type StreamRef,
} from '../../runtime/index.js';

/** What the contract needs from a store under test. */
export interface ContractStore {
  /** A store, fresh or shared; every test writes to aggregates of its own. */
  store: EventStore;
  /** The domain the tests write to; it may already hold commits of other aggregates. */
  domain: string;
  /** Runs after each test (close connections, delete streams, …). */
  cleanup?: () => Promise<void>;
}

/**
 * The behaviour every {@link EventStore} must have. Uses only the interface; every test uses
 * aggregate ids of its own, and assumes only that positions rise strictly in append order within
 * a domain (not that they start at 1), so it can run on a shared server.
 *
 * @example eventStoreContract('in-memory', async () => ({ store: new InMemoryEventStore(), domain: 'contract' }));
 */
export function eventStoreContract(name: string, makeStore: () => Promise<ContractStore>): void {
  describe(`${name} event store (contract)`, () => {
    let store: EventStore;
    let domain: string;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      ({ store, domain, cleanup } = await makeStore());
    });

    afterEach(async () => {
      await cleanup?.();
    });

    const fresh = (aggregate = 'Contract', id = `c-${randomUUID()}`): StreamRef => ({
      domain,
      aggregate,
      id,
    });

    it('appends commits and reads them back in order', async () => {
      const stream = fresh();
      const first = request(stream, 0, 1, 2);
      const a = await store.append(first);
      const second = request(stream, a.position, 3, 1);
      const b = await store.append(second);
      const third = request(stream, b.position, 4, 3);
      const c = await store.append(third);

      expect([a.duplicate, b.duplicate, c.duplicate]).toEqual([false, false, false]);
      expect(a.position).toBeGreaterThan(0);
      expect(b.position).toBeGreaterThan(a.position);
      expect(c.position).toBeGreaterThan(b.position);
      const commits = await readAll(store, stream);
      expect(commits.map((commit) => commit.position)).toEqual([
        a.position,
        b.position,
        c.position,
      ]);
      expect(commits.map((commit) => commit.stream)).toEqual([stream, stream, stream]);
      expect(commits.flatMap((commit) => commit.events.map((e) => e.meta.version))).toEqual([
        1, 2, 3, 4, 5, 6,
      ]);
      expect(commits.map((commit) => commit.events)).toEqual([
        first.events,
        second.events,
        third.events,
      ]);
    });

    it('gives positions that rise strictly in append order across the aggregates of a domain', async () => {
      const one = fresh();
      const two = fresh();
      const a1 = await store.append(request(one, 0, 1));
      const b1 = await store.append(request(two, 0, 1));
      const a2 = await store.append(request(one, a1.position, 2));
      const b2 = await store.append(request(two, b1.position, 2));

      expect(b1.position).toBeGreaterThan(a1.position);
      expect(a2.position).toBeGreaterThan(b1.position);
      expect(b2.position).toBeGreaterThan(a2.position);
    });

    it('reads only the commits after afterPosition', async () => {
      const stream = fresh();
      const a = await store.append(request(stream, 0, 1));
      const b = await store.append(request(stream, a.position, 2));
      const c = await store.append(request(stream, b.position, 3));

      expect(positions(await readAll(store, stream, 0))).toEqual([
        a.position,
        b.position,
        c.position,
      ]);
      expect(positions(await readAll(store, stream, a.position))).toEqual([b.position, c.position]);
      expect(positions(await readAll(store, stream, b.position))).toEqual([c.position]);
      expect(await readAll(store, stream, c.position)).toEqual([]);
    });

    it('reads nothing for an aggregate that has no commits', async () => {
      expect(await readAll(store, fresh())).toEqual([]);
    });

    it('appends the first commit of an aggregate at expectedPosition 0 and refuses 0 afterwards', async () => {
      const stream = fresh();
      const first = await store.append(request(stream, 0, 1));

      const error = await failureOf(() => store.append(request(stream, 0, 1)));
      expect(error).toBeInstanceOf(ConflictError);
      expect(isConflictError(error)).toBe(true);
      expect(error.code).toBe('CONCURRENCY_CONFLICT');
      expect(error.retryable).toBe(true);
      expect(error.details).toMatchObject({ expectedPosition: 0, actualPosition: first.position });
      expect(positions(await readAll(store, stream))).toEqual([first.position]);
    });

    it('refuses an append whose expectedPosition is stale or ahead, and stores nothing', async () => {
      const stream = fresh();
      const a = await store.append(request(stream, 0, 1));
      const b = await store.append(request(stream, a.position, 2));

      const stale = await failureOf(() => store.append(request(stream, a.position, 2)));
      expect(stale.code).toBe('CONCURRENCY_CONFLICT');
      expect(stale.details).toMatchObject({
        expectedPosition: a.position,
        actualPosition: b.position,
      });
      const ahead = await failureOf(() => store.append(request(stream, b.position + 1000, 3)));
      expect(ahead.code).toBe('CONCURRENCY_CONFLICT');
      const fresher = await failureOf(() => store.append(request(fresh(), b.position, 1)));
      expect(fresher.code).toBe('CONCURRENCY_CONFLICT');

      expect(positions(await readAll(store, stream))).toEqual([a.position, b.position]);
    });

    it('stores a dedupId once: a repeat returns the first position with duplicate: true', async () => {
      const stream = fresh();
      const original = request(stream, 0, 1);
      const first = await store.append(original);

      const again = await store.append(original);
      expect(again).toEqual({ position: first.position, duplicate: true });

      const next = await store.append(request(stream, first.position, 2));
      const late = await store.append(original);
      expect(late).toEqual({ position: first.position, duplicate: true });

      const commits = await readAll(store, stream);
      expect(positions(commits)).toEqual([first.position, next.position]);
      expect(commits[0]?.events).toEqual(original.events);
    });

    it('round-trips events with their metadata and command records with their responses', async () => {
      const stream = fresh();
      const events: StoredEvent[] = [
        {
          type: 'Opened',
          data: { owner: 'Zoë', limits: [1, 2.5, -3], flags: { vip: true, note: null } },
          meta: {
            domain,
            aggregate: stream.aggregate,
            aggregateId: stream.id,
            version: 1,
            timestamp: 1_767_225_600_123,
            commandId: 'cmd-1',
            correlationId: 'corr-1',
            causationId: 'cause-1',
            actor: 'user:zoe',
          },
        },
        {
          type: 'Deposited',
          data: { amount: 12_345 },
          meta: {
            domain,
            aggregate: stream.aggregate,
            aggregateId: stream.id,
            version: 2,
            timestamp: 1_767_225_600_456,
            commandId: 'cmd-2',
            correlationId: 'corr-1',
            causationId: 'cmd-1',
          },
        },
      ];
      const commands = [{ id: 'cmd-1', response: { ok: true, ids: ['a', 'b'] } }, { id: 'cmd-2' }];
      const { position } = await store.append({
        stream,
        expectedPosition: 0,
        dedupId: `d-${randomUUID()}`,
        events,
        commands,
      });

      const [commit, ...rest] = await readAll(store, stream);
      expect(rest).toEqual([]);
      expect(commit).toEqual({ stream, position, events, commands });
      expect(commit?.events[1]?.meta.actor).toBeUndefined();
    });

    it('keeps aggregates independent, also aggregates of different types with the same id', async () => {
      const id = `c-${randomUUID()}`;
      const one = fresh('Contract', id);
      const two = fresh('Other', id);
      const three = fresh();
      const a1 = await store.append(request(one, 0, 1));
      const b1 = await store.append(request(two, 0, 1));
      const c1 = await store.append(request(three, 0, 1));
      const a2 = await store.append(request(one, a1.position, 2));
      await failureOf(() => store.append(request(two, a2.position, 2)));
      const b2 = await store.append(request(two, b1.position, 2));

      expect(positions(await readAll(store, one))).toEqual([a1.position, a2.position]);
      expect(positions(await readAll(store, two))).toEqual([b1.position, b2.position]);
      expect(positions(await readAll(store, three))).toEqual([c1.position]);
    });

    describe('subscribe', () => {
      let subscriptions: StoreSubscription[] = [];

      afterEach(async () => {
        await Promise.all(subscriptions.map((s) => s.close()));
        subscriptions = [];
      });

      /** Collects the commits of the given aggregates (the domain may hold others). */
      const collect = (streams: StreamRef[], afterPosition?: number) => {
        const keys = new Set(streams.map(key));
        const received: Commit[] = [];
        const subscription = store.subscribe(
          domain,
          (commit) => {
            if (keys.has(key(commit.stream))) received.push(commit);
          },
          afterPosition === undefined ? {} : { afterPosition },
        );
        subscriptions.push(subscription);
        return { received, subscription };
      };

      it('delivers the commits of the domain in order from afterPosition, stored before and after', async () => {
        const one = fresh();
        const two = fresh();
        const a1 = await store.append(request(one, 0, 1));
        const b1 = await store.append(request(two, 0, 1));

        const fromA1 = collect([one, two], a1.position);
        const fromStart = collect([one, two]);
        const a2 = await store.append(request(one, a1.position, 2));
        const b2 = await store.append(request(two, b1.position, 2));

        await waitFor(() => fromA1.received.length >= 3 && fromStart.received.length >= 4);
        expect(positions(fromA1.received)).toEqual([b1.position, a2.position, b2.position]);
        expect(positions(fromStart.received)).toEqual([
          a1.position,
          b1.position,
          a2.position,
          b2.position,
        ]);
        expect(fromStart.received.map((commit) => key(commit.stream))).toEqual([
          key(one),
          key(two),
          key(one),
          key(two),
        ]);
        expect(fromStart.received[2]?.events).toEqual(request(one, a1.position, 2).events);
      });

      it('waits for the handler to finish before delivering the next commit', async () => {
        const stream = fresh();
        const first = await store.append(request(stream, 0, 1));
        const gate = deferred();
        const entered: number[] = [];
        let running = 0;
        let overlapped = false;
        subscriptions.push(
          store.subscribe(
            domain,
            async (commit) => {
              if (key(commit.stream) !== key(stream)) return;
              running += 1;
              if (running > 1) overlapped = true;
              entered.push(commit.position);
              if (commit.position === first.position) await gate.promise;
              running -= 1;
            },
            { afterPosition: first.position - 1 },
          ),
        );
        const second = await store.append(request(stream, first.position, 2));
        const third = await store.append(request(stream, second.position, 3));
        const witness = collect([stream], first.position - 1);

        await waitFor(() => witness.received.length === 3 && entered.length === 1);
        expect(entered).toEqual([first.position]);
        gate.resolve();
        await waitFor(() => entered.length === 3);
        expect(entered).toEqual([first.position, second.position, third.position]);
        expect(overlapped).toBe(false);
      });

      it('stops delivering once closed, after the handler in progress returns', async () => {
        const stream = fresh();
        const first = await store.append(request(stream, 0, 1));
        const gate = deferred();
        const seen: number[] = [];
        const subscription = store.subscribe(
          domain,
          async (commit) => {
            if (key(commit.stream) !== key(stream)) return;
            seen.push(commit.position);
            await gate.promise;
          },
          { afterPosition: first.position - 1 },
        );
        subscriptions.push(subscription);
        await waitFor(() => seen.length === 1);

        let closed = false;
        const closing = subscription.close().then(() => (closed = true));
        await pause();
        expect(closed).toBe(false);
        gate.resolve();
        await closing;

        const second = await store.append(request(stream, first.position, 2));
        const witness = collect([stream], first.position);
        await waitFor(() => witness.received.length === 1);
        expect(positions(witness.received)).toEqual([second.position]);
        expect(seen).toEqual([first.position]);
      });
    });

    it('answers appendWith as append: stored, a duplicate or refused, exactly once and never before it returns', async () => {
      const appendWith = store.appendWith?.bind(store);
      expect(appendWith, 'every store of this runtime has appendWith').toBeDefined();
      if (appendWith === undefined) return;
      const stream = fresh();
      const calls: string[] = [];
      const answer = (request: AppendRequest): Promise<unknown> =>
        new Promise((resolve) => {
          let returned = false;
          appendWith(request, {
            stored: (result) => {
              calls.push(returned ? 'stored' : 'stored before returning');
              resolve(result);
            },
            failed: (error) => {
              calls.push(returned ? 'failed' : 'failed before returning');
              resolve(error);
            },
          });
          returned = true;
        });
      const original = request(stream, 0, 1);
      const first = (await answer(original)) as { position: number; duplicate: boolean };
      expect(first.duplicate).toBe(false);
      expect(await answer(original)).toEqual({ position: first.position, duplicate: true });
      const refused = (await answer(request(stream, 0, 2))) as JetactorError;
      expect(refused).toBeInstanceOf(ConflictError);
      expect(refused.details).toMatchObject({
        expectedPosition: 0,
        actualPosition: first.position,
      });
      expect(positions(await readAll(store, stream))).toEqual([first.position]);
      await store.close();
      const closed = (await answer(request(stream, first.position, 2))) as JetactorError;
      expect(closed.code).toBe('STORE_CLOSED');
      // Each answered once: nothing more comes later.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(calls).toEqual(['stored', 'stored', 'failed', 'failed']);
    });

    it('fails every call after close() with STORE_CLOSED', async () => {
      const stream = fresh();
      const { position } = await store.append(request(stream, 0, 1));
      await store.close();

      const append = await failureOf(() => store.append(request(stream, position, 2)));
      const read = await failureOf(() => readAll(store, stream));
      const subscribe = await failureOf(() => store.subscribe(domain, () => undefined));
      for (const error of [append, read, subscribe]) {
        expect(isInfrastructureError(error)).toBe(true);
        expect(error.code).toBe('STORE_CLOSED');
      }
    });
  });
}

/** A commit of `count` events starting at `version`, with a dedup id of its own. */
function request(
  stream: StreamRef,
  expectedPosition: number,
  version: number,
  count = 1,
): AppendRequest {
  const commandId = `cmd-${stream.id}-${version}`;
  return {
    stream,
    expectedPosition,
    dedupId: `${commandId}-${randomUUID()}`,
    events: Array.from({ length: count }, (_, index) => ({
      type: 'Noted',
      data: { n: version + index },
      meta: {
        domain: stream.domain,
        aggregate: stream.aggregate,
        aggregateId: stream.id,
        version: version + index,
        timestamp: 1_767_225_600_000 + version + index,
        commandId,
        correlationId: commandId,
        causationId: commandId,
      },
    })),
    commands: [{ id: commandId }],
  };
}

async function readAll(store: EventStore, stream: StreamRef, afterPosition?: number) {
  const commits: Commit[] = [];
  for await (const commit of store.read(stream, afterPosition)) commits.push(commit);
  return commits;
}

function positions(commits: readonly Commit[]): number[] {
  return commits.map((commit) => commit.position);
}

function key(stream: StreamRef): string {
  return `${stream.domain}/${stream.aggregate}/${stream.id}`;
}

/** The error `call` throws or rejects with; fails when it succeeds. */
async function failureOf(call: () => unknown): Promise<JetactorError> {
  let value: unknown;
  try {
    value = await call();
  } catch (error) {
    expect(error).toBeInstanceOf(JetactorError);
    return error as JetactorError;
  }
  return expect.unreachable(`expected a failure, got ${JSON.stringify(value)}`);
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function pause(ms = 20): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls in real time: a networked store delivers asynchronously. */
async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await pause(2);
  }
}
