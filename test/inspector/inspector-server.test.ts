import { request } from 'node:http';
import { instance } from '@viz-js/viz';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Account, bank } from '../../domains/bank/index.js';
import { flight } from '../../domains/flight/index.js';
import {
  createNode,
  isConfigError,
  startInspector,
  type DomainNode,
  type FeedItem,
  type Inspector,
  type InspectorCatalogue,
  type InspectorStats,
} from '../../runtime/index.js';
import { exampleOf } from '../../runtime/inspector/inspector-catalogue.js';

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function inspected(
  options: { commands?: boolean } = {},
): Promise<{ node: DomainNode; inspector: Inspector; base: string }> {
  const node = createNode({ domains: [bank, flight], logger: silent });
  cleanups.push(() => node.stop());
  const inspector = await startInspector({ node, port: 0, logger: silent, ...options });
  cleanups.push(() => inspector.close());
  return { node, inspector, base: inspector.url };
}

function json(response: Response): Promise<any> {
  return response.json();
}

/** Reads server-sent events from the inspector until closed. */
function openEvents(url: string) {
  const controller = new AbortController();
  const events: { event: string; data: any }[] = [];
  const done = (async () => {
    const response = await fetch(url, { signal: controller.signal });
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) {
          events.push({ event, data: JSON.parse(data) as unknown });
        }
      }
    }
  })().catch(() => undefined);
  return {
    events,
    feed: (): FeedItem[] =>
      events.filter((e) => e.event === 'feed').flatMap((e) => e.data.items as FeedItem[]),
    stats: (): InspectorStats[] =>
      events.filter((e) => e.event === 'stats').map((e) => e.data as InspectorStats),
    close: async () => {
      controller.abort();
      await done;
    },
  };
}

