import { headers, type Msg, type NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Account, bank } from '../../domains/bank/index.js';
import { errorCodes } from '../../runtime/error-codes.js';
import { MsgpackCodec, type ErrorJSON, type ServiceStats } from '../../runtime/index.js';
import { connectShared, sharedNatsUrl, uniqueName } from '../helpers/nats.js';
import { killAllNodes, startNodeProcess, type NodeProcess } from '../fixtures/node-process.js';
import { storedCommits } from '../fixtures/stream-contents.js';

/**
 * Property-based fuzzing of the command protocol against a `jetactor node bank` process: random
 * subjects, headers and bodies, sent over NATS as any client could send them.
 *
 * `FUZZ_RUNS` sets the number of property runs (each sends a batch of 1 to 8 requests at once;
 * default 1 000, about 4 300 requests in a few seconds; 20 000 sends about 90 000); `FUZZ_SEED`
 * replays a run (fast-check prints the seed and the shrunk counterexample when a property fails;
 * the node's state carries over between runs, so a replay finds the same inputs, not always the
 * same outcome).
 */
const runs = Number(process.env.FUZZ_RUNS ?? 1_000);
const seed =
  process.env.FUZZ_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.FUZZ_SEED);
const maxPayload = 2_048;
/** The node's default `supervisor.recentCommands`: how many command ids an aggregate remembers. */
const recentCommands = 128;

const msgpack = new MsgpackCodec();
const utf8 = new TextEncoder();
const text = new TextDecoder();

/** Codes a reply may carry: the runtime's, and those the bank domain throws. */
const domainCodes = new Set(['INSUFFICIENT_FUNDS', 'BALANCE_NOT_ZERO']);
/** A bug, never an answer to bad input: an untyped failure inside the node. */
const bugCodes = new Set(['INTERNAL_ERROR', 'INVALID_REPLY']);

const commands = Object.keys(Account.commands);
const eventSchemas: Record<string, z.ZodObject> = Account.events;

/** A request as it goes on the wire. */
interface FuzzRequest {
  subject: string;
  headers: [string, string][];
  body: Uint8Array;
}

// ---- generators ----------------------------------------------------------------------------

/** Subject-token characters NATS delivers (no whitespace, no control characters, no "."). */
const tokenChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abcxyzABC019-_'.split('')) },
  { weight: 2, arbitrary: fc.constantFrom(...'!"#$%&\'()+,/:;<=?@[\\]^`{|}~'.split('')) },
  { weight: 1, arbitrary: fc.constantFrom('*', '>') },
  {
    weight: 2,
    arbitrary: fc.constantFrom('é', 'ü', 'ñ', 'ß', '日', '本', '☃', '🙂', 'א', 'ض', '\u0301', 'Ω'),
  },
);
const token = (maxLength = 16) => fc.string({ unit: tokenChar, minLength: 1, maxLength });

const aggregateName = fc.oneof(
  { weight: 12, arbitrary: fc.constant('Account') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'account',
      'ACCOUNT',
      'Vault',
      'Aircraft',
      '__proto__',
      'constructor',
    ),
  },
  { weight: 1, arbitrary: token() },
);

/** Ids reused so that commands meet existing aggregates, some of them unicode. */
const sharedId = fc.oneof(
  fc.nat(30).map((n) => `fz-${n}`),
  fc.constantFrom('ü-ñ', '日本-1', '🙂', 'a'.repeat(256)),
);

/** Shared ids and odd ones. */
const aggregateId = fc.oneof(
  { weight: 10, arbitrary: sharedId },
  { weight: 3, arbitrary: token(24) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 700 }).map((n) => 'i'.repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom('*', '>', 'a*b', 'a>', '__proto__') },
);

const commandName = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(...commands) },
  {
    weight: 2,
    arbitrary: fc.constantFrom('Deposit', 'transfer', '__proto__', 'toString', 'hasOwnProperty'),
  },
  { weight: 1, arbitrary: token() },
);

