import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock, TimerHandle } from '../../runtime/clock.js';
import { KvLease } from '../../runtime/nats/kv-lease.js';
import { connectShared, uniqueName } from '../helpers/nats.js';
import { silentLogger, until } from '../fixtures/test-support.js';

/**
 * A clock whose time is set by the test and whose timers fire only when it says so, while the
 * lease's writes go to a real server: so a renewal can come back after the lease ran out here
 * and before its expiry timer fired, as when a loaded machine runs timers late.
 */
class ManualClock implements Clock {
  time = 1_767_225_600_000;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** Fires the timers due at `time`, in order; returns how many. */
  fireDue(): number {
    const due = [...this.#timers].filter(([, t]) => t.at <= this.time);
    due.sort((a, b) => a[1].at - b[1].at);
    for (const [id, timer] of due) {
      this.#timers.delete(id);
      timer.fn();
    }
    return due.length;
  }
}

const LEASE_MS = 6_000;

describe('a reactor or projection lease whose timers run late', () => {
  let nc: NatsConnection;
  let kv: KV;

  beforeAll(async () => {
    nc = await connectShared();
    kv = await new Kvm(nc).create(uniqueName('lease'), { history: 1, ttl: 60_000 });
  });

  afterAll(async () => {
    await kv?.destroy();
    await nc?.close();
  });

  function lease(clock: ManualClock, key: string) {
    const events: string[] = [];
    const kvLease = new KvLease({
      kv,
      key,
      kind: 'reactor',
      owner: 'n1',
      leaseMs: LEASE_MS,
      clock,
      logger: silentLogger,
      onAcquired: () => events.push('acquired'),
      onLost: (reason) => events.push(`lost:${reason}`),
    });
    return { kvLease, events };
  }

  it('ends the term and starts another when a renewal comes back after the lease ran out here, before its expiry timer fired', async () => {
    const clock = new ManualClock();
    const { kvLease, events } = lease(clock, 'bank.reactor.late');
    await kvLease.start();
    expect(events).toEqual(['acquired']);
    const start = clock.time;

    // The renewal timer fires a third of the lease in; its write is on its way when the clock
    // jumps past the lease's end, and the expiry timer has not run.
    clock.time = start + LEASE_MS / 3;
    expect(clock.fireDue()).toBe(1);
    clock.time = start + LEASE_MS + 100;
    expect(kvLease.held).toBe(false);

    await until(() => events.length > 1);
    expect(events).toEqual(['acquired', 'lost:expired', 'acquired']);
    expect(kvLease.held).toBe(true);
    await kvLease.stop();
  });

  it('keeps trying for the lease when its expiry timer fired while a renewal was on its way', async () => {
    const clock = new ManualClock();
    const { kvLease, events } = lease(clock, 'bank.reactor.expired');
    await kvLease.start();
    const start = clock.time;

    clock.time = start + LEASE_MS / 3;
    expect(clock.fireDue()).toBe(1);
    // The expiry timer wins the race with the renewal's answer.
    clock.time = start + LEASE_MS + 100;
    expect(clock.fireDue()).toBe(1);
    expect(events).toEqual(['acquired', 'lost:expired']);

    // The renewal written at a third of the lease is still valid: taken again at once.
    await until(() => events.length > 2);
    expect(events).toEqual(['acquired', 'lost:expired', 'acquired']);
    expect(kvLease.held).toBe(true);
    // And it goes on renewing: the next renewal is scheduled.
    clock.time += LEASE_MS / 3;
    expect(clock.fireDue()).toBeGreaterThanOrEqual(1);
    await kvLease.stop();
  });
});