async function until<T>(what: () => T | undefined | false, timeoutMs = 2_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = what();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('inspector server', () => {
  it('serves the page, its assets and Graphviz from the package, with a strict policy', async () => {
    const { base } = await inspected();
    const page = await fetch(base);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    const html = await page.text();
    expect(html).toContain('/assets/inspector.js');
    for (const asset of ['/assets/inspector.js', '/assets/inspector.css', '/vendor/viz.js']) {
      const response = await fetch(new URL(asset, base));
      expect(response.status, asset).toBe(200);
      await response.arrayBuffer();
    }
    const missing = await fetch(new URL('/assets/nope.js', base));
    expect(missing.status).toBe(404);
  });

  it('describes every aggregate and runtime machine, with DOT that Graphviz lays out', async () => {
    const { base } = await inspected();
    const catalogue = (await json(
      await fetch(new URL('/api/catalogue', base)),
    )) as InspectorCatalogue;
    expect(catalogue.commands).toBe(false);
    expect(catalogue.domains.map((d) => d.name)).toEqual(['bank', 'flight']);
    const account = catalogue.domains[0]?.aggregates[0];
    expect(account?.key).toBe('bank.Account');
    expect(account?.graph.nodes.map((n) => n.id)).toContain('Account.frozen');
    expect(account?.commands.find((c) => c.name === 'open')?.example).toBe('{"owner":"text"}');
    expect(account?.commands.find((c) => c.name === 'deposit')?.example).toBe('{"amount":1}');
    expect(catalogue.runtime.map((m) => m.key)).toEqual([
      'runtime.AggregateActor',
      'runtime.ReactorWorker',
    ]);
    const viz = await instance();
    for (const machine of [
      ...catalogue.domains.flatMap((d) => d.aggregates),
      ...catalogue.runtime,
    ]) {
      const svg = viz.renderString(machine.dot, { format: 'svg' });
      for (const node of machine.graph.nodes.slice(1)) {
        expect(svg, `${machine.key} ${node.id}`).toContain(`<title>${node.id}</title>`);
      }
    }
  });

  it('replays an aggregate from its stream at any version', async () => {
    const { node, base } = await inspected();
    const account = node.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    await account.deposit({ amount: 10 });
    await account.freeze({ reason: 'audit' });

    const latest = await json(await fetch(new URL('/api/aggregate/bank/Account/acc-1', base)));
    expect(latest).toMatchObject({
      version: 3,
      latestVersion: 3,
      value: 'frozen',
      activeStates: ['Account.frozen'],
      live: { lifecycle: 'ready', version: 3, mailboxDepth: 0 },
    });
    expect(latest.history).toHaveLength(3);
    const earlier = await json(
      await fetch(new URL('/api/aggregate/bank/Account/acc-1?version=1', base)),
    );
    expect(earlier).toMatchObject({
      version: 1,
      value: 'open',
      context: { owner: 'ann', balance: 0 },
      activeStates: ['Account.open'],
      event: { type: 'Opened' },
    });
  });

  it('answers bad aggregate requests with a typed error and a fitting status', async () => {
    const { base } = await inspected();
    const cases: [string, number, string][] = [
      ['/api/aggregate/bank/Account/acc-1?version=x', 400, 'INVALID_REQUEST'],
      ['/api/aggregate/bank/Account/acc-1?version=4', 400, 'INVALID_REQUEST'],
      ['/api/aggregate/shop/Account/acc-1', 404, 'UNKNOWN_DOMAIN'],
      ['/api/aggregate/bank/Vault/acc-1', 404, 'UNKNOWN_AGGREGATE'],
      ['/api/aggregate/bank/Account/a%20b', 400, 'INVALID_ID'],
      ['/api/nothing', 404, 'INVALID_REQUEST'],
    ];
    for (const [path, status, code] of cases) {
      const response = await fetch(new URL(path, base));
      expect(response.status, path).toBe(status);
      expect((await json(response)).error.code, path).toBe(code);
    }
  });

  it('refuses requests addressed to another host name (DNS rebinding)', async () => {
    const { inspector } = await inspected();
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: inspector.port,
          path: '/api/catalogue',
          headers: { Host: `evil.example:${inspector.port}` },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
  });

  it('is read-only unless commands are enabled', async () => {
    const { node, base } = await inspected();
    const response = await fetch(new URL('/api/commands', base), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        domain: 'bank',
        aggregate: 'Account',
        id: 'a',
        command: 'open',
        input: { owner: 'x' },
      }),
    });
    expect(response.status).toBe(403);
    expect((await json(response)).error.code).toBe('COMMANDS_DISABLED');
    expect([...node.actors()]).toEqual([]);
  });

  it('executes commands posted as JSON when enabled, validated like any command', async () => {
    const { node, base } = await inspected({ commands: true });
    const post = (body: unknown, type = 'application/json') =>
      fetch(new URL('/api/commands', base), {
        method: 'POST',
        headers: { 'Content-Type': type },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    const ok = await post({
      domain: 'bank',
      aggregate: 'Account',
      id: 'acc-9',
      command: 'open',
      input: { owner: 'zoe' },
    });
    expect(ok.status).toBe(200);
    const reply = await json(ok);
    expect(reply).toMatchObject({
      version: 1,
      events: [{ type: 'Opened', meta: { actor: 'inspector' } }],
    });
    expect((await node.view(Account, 'acc-9')).value).toBe('open');

    const invalid = await post({
      domain: 'bank',
      aggregate: 'Account',
      id: 'acc-9',
      command: 'deposit',
      input: { amount: -1 },
    });
    expect(invalid.status).toBe(400);
    expect((await json(invalid)).error.code).toBe('VALIDATION_FAILED');
    const form = await post('command=open', 'application/x-www-form-urlencoded');
    expect(form.status).toBe(415);
    const notJson = await post('{', 'application/json');
    expect((await json(notJson)).error.code).toBe('INVALID_REQUEST');
  });

  it('inspects the node only while a page is connected, pushing what it does', async () => {
    const { node, inspector, base } = await inspected();
    expect(inspector.attached).toBe(false);
    await node.aggregate(Account, 'before').open({ owner: 'ann' });

    const stream = openEvents(new URL('/api/events', base).href);
    await until(() => inspector.attached);
    const first = await until(() => stream.stats()[0]);
    expect(first.states['bank.Account']).toEqual({ 'Account.open': 1 });
    expect(first.states['runtime.AggregateActor']).toEqual({ 'aggregateActor.ready': 1 });

    const started = Date.now();
    await node.aggregate(Account, 'acc-1').open({ owner: 'bob' });
    await node.aggregate(Account, 'acc-1').freeze({ reason: '' });
    const commit = await until(() =>
      stream.feed().find((item) => item.kind === 'commit' && item.version === 2),
    );
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(commit).toMatchObject({ id: 'acc-1', value: 'frozen', events: [{ type: 'Frozen' }] });
    expect(stream.feed().map((item) => item.kind)).toEqual([
      'command',
      'commit',
      'reply',
      'command',
      'commit',
      'reply',
    ]);
    const later = await until(() =>
      stream.stats().find((s) => s.states['bank.Account']?.['Account.frozen'] === 1),
    );
    expect(later.node).toMatchObject({ active: 2, spawned: 2 });
    expect(later.pages).toBe(1);

    await stream.close();
    await until(() => !inspector.attached);
    expect(inspector.pages).toBe(0);
  });

  it('reports a port in use with the fix', async () => {
    const { node, inspector } = await inspected();
    const error: unknown = await startInspector({
      node,
      port: inspector.port,
      logger: silent,
    }).catch((e: unknown) => e);
    expect(isConfigError(error) && error.code).toBe('INSPECTOR_UNAVAILABLE');
    expect((error as Error).message).toMatch(/port is in use.*--inspect/);
  });

  it('rejects wrong options with a config error', async () => {
    const error: unknown = await startInspector({ node: {} as DomainNode, port: -1 }).catch(
      (e: unknown) => e,
    );
    expect(isConfigError(error) && error.code).toBe('INVALID_OPTIONS');
    expect((error as Error).message).toMatch(/node: expected a node made with createNode.*port/);
  });
});

describe('command examples', () => {
  it('fill the required fields of a JSON schema with placeholders', () => {
    expect(
      exampleOf({
        type: 'object',
        properties: {
          name: { type: 'string', minLength: 1 },
          note: { type: 'string' },
          count: { type: 'integer', exclusiveMinimum: 0 },
          kind: { enum: ['a', 'b'] },
          flag: { type: 'boolean' },
          tags: { type: 'array' },
        },
        required: ['name', 'note', 'count', 'kind', 'flag', 'tags'],
      }),
    ).toEqual({ name: 'text', note: '', count: 1, kind: 'a', flag: false, tags: [] });
    expect(exampleOf(null)).toEqual({});
  });
});
