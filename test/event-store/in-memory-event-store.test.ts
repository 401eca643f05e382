import { describe, expect, it } from 'vitest';
import {
  InMemoryEventStore,
  TestClock,
  streamKey,
  type AppendRequest,
  type StreamRef,
} from '../../runtime/index.js';
import { readCommits } from '../fixtures/test-support.js';
import { eventStoreContract } from './event-store.contract.js';

eventStoreContract('in-memory', () => {
  const store = new InMemoryEventStore();
  return Promise.resolve({ store, domain: 'contract', cleanup: () => store.close() });
});

eventStoreContract('in-memory, on a domain with history', async () => {
  const store = new InMemoryEventStore();
  const other: StreamRef = { domain: 'shared', aggregate: 'Earlier', id: 'e-1' };
  let position = 0;
  for (let version = 1; version <= 3; version++) {
    ({ position } = await store.append(commit(other, position, version, `earlier-${version}`)));
  }
  return { store, domain: 'shared', cleanup: () => store.close() };
});

describe('in-memory event store', () => {
  const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'acc-1' };

  it('forgets a dedupId once the duplicate window has passed', async () => {
    const clock = new TestClock();
    const store = new InMemoryEventStore({ clock, duplicateWindowMs: 1_000 });
    const first = await store.append(commit(stream, 0, 1, 'same'));
    clock.advance(999);
    expect(await store.append(commit(stream, 0, 1, 'same'))).toEqual({
      position: first.position,
      duplicate: true,
    });

    clock.advance(1);
    const again = await store.append(commit(stream, first.position, 2, 'same'));
    expect(again).toEqual({ position: first.position + 1, duplicate: false });
    expect(await readCommits(store, stream)).toHaveLength(2);
  });

  it('keeps positions per domain', async () => {
    const store = new InMemoryEventStore();
    const a = await store.append(commit(stream, 0, 1, 'a'));
    const b = await store.append(commit({ ...stream, domain: 'flight' }, 0, 1, 'b'));
    expect([a.position, b.position]).toEqual([1, 1]);
  });

  it('stores values as they travel over the wire, not the objects it was given', async () => {
    const store = new InMemoryEventStore();
    const request = commit(stream, 0, 1, 'wire');
    await store.append(request);
    (request.events[0]?.data as { n: number }).n = 999;

    const [stored] = await readCommits(store, stream);
    expect(stored?.events[0]?.data).toEqual({ n: 1 });
  });

  it('names aggregates domain/Aggregate/id', () => {
    expect(streamKey(stream)).toBe('bank/Account/acc-1');
  });
});

function commit(
  stream: StreamRef,
  expectedPosition: number,
  version: number,
  dedupId: string,
): AppendRequest {
  return {
    stream,
    expectedPosition,
    dedupId,
    events: [
      {
        type: 'Noted',
        data: { n: version },
        meta: {
          domain: stream.domain,
          aggregate: stream.aggregate,
          aggregateId: stream.id,
          version,
          timestamp: 0,
          commandId: dedupId,
          correlationId: dedupId,
          causationId: dedupId,
        },
      },
    ],
    commands: [{ id: dedupId }],
  };
}
