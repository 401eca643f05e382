import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvPipeline, allowsDirect } from '../../runtime/nats/kv-pipeline.js';
import { connectShared, uniqueName } from '../helpers/nats.js';

describe('KV pipeline', () => {
  let nc: NatsConnection;
  let pipeline: KvPipeline;
  const text = new TextDecoder();

  beforeAll(async () => {
    nc = await connectShared();
    pipeline = new KvPipeline(nc);
  });

  afterAll(async () => {
    pipeline.close();
    await nc.close();
  });

  it('reads and writes keys as the KV client does', async () => {
    const bucket = uniqueName('kvp');
    const kv = await new Kvm(nc).create(bucket, { history: 1 });
    expect(await allowsDirect(kv)).toBe(true);
    expect(await pipeline.get(bucket, 'a.b')).toBeUndefined();
    const revision = await pipeline.putText(bucket, 'a.b', 'one');
    expect(text.decode((await kv.get('a.b'))!.value)).toBe('one');
    expect((await kv.get('a.b'))!.revision).toBe(revision);
    await kv.put('a.b', 'two');
    expect(text.decode((await pipeline.get(bucket, 'a.b')) as Uint8Array)).toBe('two');
    await kv.delete('a.b');
    expect(await pipeline.get(bucket, 'a.b')).toBeUndefined();
    await kv.destroy();
  });

  it('tells a bucket that does not answer direct gets, and fails a put no stream takes', async () => {
    const bucket = uniqueName('kvp');
    const kv = await new Kvm(nc).create(bucket, { history: 1, allow_direct: false });
    expect(await allowsDirect(kv)).toBe(false);
    await kv.destroy();
    await expect(pipeline.putText(uniqueName('missing'), 'k', 'v')).rejects.toThrow(
      /no stream answered/,
    );
  });
});
