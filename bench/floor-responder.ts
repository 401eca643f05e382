/**
 * Child process of the end-to-end floor contender ({@link RequestLimitContender.startFloor}): the
 * request limit's responder with the floor's work in it. It answers each request on
 * `rfloor.<account>` (a JSON body `{"amount":…}`, as the typed client sends a deposit) with the
 * floor's deposit ({@link FloorAccounts}: zod, the domain's decide, the account's XState transition,
 * jetactor's envelope, the limit's append) and replies with its result encoded as jetactor
 * replies to the typed client (msgpack, the compact form of the `CommandResult`).
 *
 *   node dist/bench/floor-responder.js <nats url>
 *
 * Requests on `rfloor-open.<account>` make the account's state in memory (nothing appended) and
 * are answered empty, so the timed deposits find it made, as jetactor's find their actors.
 *
 * Prints `ready` on stdout once it is subscribed.
 */
import { connect } from '@nats-io/transport-node';
import { MsgpackCodec } from '../runtime/index.js';
import { toCompactResult } from '../runtime/messaging/compact-result.js';
import { directPublish } from '../runtime/nats/direct-publish.js';
import { FloorAccounts } from './contenders/floor.js';
import { disablePretenuring } from '../runtime/pretenuring.js';

const utf8 = new TextDecoder();
const NO_BODY = new Uint8Array(0);

async function main(): Promise<void> {
  // As the node processes collect (`jetactor` turns it off for itself).
  disablePretenuring();
  const [url] = process.argv.slice(2);
  if (url === undefined) throw new Error('usage: floor-responder.js <nats url>');
  const nc = await connect({ servers: url, name: 'bench floor responder' });
  const accounts = new FloorAccounts(nc);
  const codec = new MsgpackCodec();
  // Replies published as jetactor's router publishes them.
  const publish = directPublish(nc);
  nc.subscribe('rfloor.>', {
    queue: 'rfloor',
    callback: (error, request) => {
      if (error !== null) return;
      const id = request.subject.slice('rfloor.'.length);
      let amount: unknown;
      try {
        amount = (JSON.parse(utf8.decode(request.data)) as { amount?: unknown }).amount;
      } catch {
        amount = undefined;
      }
      const reply = request.reply;
      if (reply === undefined) return;
      accounts.deposit(id, amount).then(
        (result) => publish(reply, codec.encode(toCompactResult(result)), undefined, undefined),
        (failure: unknown) =>
          publish(reply, codec.encode({ error: String(failure) }), undefined, undefined),
      );
    },
  });
  // Opens: the account's state made in memory (nothing appended), answered empty.
  nc.subscribe('rfloor-open.>', {
    queue: 'rfloor',
    callback: (error, request) => {
      if (error !== null || request.reply === undefined) return;
      accounts.open(request.subject.slice('rfloor-open.'.length));
      publish(request.reply, NO_BODY, undefined, undefined);
    },
  });
  await nc.flush();
  process.stdout.write('ready\n');
  const stop = (): void => {
    accounts.stop();
    void nc.drain().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((error: unknown) => {
  process.stderr.write(`floor-responder: ${String(error)}\n`);
  process.exit(1);
});
