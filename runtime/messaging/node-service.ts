import { hostname } from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../logger.js';
import type { DomainNode } from '../node/domain-node.js';
import type { CommandRouter } from './command-router.js';
import { ServiceResponder } from './service-responder.js';

/** Options of {@link createNodeService}. */
export interface NodeServiceOptions {
  /** The connection the router uses. */
  connection: NatsConnection;
  /** The node. */
  node: DomainNode;
  /** Its command router, whose endpoints and counters are reported. */
  router: CommandRouter;
  /** The subject prefix; it is also the service name, so `$SRV.INFO.<prefix>` lists the nodes. */
  prefix: string;
  /** The jetactor version (semver). */
  version: string;
  /** Where failures to answer are logged. */
  logger?: Logger;
}

/**
 * The NATS service-protocol face of a node: service name = the prefix; metadata lists the hosted
 * domains; one endpoint per router subscription, whose `data` holds the command counts, the
 * requests in flight and the supervisor's counters (active actors, …).
 */
export function createNodeService(options: NodeServiceOptions): ServiceResponder {
  const { node, router, prefix } = options;
  return new ServiceResponder({
    connection: options.connection,
    name: prefix,
    version: options.version,
    description: `jetactor node hosting ${node.domains.map((d) => d.name).join(', ')}`,
    metadata: {
      runtime: 'jetactor',
      prefix,
      domains: node.domains.map((d) => d.name).join(','),
      hostname: hostname(),
      pid: String(process.pid),
    },
    endpoints: () => {
      const actors = node.stats();
      return router.endpoints().map((e) => ({
        name: e.name,
        subject: e.subject,
        queueGroup: e.queueGroup,
        metadata: { domain: e.domain, kind: e.kind },
        requests: e.requests,
        errors: e.rejected + e.failed,
        lastError: e.lastError,
        processingTimeNs: e.processingTimeNs,
        data: {
          domain: e.domain,
          ok: e.ok,
          rejected: e.rejected,
          failed: e.failed,
          overloaded: e.overloaded,
          inFlight: router.inFlight,
          actors,
        },
      }));
    },
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
}
