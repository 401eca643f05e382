import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { JetStreamEventStore, createNode } from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { assertBuilt } from '../fixtures/run-cli.js';
import { readEvents, silentLogger } from '../fixtures/test-support.js';

const script = fileURLToPath(new URL('../fixtures/mirror-node.js', import.meta.url));
const built = fileURLToPath(new URL('../../dist/runtime/index.js', import.meta.url));

/** Starts the mirror node in its own process; resolves once it listens. */
function startMirrorNode(prefix: string): Promise<{ child: ChildProcess; stderr: () => string }> {
  const child = spawn(process.execPath, [script, sharedNatsUrl(), prefix, '1000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the mirror node did not start in time:\n${stderr}`));
    }, 10_000);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      if (chunk.includes('ready')) {
        clearTimeout(timer);
        resolve({ child, stderr: () => stderr });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the mirror node exited with ${code}:\n${stderr}`));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => child.once('exit', () => resolve()));
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('reactors killed mid-handler', () => {
  let nc: NatsConnection;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    assertBuilt(built);
    nc = await connectShared();
  });

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await nc.close();
  });

  it('handles every event at least once, in order per aggregate, and acts on each exactly once', async () => {
    const prefix = uniqueName('kill');
    const handled: { id: string; version: number }[] = [];
    const decoder = new TextDecoder();
    nc.subscribe(`${prefix}.test.handled`, {
      callback: (_error, msg) => {
        handled.push(JSON.parse(decoder.decode(msg.data)) as { id: string; version: number });
      },
    });
    const store = await JetStreamEventStore.open({ connection: nc, prefix });
    const writer = createNode({ domains: [bank], store, logger: silentLogger });
    await writer.start();
    const ids = Array.from({ length: 10 }, (_, i) => `s${i}`);
    const write = (deposits: number) =>
      Promise.all(
        ids.map(async (id) => {
          for (let i = 0; i < deposits; i++) {
            await writer.aggregate(Account, id).deposit({ amount: i + 1 });
          }
        }),
      );
    await Promise.all(ids.map((id) => writer.aggregate(Account, id).open({ owner: id })));

    const first = await startMirrorNode(prefix);
    children.push(first.child);
    await write(6);
    await waitFor(() => handled.length >= 25, 10_000);
    first.child.kill('SIGKILL');
    await exited(first.child);
    const atKill = handled.length;
    await write(2); // written while no reactor runs

    const second = await startMirrorNode(prefix);
    children.push(second.child);
    const expected = ids.flatMap((id) => Array.from({ length: 9 }, (_, v) => `${id}@${v + 1}`));
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => {
      const seen = new Set(handled.map((h) => `${h.id}@${h.version}`));
      if (!expected.every((key) => seen.has(key))) return false;
      const info = await jsm.consumers.info(`${prefix}_bank`, `${prefix}_bank_mirror`);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, 20_000);
    second.child.kill('SIGTERM');
    await exited(second.child);

    // At least once: every source event was handled; the kill made some run twice.
    const redone = handled.length - new Set(handled.map((h) => `${h.id}@${h.version}`)).size;
    expect(redone, `handled ${handled.length}, ${atKill} before the kill`).toBeGreaterThan(0);
    // In order per aggregate, across the kill: a version is never handled after a later one.
    for (const id of ids) {
      const versions = handled.filter((h) => h.id === id).map((h) => h.version);
      expect(
        versions.every((v, i) => i === 0 || v >= versions[i - 1]!),
        `${id}: ${versions.join(',')}`,
      ).toBe(true);
    }
    // Exactly once in effect: each mirror got one command per source event, stored once.
    for (const id of ids) {
      const mirror = await readEvents(store, {
        domain: 'bank',
        aggregate: 'Account',
        id: `m-${id}`,
      });
      expect(mirror.map((e) => e.meta.commandId)).toEqual(
        Array.from({ length: 9 }, (_, v) => `mirror:bank/Account/${id}@${v + 1}:1`),
      );
      expect(mirror.map((e) => e.type)).toEqual(['Opened', ...Array<string>(8).fill('Deposited')]);
    }
    await writer.stop();
    await store.close();
  });
});
