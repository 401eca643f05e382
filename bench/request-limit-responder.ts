/**
 * Child process of the request limit contender ({@link RequestLimitContender}): the leanest
 * service a command could reach over NATS. It answers each request on `rlimit.<account>` with an
 * acknowledged append to `limit.<account>` (the two headers and payload size of the limit R, the
 * last sequence it saw on the subject as the expected one), then replies with the sequence. No
 * domain, no state, no decoding beyond the acknowledgement.
 *
 *   node dist/bench/request-limit-responder.js <nats url> <payload bytes>
 *
 * Prints `ready` on stdout once it is subscribed.
 */
import { randomBytes } from 'node:crypto';
import { connect, createInbox, type Msg } from '@nats-io/transport-node';
import { randomCommandId } from '../runtime/command-id.js';
import { EncodedHeaders } from '../runtime/nats/encoded-headers.js';
import { poolProtocolLines } from '../runtime/nats/pooled-protocol-lines.js';
import { leanMessageArgs } from '../runtime/nats/lean-message-args.js';
import { directPublish } from '../runtime/nats/direct-publish.js';
import { pubAckOf } from '../runtime/nats/pub-ack.js';
import { requestIdOf } from '../runtime/nats/reply-pipeline.js';
import { SequenceSlots } from '../runtime/nats/sequence-slots.js';
import { disablePretenuring } from '../runtime/pretenuring.js';

async function main(): Promise<void> {
  // As the node processes collect (`jetactor` turns it off for itself).
  disablePretenuring();
  const [url, size] = process.argv.slice(2);
  const payloadSize = Number(size);
  if (url === undefined || !Number.isInteger(payloadSize) || payloadSize <= 0) {
    throw new Error('usage: request-limit-responder.js <nats url> <payload bytes>');
  }
  const nc = await connect({ servers: url, name: 'bench request limit responder' });
  poolProtocolLines(nc);
  leanMessageArgs(nc);
  const publish = directPublish(nc);
  const payload = randomBytes(payloadSize);
  const inbox = createInbox();
  const waiting = new SequenceSlots<{ subject: string; request: Msg | undefined }>();
  const lastSequence = new Map<string, number>();
  nc.subscribe(`${inbox}.*`, {
    callback: (error, ack) => {
      if (error !== null) return;
      const ackId = requestIdOf(ack, inbox.length);
      const pending = waiting.take(ackId);
      if (pending === undefined) return;
      const reply = pending.request?.reply;
      // Emptied, as the limit's entries are (see forget in contenders/limit.ts).
      pending.request = undefined;
      const body = pubAckOf(ack.data);
      if (typeof body.seq === 'number') lastSequence.set(pending.subject, body.seq);
      if (reply !== undefined)
        publish(reply, Buffer.from(String(body.seq ?? 0)), undefined, undefined);
    },
  });
  nc.subscribe('rlimit.>', {
    queue: 'rlimit',
    callback: (error, request) => {
      if (error !== null) return;
      const subject = `limit.${request.subject.slice('rlimit.'.length)}`;
      const headers = new EncodedHeaders([
        ['Nats-Msg-Id', randomCommandId()],
        ['Nats-Expected-Last-Subject-Sequence', String(lastSequence.get(subject) ?? 0)],
      ]);
      const ackId = waiting.add({ subject, request });
      publish(subject, payload, `${inbox}.${ackId}`, headers);
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');
  const stop = (): void => {
    void nc.drain().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`request-limit-responder: ${String(error)}\n`);
  process.exit(1);
});
