import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bank } from '../../domains/bank/index.js';
import { flight } from '../../domains/flight/index.js';
import {
  clientPermissions,
  natsAuthorization,
  nodePermissions,
  roleUsers,
} from '../../runtime/nats/nats-permissions.js';
import { isJetactorError } from '../../runtime/errors.js';

const secureConf = readFileSync(new URL('../../docs/nats-secure.conf', import.meta.url), 'utf8');

describe('NATS permissions of the roles', () => {
  it('docs/nats-secure.conf holds what jetactor permissions bank flight prints', () => {
    const block = natsAuthorization(roleUsers({ domains: [bank, flight] }));
    expect(
      secureConf.includes(block),
      'docs/nats-secure.conf is stale: replace its authorization block with the output of `node dist/runtime/cli/main.js permissions bank flight`',
    ).toBe(true);
  });

  it('suggests command lines with the prefix the block was made for', () => {
    const comments = (prefix?: string) =>
      roleUsers({ domains: [bank], ...(prefix === undefined ? {} : { prefix }) })
        .flatMap((user) => user.comment ?? [])
        .filter((line) => line.includes('--user'));
    expect(comments('shop')).toHaveLength(2);
    for (const line of comments('shop')) expect(line).toMatch(/--prefix shop$/);
    for (const line of comments()) expect(line).not.toContain('--prefix');
  });

  it('lets a client send commands, queries and state requests and receive replies only', () => {
    const client = clientPermissions({ prefix: 'p', inboxPrefix: '_INBOX_client' });
    expect(client).toEqual({
      publish: ['p.cmd.>', 'p.qry.>', 'p.view.>'],
      subscribe: ['_INBOX_client.>'],
      allowResponses: false,
    });
    expect(
      clientPermissions({ prefix: 'p', inboxPrefix: 'in', domains: ['bank'] }).publish,
    ).toEqual(['p.cmd.bank.>', 'p.qry.bank.*', 'p.view.bank.>']);
  });

  it("gives a node its domain's stream, buckets and subjects and nothing of another domain", () => {
    const node = nodePermissions({ prefix: 'p', inboxPrefix: '_INBOX_bank-node', domains: [bank] });
    const all = [...node.publish, ...node.subscribe];
    expect(node.allowResponses).toBe(true);
    expect(node.publish).toEqual(
      expect.arrayContaining([
        'p.evt.bank.>',
        '$JS.API.STREAM.CREATE.p_bank',
        '$JS.API.DIRECT.GET.p_bank.>',
        '$KV.p_snapshots_bank.>',
        '$KV.p_leases_bank.>',
        '$KV.p_rm_bank_balances.>',
        '$JS.API.STREAM.DELETE.KV_p_rm_bank_balances',
        '$KV.p_rm_leases.bank.>',
        'p.dlq.bank.*',
      ]),
    );
    expect(node.subscribe).toEqual(
      expect.arrayContaining([
        'p.cmd.bank.>',
        'p.view.bank.>',
        'p.fwd.bank.*',
        '_INBOX_bank-node.>',
      ]),
    );
    expect(all.filter((s) => s.includes('flight'))).toEqual([]);
    // History is append-only, even for nodes: no purge, delete or edit of the domain stream.
    for (const verb of ['PURGE', 'DELETE', 'UPDATE', 'MSG.DELETE']) {
      expect(node.publish).not.toContain(`$JS.API.STREAM.${verb}.p_bank`);
    }
    expect(all.some((s) => s === '>' || s === '$JS.API.>' || s === '_INBOX.>')).toBe(false);
  });

  it('lets a node whose domain has reactors but no projections hold its reactor leases', () => {
    const reactive = { ...bank, name: 'ledger', projections: [] };
    const node = nodePermissions({ prefix: 'p', inboxPrefix: 'in', domains: [reactive] });
    expect(node.publish).toEqual(
      expect.arrayContaining([
        '$JS.API.STREAM.CREATE.KV_p_rm_leases',
        '$KV.p_rm_leases.ledger.>',
        'p.dlq.ledger.*',
      ]),
    );
    expect(node.subscribe).toContain('p.rx.ledger.>');
  });

  it('renders password references unquoted, literal passwords quoted, and nkey users', () => {
    const text = natsAuthorization([
      { user: 'a', password: '$NATS_A_PASSWORD' },
      { user: 'b', password: 's3cr"t' },
      { nkey: 'UABC', permissions: clientPermissions({ inboxPrefix: 'in' }) },
    ]);
    expect(text).toContain('password: $NATS_A_PASSWORD\n');
    expect(text).toContain('password: "s3cr\\"t"\n');
    expect(text).toContain('nkey: "UABC"');
    expect(text).toContain('"jetactor.cmd.>"');
  });

  it('refuses an inbox prefix with wildcards and a user without credentials', () => {
    for (const call of [
      () => clientPermissions({ inboxPrefix: '_INBOX.>' }),
      () => nodePermissions({ inboxPrefix: 'in', domains: [] }),
      () => natsAuthorization([{ user: 'nobody' }]),
    ]) {
      let caught: unknown;
      try {
        call();
      } catch (error) {
        caught = error;
      }
      expect(isJetactorError(caught) && caught.code).toBe('INVALID_OPTIONS');
    }
  });
});
