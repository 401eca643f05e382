import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError, InfrastructureError, describeError } from '../errors.js';
import { isIdentifier } from '../names.js';
import { isPermissionViolation, permissionDenied } from '../nats/permission-denied.js';
import { DEFAULT_PREFIX, deadLetterStream, deadLetterSubject } from '../nats/subjects.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterStore } from './dead-letter-store.js';
import { describeUnknownOptions, unknownOptions } from '../unknown-options.js';

/** Options of {@link JetStreamDeadLetterStore}. */
export interface JetStreamDeadLetterStoreOptions {
  /** An open connection; the store never closes it. */
  connection: NatsConnection;
  /** Same prefix as the event store: the stream is `<prefix>_deadletters`. Default `jetactor`. */
  prefix?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Dead letters in one JetStream stream, `<prefix>_deadletters` (file storage, one replica, no
 * limits), one JSON message per dead letter on `<prefix>.dlq.<domain>.<reactor>`. A dead letter's
 * id is its stream sequence; replaying or discarding it deletes the message. The stream is the
 * only record of dead letters: a node rebuilds its blocked aggregates (`'wait'` policy) from it.
 */
export class JetStreamDeadLetterStore implements DeadLetterStore {
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #prefix: string;
  readonly #stream: string;
  #jsm: Promise<JetStreamManager> | undefined;
  #ready: Promise<void> | undefined;

  constructor(options: JetStreamDeadLetterStoreOptions) {
    const known = ['connection', 'prefix'];
    const unknown = unknownOptions(options, known);
    if (unknown.length > 0) {
      throw new ConfigError(`Dead-letter store: ${describeUnknownOptions(unknown, known)}.`, {
        details: { unknown },
      });
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX;
    if (!isIdentifier(prefix)) {
      throw new ConfigError(
        `Dead-letter store prefix ${JSON.stringify(prefix)} is not valid: use letters, digits, "_" or "-", starting with a letter.`,
      );
    }
    this.#nc = options.connection;
    this.#js = jetstream(this.#nc);
    this.#prefix = prefix;
    this.#stream = deadLetterStream(prefix);
  }

  /** The stream's name, `<prefix>_deadletters`. */
  get streamName(): string {
    return this.#stream;
  }

  /** Creates the stream, or checks the one that exists; done once, on first need. */
  ensure(): Promise<void> {
    this.#ready ??= this.#ensure().catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async add(record: Omit<DeadLetter, 'id'>, dedupId: string): Promise<DeadLetter> {
    await this.ensure();
    const subject = deadLetterSubject(this.#prefix, record.domain, record.reactor);
    try {
      const ack = await this.#js.publish(subject, encoder.encode(JSON.stringify(record)), {
        msgID: dedupId,
      });
      return { ...record, id: ack.seq };
    } catch (error) {
      throw unavailable(`storing a dead letter on ${subject}`, error);
    }
  }

