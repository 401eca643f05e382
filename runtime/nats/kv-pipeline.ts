import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { systemClock } from '../clock.js';
import { ReplyPipeline } from './reply-pipeline.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Gets and puts of NATS KV keys through one {@link ReplyPipeline}: the same messages as the KV
 * client's `get` (a direct get of the key's last message) and `put` (a JetStream publish on the
 * key's subject), without the timer and the two error objects (kept for their stack) that
 * nats.js makes for every request. For buckets made by this runtime (no JetStream domain, no
 * mirror); keys as the KV client takes them.
 */
export class KvPipeline {
  readonly #nc: NatsConnection;
  readonly #timeoutMs: number;
  #pipeline: ReplyPipeline | undefined;

  /** `timeoutMs`: how long a get or put waits for its answer (default 5000, as nats.js). */
  constructor(nc: NatsConnection, timeoutMs = 5_000) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * The value of `key` in `bucket`, undefined when there is none or it was deleted. Only for a
   * bucket that answers direct gets ({@link allowsDirect}); read others with the KV client.
   */
  async get(bucket: string, key: string): Promise<Uint8Array | undefined> {
    const msg = await this.#requests().request(
      `$JS.API.DIRECT.GET.KV_${bucket}.$KV.${bucket}.${key}`,
      undefined,
    );
    const headers = msg.headers;
    if (headers?.hasError) {
      if (headers.code === 404) return undefined;
      throw new Error(
        `direct get of ${key} in bucket ${bucket}: ${headers.code} ${headers.description}`,
      );
    }
    const operation = headers?.get('KV-Operation');
    if (operation === 'DEL' || operation === 'PURGE') return undefined;
    return msg.data;
  }

  /** Puts `value` under `key` in `bucket`; resolves with its revision once stored. */
  async put(bucket: string, key: string, value: Uint8Array): Promise<number> {
    const subject = `$KV.${bucket}.${key}`;
    const msg = await this.#requests().request(subject, value);
    if (msg.headers?.hasError) {
      throw new Error(
        `no stream answered on ${subject} (${msg.headers.code} ${msg.headers.description})`,
      );
    }
    const ack = JSON.parse(decoder.decode(msg.data)) as {
      seq?: number;
      error?: { code?: number; err_code?: number; description?: string };
    };
    if (ack.error !== undefined) {
      throw new Error(
        `JetStream refused the put on ${subject}: ${ack.error.description ?? 'unknown error'} (code ${ack.error.err_code ?? ack.error.code})`,
      );
    }
    if (typeof ack.seq !== 'number') {
      throw new Error(
        `unexpected acknowledgement of the put on ${subject}: ${JSON.stringify(ack)}`,
      );
    }
    return ack.seq;
  }

  /** Puts a text value (UTF-8). */
  putText(bucket: string, key: string, text: string): Promise<number> {
    return this.put(bucket, key, encoder.encode(text));
  }

  /** Stops its reply subscription; later calls open a new one. */
  close(why = 'the KV pipeline was closed'): void {
    this.#pipeline?.close(why);
    this.#pipeline = undefined;
  }

  #requests(): ReplyPipeline {
    this.#pipeline ??= new ReplyPipeline(this.#nc, systemClock, this.#timeoutMs);
    return this.#pipeline;
  }
}

/** Whether a bucket answers direct gets (its stream allows them), from its status. */
export async function allowsDirect(kv: KV): Promise<boolean> {
  return (await kv.status()).streamInfo.config.allow_direct === true;
}
