/**
 * Child process of the memory scenario, run with `--expose-gc`: measures the heap that idle
 * actors take and prints one JSON line on stdout.
 *
 *   node --expose-gc dist/bench/memory-child.js jetactor <nats url> <actors>
 *   node --expose-gc dist/bench/memory-child.js xstate - <actors>
 */
import { randomBytes } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { createActor, type AnyActor } from 'xstate';
import { Account } from '../domains/bank/index.js';
import { startBankNode } from './contenders/jetactor-in-process.js';
import { forEachLimited } from './load.js';
import { disablePretenuring } from '../runtime/pretenuring.js';

/** What the child prints. */
export interface MemoryChildResult {
  mode: 'jetactor' | 'xstate';
  actors: number;
  /** Heap used before the actors existed (after a full GC), in bytes. */
  heapBefore: number;
  /** Heap used with every actor alive and idle (after a full GC), in bytes. */
  heapAfter: number;
  /** (heapAfter − heapBefore) / actors, in bytes. */
  bytesPerActor: number;
  /** Actors the supervisor reports alive (jetactor mode). */
  active?: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

async function settledHeap(): Promise<number> {
  if (gc === undefined) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

async function main(): Promise<MemoryChildResult> {
  // As the node processes collect (`jetactor` turns it off for itself).
  disablePretenuring();
  const [mode, url, count] = process.argv.slice(2);
  const actors = Number(count);
  if ((mode !== 'jetactor' && mode !== 'xstate') || !Number.isInteger(actors) || actors <= 0) {
    throw new Error('usage: memory-child.js jetactor|xstate <nats url|-> <actors>');
  }
  if (mode === 'xstate') {
    const kept: AnyActor[] = [];
    const heapBefore = await settledHeap();
    for (let i = 0; i < actors; i++) kept.push(createActor(Account.machine).start());
    const heapAfter = await settledHeap();
    if (kept.length !== actors) throw new Error('lost actors');
    return {
      mode,
      actors,
      heapBefore,
      heapAfter,
      bytesPerActor: (heapAfter - heapBefore) / actors,
    };
  }
  const nc = await connect({ servers: url, name: 'bench memory' });
  // Each run opens accounts of its own, so runs can share one server.
  const run = randomBytes(4).toString('hex');
  const node = await startBankNode(nc, { maxActive: actors * 2 });
  // One actor first, so the heap before holds everything the node keeps whatever the count.
  await node.execute({
    aggregate: 'Account',
    id: `warm-${run}`,
    command: 'open',
    input: { owner: 'bench' },
  });
  const heapBefore = await settledHeap();
  const ids = Array.from({ length: actors }, (_, i) => `idle-${run}-${i}`);
  await forEachLimited(ids, 1_000, (id) =>
    node.execute({ aggregate: 'Account', id, command: 'open', input: { owner: 'bench' } }),
  );
  ids.length = 0;
  const heapAfter = await settledHeap();
  const active = node.stats().active - 1;
  await node.stop(10_000);
  await nc.close();
  return {
    mode,
    actors,
    heapBefore,
    heapAfter,
    bytesPerActor: (heapAfter - heapBefore) / actors,
    active,
  };
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (error: unknown) => {
    process.stderr.write(
      `memory child failed: ${error instanceof Error ? error.stack : String(error)}\n`,
    );
    process.exit(1);
  },
);
