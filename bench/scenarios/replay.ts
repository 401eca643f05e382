import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import {
  DEFAULT_PREFIX,
  JetStreamEventStore,
  KvSnapshotStore,
  MsgpackCodec,
  createLogger,
  createNode,
  eventSubject,
  systemClock,
  type DomainNode,
  type SnapshotStore,
  type StreamRef,
} from '../../runtime/index.js';
import { encodeEnvelope } from '../../runtime/event-store/commit-envelope.js';
import { ReplyPipeline } from '../../runtime/nats/reply-pipeline.js';
import { Account } from '../../domains/bank/index.js';
import { benchBank } from '../bench-domain.js';
import { startBenchServer } from '../bench-server.js';
import { benchSupervisor } from '../contenders/jetactor-in-process.js';
import { contenderNames } from '../contenders/start-contenders.js';
import { LatencyHistogram } from '../latency-histogram.js';
import { atLeast, atMost, median } from '../results.js';
import { formatRate, type Scenario, type ScenarioContext } from '../scenario.js';

const NAME = 'replay';

/** Commits written after the snapshot, so activation also reads a realistic tail. */
const TAIL = 50;

/**
 * Replay: one account with 100k events, one commit each (the worst case: one message per event),
 * activated by a fresh node. Without snapshots it replays every commit (a warm-up replay first,
 * not counted); with a `KvSnapshotStore` (snapshot every 100 events) it loads the snapshot and
 * replays the 50 commits written after it.
 */
export const replay: Scenario = {
  name: NAME,
  title: 'one account with 100k events: replay, and activation from a snapshot',
  async run(context: ScenarioContext): Promise<void> {
    const { replayEvents: events, reps, quick } = context.options;
    const bench = await startBenchServer(NAME);
    const stream: StreamRef = { domain: 'bank', aggregate: 'Account', id: 'big' };
    try {
      context.progress(`${NAME}: writing ${events} one-event commits to one account`);
      await writeHistory(bench.nc, stream, events);
      const store = await JetStreamEventStore.open({ connection: bench.nc });
      const rates: number[] = [];
      const cpuPerEvent: number[] = [];
      // Run 0 warms the process up (its code is compiled while it runs), as every throughput
      // scenario warms up before its window: it is reported in the note, not in the median.
      let cold = 0;
      for (let rep = 0; rep <= reps; rep++) {
        const node = await bankNode(store);
        const cpu = process.cpuUsage();
        const start = performance.now();
        const view = await node.view(Account, stream.id);
        const ms = performance.now() - start;
        const used = process.cpuUsage(cpu);
        if (view.version !== events) {
          throw new Error(`replayed to version ${view.version}, expected ${events}`);
        }
        const rate = (events * 1000) / ms;
        const cpuUs = (used.user + used.system) / events;
        if (rep === 0) {
          cold = rate;
        } else {
          rates.push(rate);
          cpuPerEvent.push(cpuUs);
        }
        context.progress(
          `${NAME}: ${rep === 0 ? 'warm-up' : `run ${rep}/${reps}`}: ${events} events in ${ms.toFixed(0)} ms = ${formatRate(rate)} events/s, ${cpuUs.toFixed(1)} µs of CPU per event`,
        );
        await node.stop(5_000);
      }
      const rate = median(rates);
      context.add({
        scenario: NAME,
        contender: `${contenderNames.inProcess}, no snapshot`,
        status: 'measured',
        unit: 'events/s',
        value: rate,
        values: rates,
        checks: [atLeast('≥ 100k events/s', rate, 100_000)],
        note: `${events} events in ${events} commits, replayed by a fresh node after a warm-up replay in the same process (that first one: ${formatRate(cold)} events/s); ${median(cpuPerEvent).toFixed(1)} µs of CPU per event in the node's process`,
        extra: { cpuUsPerEvent: cpuPerEvent, coldEventsPerSecond: cold },
      });

      const snapshots = new KvSnapshotStore({ connection: bench.nc });
      context.progress(`${NAME}: taking a snapshot, then writing ${TAIL} more commits`);
      const writer = await bankNode(store, snapshots);
      await writer.view(Account, stream.id);
      await waitForSnapshot(snapshots, stream, events);
      for (let i = 0; i < TAIL; i++) {
        await writer.aggregate(Account, stream.id).deposit({ amount: 1 });
      }
      await writer.stop(5_000);
      const activations = quick ? 3 : 10;
      const histogram = new LatencyHistogram();
      const times: number[] = [];
      for (let run = 1; run <= activations; run++) {
        const node = await bankNode(store, snapshots);
        const start = performance.now();
        const view = await node.view(Account, stream.id);
        const ms = performance.now() - start;
        if (view.version !== events + TAIL) {
          throw new Error(`activated at version ${view.version}, expected ${events + TAIL}`);
        }
        histogram.record(ms);
        times.push(ms);
        await node.stop(5_000);
      }
      const latency = histogram.summary();
      context.progress(
        `${NAME}: activation from a snapshot: median ${median(times).toFixed(1)} ms, max ${latency.max.toFixed(1)} ms (${activations} activations)`,
      );
      context.add({
        scenario: NAME,
        contender: `${contenderNames.inProcess}, snapshot`,
        status: 'measured',
        unit: 'ms',
        value: median(times),
        values: times,
        latency,
        checks: [atMost('activation ≤ 20 ms', median(times), 20)],
        note: `activation = snapshot (version ${events}) + ${TAIL} later commits; ${activations} fresh nodes`,
      });
      await store.close();
    } finally {
      await bench.close();
    }
  },
};

