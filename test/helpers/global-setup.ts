import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { LocalNatsServer } from '../../runtime/nats/local-nats-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the nats-server shared by the whole test run; read it with `inject('natsUrl')`. */
    natsUrl: string;
  }
}

let server: LocalNatsServer | undefined;

/**
 * Starts the one nats-server the test run shares (own port, own temp store, from nats.conf) and
 * provides its URL as `natsUrl`. Fails the run with install instructions when nats-server is
 * missing.
 */
export async function setup(project: TestProject): Promise<void> {
  server = await LocalNatsServer.start({
    config: fileURLToPath(new URL('../../nats.conf', import.meta.url)),
    serverName: 'jetactor-test',
  });
  project.provide('natsUrl', server.url);
}

/** Kills the shared server and removes its store. */
export async function teardown(): Promise<void> {
  await server?.cleanup();
  server = undefined;
}
