import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Account, bank } from '../../domains/bank/index.js';
import { createClient, type JetactorClient } from '../../runtime/index.js';
import { startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';

/** Debian's chromium, or the one CHROMIUM_PATH names. */
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe('the inspector page in a browser', () => {
  let node: NodeProcess | undefined;
  let connection: NatsConnection | undefined;
  let client: JetactorClient;
  let context: BrowserContext | undefined;
  let profile: string | undefined;
  let url: string;

  beforeAll(async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(
        `No chromium at ${chromiumPath}: install it (apt-get install -y chromium; .ci/run does) or set CHROMIUM_PATH to a Chromium or Chrome binary.`,
      );
    }
    const prefix = uniqueName('insp');
    [node, connection] = await Promise.all([
      startNodeProcess({
        natsUrl: sharedNatsUrl(),
        prefix,
        args: ['--inspect', '0', '--inspect-commands'],
      }),
      connectShared(),
    ]);
    const found = /inspector at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(node.stderr());
    if (found?.[1] === undefined) throw new Error(`no inspector URL in:\n${node.stderr()}`);
    url = found[1];
    client = createClient({ connection, prefix, domains: [bank] });
    profile = await mkdtemp(join(tmpdir(), 'jetactor-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      args: chromiumArgs,
      viewport: { width: 1400, height: 1000 },
    });
  });

  afterAll(async () => {
    await context?.close();
    client?.close();
    await connection?.close();
    await node?.stop();
    if (profile !== undefined) await rm(profile, { recursive: true, force: true });
  });

  /** The number drawn on a state of the diagram (0 when none). */
  const countOn = (page: Page, state: string) =>
    page.locator(`#diagram [data-state="${state}"]`).getAttribute('data-count');

  it('draws the diagram, follows commands live and travels back in time', async () => {
    const account = client.aggregate(Account, 'acc-1');
    await account.open({ owner: 'ann' });
    await account.deposit({ amount: 10 });

    const page = await context!.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    await page.goto(url);

    // The bank Account diagram, drawn by Graphviz in the browser, with live actors per state.
    await page.locator('#diagram svg [data-state="Account.open"]').waitFor({ timeout: 5_000 });
    await expect.poll(() => countOn(page, 'Account.open')).toBe('1');
    expect(await countOn(page, 'Account.frozen')).toBe('0');
    await expect.poll(() => page.locator('#connection').textContent()).toBe('live');

    // Commands over NATS: the feed shows them and the counts move, within a second.
    const sent = Date.now();
    await client.aggregate(Account, 'acc-2').open({ owner: 'bob' });
    await client.aggregate(Account, 'acc-2').freeze({ reason: 'audit' });
    await page
      .locator('#feed li[data-kind="commit"]', { hasText: 'acc-2 @2: Frozen' })
      .waitFor({ timeout: 1_000 });
    await expect.poll(() => countOn(page, 'Account.frozen'), { timeout: 1_000 }).toBe('1');
    expect(Date.now() - sent).toBeLessThan(2_000);
    expect(await countOn(page, 'Account.open')).toBe('1');
    expect(await page.locator('#node-stats [data-fact="active"]').textContent()).toBe('2');

    await account.freeze({ reason: 'review' });
    await account.deposit({ amount: 5 });

    // One aggregate: its state highlighted, its context, its events from the stream.
    await page.fill('#aggregate-id', 'acc-1');
    await page.click('#open-form button');
    const fact = (name: string) => page.locator(`#aggregate-summary [data-fact="${name}"]`);
    await expect.poll(() => fact('state').textContent()).toBe('frozen');
    expect(await page.locator('#version').getAttribute('max')).toBe('4');
    expect(await page.locator('#history tbody tr').count()).toBe(4);
    expect(await page.locator('#diagram .active').getAttribute('data-state')).toBe(
      'Account.frozen',
    );
    expect(JSON.parse((await page.textContent('#context')) ?? '')).toMatchObject({
      balance: 15,
    });

    // Time travel: version 2, replayed by the server from the stream.
    await page.locator('#version').fill('2');
    await expect.poll(() => fact('state').textContent()).toBe('open');
    expect(await page.textContent('#version-label')).toBe('2 of 4');
    expect(JSON.parse((await page.textContent('#context')) ?? '')).toMatchObject({
      owner: 'ann',
      balance: 10,
    });
    expect(await page.locator('#diagram .active').getAttribute('data-state')).toBe('Account.open');
    expect(await page.locator('#history tr.current').getAttribute('data-version')).toBe('2');

    // A command from the page (the node runs with --inspect-commands).
    await page.selectOption('#send-command', 'unfreeze');
    await page.fill('#send-input', '{}');
    await page.click('#send-form button[type="submit"]');
    await expect.poll(() => page.textContent('#send-result')).toBe('stored: version 5');
    await expect.poll(() => page.locator('#version').getAttribute('max')).toBe('5');
    expect(await fact('state').textContent()).toBe('open');
    expect((await client.view(Account, 'acc-1')).value).toBe('open');

    await expect.poll(() => countOn(page, 'Account.open'), { timeout: 1_000 }).toBe('1');
    expect(await countOn(page, 'Account.frozen')).toBe('1');

    // The README's screenshot: INSPECTOR_SCREENSHOT=docs/inspector.png npx vitest run <this file>
    const screenshot = process.env.INSPECTOR_SCREENSHOT;
    if (screenshot) {
      await page.evaluate('window.scrollTo(0, 0)');
      await page.screenshot({ path: screenshot });
    }
    expect(problems).toEqual([]);
  });
});
