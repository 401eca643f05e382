import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../runtime/clock.js';
import {
  ReplyLostError,
  ReplyPipeline,
  ReplyTimeoutError,
} from '../../runtime/nats/reply-pipeline.js';
import { startNatsServer } from '../helpers/nats.js';

describe('reply pipeline', () => {
  it('fails the requests still waiting once the connection is back after a disconnect, and serves new ones', async () => {
    const server = await startNatsServer();
    const nc = await connect({
      servers: server.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 50,
    });
    try {
      // Takes requests and never answers: without the reconnect they would wait 30 s.
      nc.subscribe('silent', { callback: () => undefined });
      nc.subscribe('echo', {
        callback: (_, msg) => {
          msg.respond(msg.data);
        },
      });
      await nc.flush();
      const pipeline = new ReplyPipeline(nc, systemClock, 30_000);
      const waiting = [pipeline.request('silent', 'a'), pipeline.request('silent', 'b')];
      await nc.flush();
      expect(pipeline.size).toBe(2);

      await server.kill();
      // Sent while disconnected: nats.js drops it before it reconnects.
      waiting.push(pipeline.request('echo', 'lost'));
      const settled = Promise.allSettled(waiting);
      await server.restart();
      const restartedAt = Date.now();
      const outcomes = await settled;
      expect(Date.now() - restartedAt).toBeLessThan(5_000);
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        const reason = (outcome as PromiseRejectedResult).reason as Error;
        expect(reason).toBeInstanceOf(ReplyLostError);
        // Callers that send again after a timeout (the event store, the client) do so at once.
        expect(reason).toBeInstanceOf(ReplyTimeoutError);
        expect(reason.message).toMatch(/connection to the server dropped before the reply/);
      }
      expect(pipeline.size).toBe(0);

      const reply = await pipeline.request('echo', 'again');
      expect(reply.string()).toBe('again');
      pipeline.close();
    } finally {
      await nc.close();
      await server.cleanup();
    }
  });
});
