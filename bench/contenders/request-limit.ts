import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInbox, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { MsgpackCodec } from '../../runtime/index.js';
import { fromCompactResult } from '../../runtime/messaging/compact-result.js';
import { poolProtocolLines } from '../../runtime/nats/pooled-protocol-lines.js';
import { leanMessageArgs } from '../../runtime/nats/lean-message-args.js';
import { directPublish, type DirectPublish } from '../../runtime/nats/direct-publish.js';
import { requestIdOf } from '../../runtime/nats/reply-pipeline.js';
import { SequenceSlots } from '../../runtime/nats/sequence-slots.js';
import {
  benchProcesses,
  createRawStream,
  startBenchServer,
  type BenchServer,
} from '../bench-server.js';
import type { BankContender } from '../contender.js';
import type { WatchedProcess } from '../process-cpu.js';
import { forEachLimited } from '../load.js';
import { forget } from './limit.js';

const responderScript = fileURLToPath(new URL('../request-limit-responder.js', import.meta.url));
const floorResponderScript = fileURLToPath(new URL('../floor-responder.js', import.meta.url));

/** A deposit's input as the typed client sends it, in JSON: the request body of every command. */
const requestBody = new TextEncoder().encode(JSON.stringify({ amount: 100 }));
const NO_BODY = new Uint8Array(0);

interface Waiting {
  resolve: (reply: unknown) => void;
  reject: (error: Error) => void;
  /** The account the request is for. */
  account: string;
  /** An open (answered with an empty reply), not a deposit. */
  open?: true;
}

/** Who answers the requests, and how this process reads the replies. */
interface Responder {
  child: ChildProcess;
  /** Subject prefix of the requests, `<prefix><account>`. */
  prefix: string;
  /** What the reply to a request for `account` becomes here. */
  read: (msg: Msg, account: string) => unknown;
  /**
   * Subject prefix of the opens, `<openPrefix><account>`, when the responder keeps accounts and
   * should make them before the timed runs (as the other contenders open theirs).
   */
  openPrefix?: string;
}

/**
 * The request limit: what end-to-end costs without jetactor on either side. This process sends
 * each command as a NATS request (plain `publish()` with a reply subject under one wildcard
 * subscription, as the limit R appends) to a responder process
 * (bench/request-limit-responder.ts) that makes the limit's acknowledged append and replies with
 * its sequence: the same four messages per command as jetactor end-to-end (request, append,
 * acknowledgement, reply) and the same three processes, with no work of their own.
 */
export class RequestLimitContender implements BankContender {
  readonly name: string;
  readonly #bench: BenchServer;
  readonly #nc: NatsConnection;
  readonly #publish: DirectPublish;
  readonly #responder: ChildProcess;
  readonly #prefix: string;
  readonly #read: (msg: Msg, account: string) => unknown;
  readonly #openPrefix: string | undefined;
  readonly #inbox = createInbox();
  readonly #waiting = new SequenceSlots<Waiting>();