function subjectOf(prefix: string): fc.Arbitrary<string> {
  return fc.oneof(
    {
      weight: 20,
      arbitrary: fc
        .tuple(aggregateName, aggregateId, commandName)
        .map(([a, id, c]) => `${prefix}.cmd.bank.${a}.${id}.${c}`),
    },
    {
      weight: 2,
      arbitrary: fc
        .array(fc.oneof(aggregateName, aggregateId, commandName), { minLength: 1, maxLength: 5 })
        .filter((tokens) => tokens.length !== 3)
        .map((tokens) => [`${prefix}.cmd.bank`, ...tokens].join('.')),
    },
    {
      weight: 2,
      arbitrary: fc
        .array(fc.oneof(aggregateName, aggregateId), { minLength: 1, maxLength: 3 })
        .map((tokens) => [`${prefix}.view.bank`, ...tokens].join('.')),
    },
    {
      // Only nodes forward requests to a partition's owner; a client that tries must be refused.
      weight: 1,
      arbitrary: fc.nat(63).map((partition) => `${prefix}.fwd.bank.${partition}`),
    },
  );
}

/** Header values: anything but CR and LF (which no NATS client can send). */
const headerValue = fc
  .oneof(
    { weight: 6, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
    { weight: 1, arbitrary: fc.integer({ min: 250, max: 300 }).map((n) => 'v'.repeat(n)) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '\t', '\u0000', 'ü☃🙂', ' padded ') },
  )
  .map((value) => value.replace(/[\r\n]/g, ''));

const versionValue = fc.oneof(
  fc.nat(12).map(String),
  fc.integer().map(String),
  fc.constantFrom('', ' 1 ', '1.5', '-1', '1e3', '0x10', '9007199254740993', '٣', 'two', '+2'),
  headerValue,
);