function bankNode(store: JetStreamEventStore, snapshots?: SnapshotStore): Promise<DomainNode> {
  const node = createNode({
    domains: [benchBank],
    store,
    ...(snapshots === undefined ? {} : { snapshots }),
    logger: createLogger('error'),
    supervisor: { ...benchSupervisor, snapshotEvery: snapshots === undefined ? 0 : 100 },
  });
  return node.start().then(() => node);
}

/**
 * Writes `events` one-event commits to the aggregate, pipelined (512 in flight), in the envelope
 * format the runtime writes, each chained to the one before and checked by
 * `Nats-Expected-Last-Subject-Sequence`. Preparation only: a node would write them one at a time.
 */
async function writeHistory(nc: NatsConnection, stream: StreamRef, events: number): Promise<void> {
  const store = await JetStreamEventStore.open({ connection: nc });
  await store.ensureDomains([stream.domain]);
  await store.close();
  const codec = new MsgpackCodec();
  const pipeline = new ReplyPipeline(nc, systemClock, 30_000);
  const subject = eventSubject(DEFAULT_PREFIX, stream);
  const decoder = new TextDecoder();
  const inFlight: Promise<void>[] = [];
  const timestamp = Date.now();
  for (let version = 1; version <= events; version++) {
    const commandId = `replay-${version}`;
    const payload = encodeEnvelope(
      codec,
      version - 1,
      [
        {
          type: version === 1 ? 'Opened' : 'Deposited',
          data: version === 1 ? { owner: 'bench', overdraftLimit: 0 } : { amount: 1 },
          meta: {
            domain: stream.domain,
            aggregate: stream.aggregate,
            aggregateId: stream.id,
            version,
            timestamp,
            commandId,
            correlationId: commandId,
            causationId: commandId,
          },
        },
      ],
      [{ id: commandId }],
    );
    const h = headers();
    h.set('Nats-Msg-Id', `Account.${stream.id}.${commandId}`);
    h.set('Nats-Expected-Last-Subject-Sequence', String(version - 1));
    inFlight.push(
      pipeline.request(subject, payload, h).then((msg) => {
        const ack = JSON.parse(decoder.decode(msg.data)) as { seq?: number; error?: unknown };
        if (ack.seq !== version)
          throw new Error(`commit ${version} not stored: ${JSON.stringify(ack)}`);
      }),
    );
    if (inFlight.length >= 512) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight);
  pipeline.close();
}

async function waitForSnapshot(
  snapshots: SnapshotStore,
  stream: StreamRef,
  version: number,
): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const snapshot = await snapshots.load(stream);
    if (snapshot !== undefined && snapshot.version >= version) return;
    await sleep(20);
  }
  throw new Error(`no snapshot at version ${version} after 60 s`);
}