  async list(filter: DeadLetterFilter = {}): Promise<DeadLetter[]> {
    const subject = deadLetterSubject(this.#prefix, filter.domain ?? '*', filter.reactor ?? '*');
    const jsm = await this.#manager();
    let info: StreamInfo;
    try {
      info = await jsm.streams.info(this.#stream, { subjects_filter: subject });
    } catch (error) {
      if (isNotFound(error)) return [];
      throw unavailable(`reading stream ${this.#stream}`, error);
    }
    const count = Object.values(info.state.subjects ?? {}).reduce((sum, n) => sum + n, 0);
    if (count === 0) return [];
    const records: DeadLetter[] = [];
    try {
      const consumer = await this.#js.consumers.get(this.#stream, { filter_subjects: subject });
      let remaining = count;
      for (;;) {
        const batch = await consumer.fetch({
          max_messages: Math.max(1, Math.min(remaining, 256)),
          expires: 1_000,
        });
        let got = 0;
        let done = false;
        for await (const msg of batch) {
          got += 1;
          remaining -= 1;
          const record = parse(msg.data, msg.seq);
          if (record !== undefined) records.push(record);
          if (msg.info.pending === 0) {
            done = true;
            break;
          }
        }
        if (done || got === 0) break;
      }
      await consumer.delete().catch(() => undefined);
    } catch (error) {
      throw unavailable(`reading dead letters on ${subject}`, error);
    }
    return records;
  }

  async get(id: number): Promise<DeadLetter | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined;
    const jsm = await this.#manager();
    try {
      const stored = await jsm.streams.getMessage(this.#stream, { seq: id });
      return stored === null ? undefined : parse(stored.data, stored.seq);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw unavailable(`reading dead letter ${id}`, error);
    }
  }

  async remove(id: number): Promise<boolean> {
    if (!Number.isSafeInteger(id) || id <= 0) return false;
    const jsm = await this.#manager();
    try {
      return await jsm.streams.deleteMessage(this.#stream, id, false);
    } catch (error) {
      if (isNotFound(error)) return false;
      throw unavailable(`removing dead letter ${id}`, error);
    }
  }

  #manager(): Promise<JetStreamManager> {
    this.#jsm ??= jetstreamManager(this.#nc).catch((error: unknown) => {
      this.#jsm = undefined;
      throw unavailable('opening JetStream', error);
    });
    return this.#jsm;
  }

  async #ensure(): Promise<void> {
    const jsm = await this.#manager();
    const subjects = [deadLetterSubject(this.#prefix, '*', '*')];
    let info: StreamInfo | undefined;
    try {
      info = await jsm.streams.info(this.#stream);
    } catch (error) {
      if (!isNotFound(error)) throw unavailable(`reading stream ${this.#stream}`, error);
    }
    if (info === undefined) {
      try {
        info = await jsm.streams.add({
          name: this.#stream,
          subjects,
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          discard: DiscardPolicy.New,
          num_replicas: 1,
        });
      } catch (error) {
        try {
          info = await jsm.streams.info(this.#stream);
        } catch {
          throw unavailable(`creating stream ${this.#stream}`, error);
        }
      }
    }
    const actual = info.config.subjects ?? [];
    if (actual.length !== 1 || actual[0] !== subjects[0] || info.config.deny_delete === true) {
      throw new ConfigError(
        `Stream ${this.#stream} exists with subjects ${JSON.stringify(actual)}${info.config.deny_delete === true ? ' and deny_delete' : ''}; dead letters need subjects ${JSON.stringify(subjects)} and deletes allowed. Fix it with \`nats stream edit ${this.#stream}\`, or choose another prefix.`,
        {
          code: 'STREAM_CONFIG_CONFLICT',
          details: { stream: this.#stream, subjects: actual, expected: subjects },
        },
      );
    }
  }
}

function parse(data: Uint8Array, id: number): DeadLetter | undefined {
  try {
    const value = JSON.parse(decoder.decode(data)) as Omit<DeadLetter, 'id'>;
    if (typeof value !== 'object' || value === null || typeof value.reactor !== 'string') {
      return undefined;
    }
    return { id, ...value };
  } catch {
    return undefined;
  }
}

function isNotFound(error: unknown): boolean {
  const code = (error as { api_error?: { err_code?: number }; code?: number } | undefined)
    ?.api_error?.err_code;
  return (
    code === 10059 || code === 10037 || /not found|no message found/i.test(describeError(error))
  );
}

function unavailable(what: string, error: unknown): InfrastructureError | ConfigError {
  if (error instanceof InfrastructureError) return error;
  if (isPermissionViolation(error)) return permissionDenied(error, what);
  return new InfrastructureError(
    'STORE_UNAVAILABLE',
    `JetStream did not answer while ${what}: ${describeError(error)}. Check that nats-server is up with JetStream, then try again.`,
    { cause: error },
  );
}