const headerNameChars =
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+^`|~";
const headerName = fc.string({
  unit: fc.constantFrom(...headerNameChars.split('')),
  minLength: 1,
  maxLength: 24,
});

/** Any capitalisation of a header name (they are matched without regard to case). */
const casing = (name: string) => fc.constantFrom(name, name.toLowerCase(), name.toUpperCase());

const headerEntry: fc.Arbitrary<[string, string]> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(casing('Jetactor-Command-Id'), headerValue) },
  { weight: 4, arbitrary: fc.tuple(casing('Jetactor-Expected-Version'), versionValue) },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constantFrom('Jetactor-Correlation-Id', 'Jetactor-Causation-Id', 'Jetactor-Actor'),
      headerValue,
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constantFrom(
        'Jetactor-Forwarded-Subject',
        'Jetactor-Partition-Token',
        'Jetactor-Forwarded-By',
      ),
      fc.oneof(headerValue, fc.nat(20).map(String)),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      headerName.map((n) => `Jetactor-${n}`),
      headerValue,
    ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(
      casing('Content-Type'),
      fc.oneof(
        fc.constantFrom(
          'application/json',
          'application/msgpack',
          'application/json; charset=utf-8',
          'APPLICATION/MSGPACK',
          'text/plain',
          'application/x-msgpack',
          '',
          ';',
        ),
        headerValue,
      ),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(headerName, headerValue) },
);

/** Inputs shaped like the bank's commands, valid or nearly so. */
const goodishInput = fc.oneof(
  fc.record({ owner: fc.string({ minLength: 0, maxLength: 30 }) }),
  fc.record({
    owner: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }),
    overdraftLimit: fc.oneof(fc.nat(1_000), fc.integer(), fc.double()),
  }),
  fc.record({ amount: fc.integer({ min: 1, max: 1_000 }) }),
  fc.record({
    amount: fc.oneof(
      fc.integer(),
      fc.double(),
      fc.constantFrom(0, -1, 2 ** 53 + 1, 1e11, 1e11 + 1, Number.MAX_VALUE),
    ),
  }),
  fc.record({ reason: fc.oneof(fc.string(), fc.nat()) }, { requiredKeys: [] }),
  fc.constant({}),
);

const encodings = fc.constantFrom<'json' | 'msgpack'>('json', 'msgpack');

function encode(value: unknown, as: 'json' | 'msgpack'): Uint8Array {
  return as === 'json' ? utf8.encode(JSON.stringify(value)) : msgpack.encode(value);
}

const nested = (depth: number, as: 'json' | 'msgpack'): Uint8Array =>
  as === 'json'
    ? utf8.encode(`{"amount":5,"extra":${'['.repeat(depth)}${']'.repeat(depth)}}`)
    : new Uint8Array([
        0x82,
        0xa6,
        ...utf8.encode('amount'),
        0x05,
        0xa5,
        ...utf8.encode('extra'),
        ...new Array<number>(depth).fill(0x91),
        0x01,
      ]);

const body: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 10, arbitrary: fc.tuple(goodishInput, encodings).map(([v, as]) => encode(v, as)) },
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  // Valid JSON and msgpack of the wrong shape.
  {
    weight: 3,
    arbitrary: fc.tuple(fc.jsonValue({ maxDepth: 4 }), encodings).map(([v, as]) => encode(v, as)),
  },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        fc.uint8Array({ maxLength: 40 }),
        fc.date({ noInvalidDate: true }),
        fc.constant(NaN),
        fc.constant(-Infinity),
      )
      .map((v) => msgpack.encode({ amount: v, owner: v, reason: v })),
  },
  // Truncated or damaged encodings of good inputs.
  {
    weight: 3,
    arbitrary: fc
      .tuple(goodishInput, encodings, fc.nat(), fc.option(fc.tuple(fc.nat(), fc.nat(255))))
      .map(([v, as, cut, flip]) => {
        const bytes = encode(v, as).slice();
        if (flip !== null && bytes.length > 0) bytes[flip[0] % bytes.length] = flip[1];
        return bytes.slice(0, bytes.length === 0 ? 0 : cut % bytes.length);
      }),
  },
  // Beyond --max-payload.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: maxPayload + 1, max: 60_000 }), fc.boolean())
      .map(([size, json]) =>
        json
          ? utf8.encode(`{"amount":1,"pad":"${'x'.repeat(size)}"}`)
          : new Uint8Array(size).fill(0xa1),
      ),
  },
  // Deep nesting, inside an ignored key of a valid input, and at the top.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 3_000 }), encodings)
      .map(([d, as]) => nested(d, as)),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 1, max: 2_000 })
      .map((d) => utf8.encode('['.repeat(d) + ']'.repeat(d))),
  },
  // Keys that trip naive object handling.
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '{"__proto__":{"amount":5}}',
        '{"amount":5,"__proto__":{"owner":"x","amount":-1}}',
        '{"constructor":{"prototype":{"amount":5}}}',
        '{"owner":"ann","toString":1,"valueOf":null,"hasOwnProperty":0}',
        '{"amount":1,"amount":-5}',
        '{"amount":1e400}',
        '{"amount":5}garbage',
      )
      .map((s) => utf8.encode(s)),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom('', ' ', '\n\t ', 'null', '""', '0').map((s) => utf8.encode(s)),
  },
);

/** Valid inputs per command, so that the fuzz also drives accounts through their life. */
const validInput: Record<string, fc.Arbitrary<unknown>> = {
  open: fc.record(
    {
      owner: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
      overdraftLimit: fc.nat(50),
    },
    { requiredKeys: ['owner'] },
  ),
  deposit: fc.record({ amount: fc.integer({ min: 1, max: 100 }) }),
  withdraw: fc.record({ amount: fc.integer({ min: 1, max: 100 }) }),
  freeze: fc.record({ reason: fc.string({ maxLength: 12 }) }, { requiredKeys: [] }),
  unfreeze: fc.constant({}),
  close: fc.constant({}),
};

/** A well-formed command on one of the shared ids, with valid or no option headers. */
function validCommandOf(prefix: string): fc.Arbitrary<FuzzRequest> {
  return fc
    .constantFrom(
      'open',
      'open',
      'deposit',
      'deposit',
      'deposit',
      'withdraw',
      'withdraw',
      'freeze',
      'unfreeze',
      'close',
    )
    .chain((command) =>
      fc.record({
        subject: fc
          .constantFrom('fz-1', 'fz-2', 'fz-3', 'fz-4', 'ü-ñ', '日本-1', '🙂')
          .map((id) => `${prefix}.cmd.bank.Account.${id}.${command}`),
        headers: fc.array(
          fc.oneof(
            fc.tuple(fc.constant('Jetactor-Command-Id'), fc.constantFrom('c-1', 'c-2', 'c-3', 'ü')),
            fc.tuple(fc.constant('Jetactor-Expected-Version'), fc.nat(12).map(String)),
            fc.tuple(fc.constant('Jetactor-Actor'), fc.string({ minLength: 1, maxLength: 12 })),
          ),
          { maxLength: 2 },
        ),
        body: fc.tuple(validInput[command]!, encodings).map(([v, as]) => encode(v, as)),
      }),
    )
    .filter((request) => {
      const names = request.headers.map(([k]) => k);
      return new Set(names).size === names.length;
    });
}

function requestOf(prefix: string): fc.Arbitrary<FuzzRequest> {
  return fc.oneof(
    { weight: 1, arbitrary: validCommandOf(prefix) },
    { weight: 2, arbitrary: fuzzedRequestOf(prefix) },
  );
}

function fuzzedRequestOf(prefix: string): fc.Arbitrary<FuzzRequest> {
  return fc.record({
    subject: subjectOf(prefix),
    headers: fc.oneof(
      { weight: 3, arbitrary: fc.constant<[string, string][]>([]) },
      { weight: 3, arbitrary: fc.array(headerEntry, { maxLength: 4 }) },
    ),
    body,
  });
}

// ---- checks --------------------------------------------------------------------------------

/** True when the request asks for a view: on a view subject, or forged as forwarded from one. */
function isView(request: FuzzRequest): boolean {
  const forwarded = request.subject.split('.')[1] === 'fwd';
  const subject = forwarded
    ? (request.headers.find(([k]) => k.toLowerCase() === 'jetactor-forwarded-subject')?.[1] ?? '')
    : request.subject;
  return subject.split('.')[1] === 'view';
}

interface Tally {
  requests: number;
  ok: number;
  codes: Map<string, number>;
  /** How often each command (see {@link commandKey}) was answered with success, not duplicate. */
  acknowledged: Map<string, number>;
  /** Command ids answered with a retryable error: their commit may or may not have landed. */
  uncertain: Set<string>;
}

function decodeReply(reply: Msg): any {
  const contentType = reply.headers?.get('Content-Type') ?? '';
  if (contentType === 'application/msgpack') return msgpack.decode(reply.data);
  expect(contentType, 'reply Content-Type').toBe('application/json');
  return JSON.parse(text.decode(reply.data));
}

/** The property: a typed error with a known code, or a success that matches the schemas. */
function checkReply(request: FuzzRequest, reply: Msg, tally: Tally): void {
  const where = `${JSON.stringify(request.subject.slice(0, 200))} ${JSON.stringify(request.headers)}`;
  const status = reply.headers?.get('Jetactor-Status');
  const body = decodeReply(reply);
  tally.requests += 1;
  if (status === 'error') {
    const code = reply.headers?.get('Jetactor-Error-Code') ?? '';
    tally.codes.set(code, (tally.codes.get(code) ?? 0) + 1);
    expect(bugCodes.has(code), `${code} for ${where}: ${JSON.stringify(body)}`).toBe(false);
    expect(
      Object.hasOwn(errorCodes, code) || domainCodes.has(code),
      `unknown code ${code} for ${where}`,
    ).toBe(true);
    const error = body.error as ErrorJSON;
    expect(error.code).toBe(code);
    expect(typeof error.message === 'string' && error.message.length > 10).toBe(true);
    if (Object.hasOwn(errorCodes, code)) {
      expect(error.kind).toBe(errorCodes[code as keyof typeof errorCodes]);
    }
    if (error.kind !== 'rejection') {
      const commandId = request.headers.find(([k]) => k.toLowerCase() === 'jetactor-command-id');
      if (commandId !== undefined) tally.uncertain.add(commandId[1].trim());
    }
    return;
  }
  expect(status, `status of the reply to ${where}`).toBe('ok');
  tally.ok += 1;
  if (isView(request)) {
    expect(Number.isSafeInteger(body.version)).toBe(true);
    expect(body).toHaveProperty('value');
    return;
  }
  expect(typeof body.commandId).toBe('string');
  expect(typeof body.duplicate).toBe('boolean');
  expect(Array.isArray(body.events) && body.events.length > 0).toBe(true);
  const events = body.events as { type: string; data: unknown; meta: any }[];
  for (const [index, event] of events.entries()) {
    const schema = Object.hasOwn(eventSchemas, event.type) ? eventSchemas[event.type] : undefined;
    expect(schema, `event type ${event.type}`).toBeDefined();
    expect(schema!.strict().safeParse(event.data).success, JSON.stringify(event)).toBe(true);
    expect(event.meta).toMatchObject({
      domain: 'bank',
      aggregate: 'Account',
      commandId: body.commandId,
    });
    expect(event.meta.version).toBe(body.version - events.length + 1 + index);
  }
  if (!body.duplicate) {
    const key = commandKey(events[0]!.meta.aggregateId as string, body.commandId as string);
    tally.acknowledged.set(key, (tally.acknowledged.get(key) ?? 0) + 1);
  }
}

async function heapUsed(nc: NatsConnection, prefix: string): Promise<number> {
  const reply = await nc.request(`$SRV.STATS.${prefix}`, '', { timeout: 5_000 });
  const stats = reply.json<ServiceStats>();
  const memory = stats.endpoints.find((e) => e.name === 'cmd-bank')?.data?.memory as
    { heapUsedBytes: number } | undefined;
  expect(memory?.heapUsedBytes).toBeGreaterThan(0);
  return memory!.heapUsedBytes;
}

describe('the command protocol under fuzzing', () => {
  let nc: NatsConnection;
  let node: NodeProcess;
  const prefix = uniqueName('fz');

  beforeAll(async () => {
    nc = await connectShared();
    node = await startNodeProcess({
      natsUrl: sharedNatsUrl(),
      prefix,
      args: ['--max-payload', String(maxPayload)],
    });
  });

  afterAll(async () => {
    await node.stop();
    await killAllNodes();
    await nc.close();
  });

  it('answers every random request with a known error code or a valid success, stores nothing invalid and stays up', async () => {
    const tally: Tally = {
      requests: 0,
      ok: 0,
      codes: new Map(),
      acknowledged: new Map(),
      uncertain: new Set(),
    };
    const send = async (request: FuzzRequest): Promise<void> => {
      const h = headers();
      for (const [key, value] of request.headers) h.append(key, value);
      const reply = await nc.request(request.subject, request.body, {
        timeout: 10_000,
        ...(request.headers.length === 0 ? {} : { headers: h }),
      });
      checkReply(request, reply, tally);
    };
    // Warm up (JIT, first actors), then take the baseline.
    await send({
      subject: `${prefix}.cmd.bank.Account.fz-1.open`,
      headers: [],
      body: utf8.encode('{"owner":"ann"}'),
    });
    const heap = [await heapUsed(nc, prefix)];
    let batches = 0;
    const started = Date.now();
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(requestOf(prefix), { minLength: 1, maxLength: 8 }),
          async (batch) => {
            await Promise.all(batch.map(send));
            batches += 1;
            if (batches % 50 === 0) heap.push(await heapUsed(nc, prefix));
          },
        ),
        { numRuns: runs, seed },
      );
    } finally {
      const codes = [...tally.codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`);
      console.info(
        `fuzz: seed ${seed}, ${batches} property runs, ${tally.requests} requests in ${Date.now() - started} ms: ${tally.ok} ok, ${codes.join(', ')}; node heap ${mib(heap[0]!)} → max ${mib(Math.max(...heap))} MiB`,
      );
    }

    // The node is alive and still serves a good command.
    expect(node.child.exitCode).toBeNull();
    const good = await nc.request(`${prefix}.cmd.bank.Account.fz-after.open`, '{"owner":"ann"}', {
      timeout: 5_000,
    });
    expect(good.headers?.get('Jetactor-Status')).toBe('ok');
    tally.acknowledged.set(commandKey('fz-after', decodeReply(good).commandId as string), 1);
    // No untyped failure was logged.
    expect(node.logs().filter((line) => Number(line.level) >= 50)).toEqual([]);

    // Every stored event passes its schema; versions are gap-free per aggregate; what is stored
    // is exactly what was acknowledged as new. A command id stored twice on one aggregate must
    // have been forgotten: at least `recentCommands` other commands of it came in between.
    const versions = new Map<string, number>();
    const stored = new Map<string, number>();
    /** Per aggregate: command records so far, and the index of the last one of each command id. */
    const records = new Map<string, { count: number; last: Map<string, number> }>();
    for (const commit of await storedCommits(nc, prefix, 'bank')) {
      const definition = bank.aggregates[commit.stream.aggregate];
      expect(definition, commit.stream.aggregate).toBeDefined();
      const schemas: Record<string, z.ZodObject> = definition!.events;
      const stream = `${commit.stream.aggregate} ${commit.stream.id}`;
      for (const event of commit.events) {
        const schema = Object.hasOwn(schemas, event.type) ? schemas[event.type] : undefined;
        expect(schema?.strict().safeParse(event.data).success, JSON.stringify(event)).toBe(true);
        const expected = (versions.get(stream) ?? 0) + 1;
        expect(event.meta.version, `version of ${stream}`).toBe(expected);
        versions.set(stream, expected);
      }
      const seen = records.get(stream) ?? { count: 0, last: new Map<string, number>() };
      records.set(stream, seen);
      for (const record of commit.commands) {
        const key = commandKey(commit.stream.id, record.id);
        stored.set(key, (stored.get(key) ?? 0) + 1);
        const before = seen.last.get(record.id);
        if (before !== undefined) {
          expect(
            seen.count - before - 1,
            `${key} stored again while remembered`,
          ).toBeGreaterThanOrEqual(recentCommands);
        }
        seen.last.set(record.id, seen.count);
        seen.count += 1;
      }
    }
    for (const [key, count] of tally.acknowledged) {
      expect(stored.get(key), `${key} acknowledged ${count} times as new`).toBe(count);
    }
    for (const [key, count] of stored) {
      const [, commandId] = JSON.parse(key) as [string, string];
      if (tally.acknowledged.get(key) !== count) {
        expect(tally.uncertain.has(commandId), `${key} stored but never acknowledged`).toBe(true);
      }
    }
    console.info(
      `fuzz: stream read back: ${[...stored.values()].reduce((a, b) => a + b, 0)} commands (${stored.size} distinct ids) on ${versions.size} aggregates, ${[...versions.values()].reduce((a, b) => a + b, 0)} events, all valid`,
    );

    // Memory stays bounded: no more than a few tens of MiB above the baseline over the run.
    heap.push(await heapUsed(nc, prefix));
    expect(Math.max(...heap) - heap[0]!).toBeLessThan(96 * 2 ** 20);
  }, 180_000);
});

/** Key of a command on an aggregate. */
function commandKey(id: string, commandId: string): string {
  return JSON.stringify([id, commandId]);
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