  private constructor(name: string, bench: BenchServer, responder: Responder) {
    this.name = name;
    this.#bench = bench;
    this.#nc = bench.nc;
    this.#responder = responder.child;
    this.#prefix = responder.prefix;
    this.#read = responder.read;
    this.#openPrefix = responder.openPrefix;
    poolProtocolLines(this.#nc);
    leanMessageArgs(this.#nc);
    this.#publish = directPublish(this.#nc);
    this.#nc.subscribe(`${this.#inbox}.*`, {
      callback: (error, msg) => {
        if (error !== null) return;
        const id = requestIdOf(msg, this.#inbox.length);
        const waiting = this.#waiting.take(id);
        if (waiting === undefined) return;
        const { resolve, reject } = waiting;
        forget(waiting);
        if (msg.headers?.hasError) {
          reject(new Error(`no reply: ${msg.headers.code} ${msg.headers.description}`));
        } else if (waiting.open === true) {
          resolve(undefined);
        } else {
          let reply: unknown;
          try {
            reply = this.#read(msg, waiting.account);
          } catch (failure) {
            reject(failure instanceof Error ? failure : new Error(String(failure)));
            return;
          }
          resolve(reply);
        }
      },
    });
  }

  /** Starts a fresh server with the limit's stream, and the responder process on it. */
  static start(name: string, payloadSize: number): Promise<RequestLimitContender> {
    return RequestLimitContender.#launch(name, 'limit', responderScript, [String(payloadSize)], {
      prefix: 'rlimit.',
      read: (msg) => msg,
    });
  }

  /**
   * The end-to-end floor: the same path with the floor's work in the responder
   * (bench/floor-responder.ts) and its msgpack reply, as jetactor replies to the typed client,
   * decoded and read here as the client reads it. What it
   * reaches bounds what jetactor end-to-end can reach on this machine.
   */
  static startFloor(name: string): Promise<RequestLimitContender> {
    const codec = new MsgpackCodec();
    return RequestLimitContender.#launch(name, 'floor', floorResponderScript, [], {
      prefix: 'rfloor.',
      openPrefix: 'rfloor-open.',
      read: (msg, account) => {
        const reply = codec.decode(msg.data) as { error?: string };
        if (reply.error !== undefined) throw new Error(reply.error);
        return fromCompactResult(reply, { domain: 'bank', aggregate: 'Account', id: account });
      },
    });
  }

  /**
   * A fresh server with a raw stream `<stream>` on `<stream>.>`, and `script` started on it
   * (`<script> <server url> ...args`).
   */
  static async #launch(
    name: string,
    stream: string,
    script: string,
    args: string[],
    replies: Omit<Responder, 'child'>,
  ): Promise<RequestLimitContender> {
    const bench = await startBenchServer(name);
    try {
      await createRawStream(bench.nc, stream, `${stream}.>`);
      const child = await startResponder(script, [bench.server.url, ...args]);
      return new RequestLimitContender(name, bench, { child, ...replies });
    } catch (error) {
      await bench.close();
      throw error;
    }
  }

  /**
   * The limit has nothing to open (no domain). The floor's responder makes each account's state
   * in memory, nothing appended, so its first timed deposits do not pay for that.
   */
  async open(ids: readonly string[], concurrency: number): Promise<void> {
    const prefix = this.#openPrefix;
    if (prefix === undefined) return;
    await forEachLimited(
      ids,
      concurrency,
      (id) =>
        new Promise<unknown>((resolve, reject) => {
          const requestId = this.#waiting.add({ resolve, reject, account: id, open: true });
          this.#publish(`${prefix}${id}`, NO_BODY, `${this.#inbox}.${requestId}`, undefined);
        }),
    );
  }

  deposit(id: string): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const requestId = this.#waiting.add({ resolve, reject, account: id });
      this.#publish(`${this.#prefix}${id}`, requestBody, `${this.#inbox}.${requestId}`, undefined);
    });
  }

  processes(): WatchedProcess[] {
    const pid = this.#responder.exitCode === null ? this.#responder.pid : undefined;
    return [...benchProcesses(this.#bench), ...(pid === undefined ? [] : [{ role: 'node', pid }])];
  }

  async close(): Promise<void> {
    if (this.#responder.exitCode === null && this.#responder.signalCode === null) {
      const exited = new Promise((resolve) => this.#responder.once('close', resolve));
      this.#responder.kill('SIGTERM');
      const timer = setTimeout(() => this.#responder.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await this.#bench.close();
  }
}

/** Spawns a responder and resolves once it says it is subscribed. */
function startResponder(script: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the responder ${script} did not start within 30 s: ${output}`));
    }, 30_000);
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        output = (output + chunk).slice(-2_000);
        if (output.includes('ready\n')) {
          clearTimeout(timer);
          resolve(child);
        }
      });
    }
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`the responder ${script} exited (${String(code)}): ${output}`));
    });
  });
}
