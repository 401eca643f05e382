import { hostname } from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../logger.js';
import type { DomainNode } from '../node/domain-node.js';
import type { CommandRouter } from './command-router.js';
import type { QueryServer } from './query-server.js';
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
  /** Its query server, whose endpoints (`qry-<domain>`) are reported too. */
  queries?: QueryServer;
}

/**
 * The NATS service-protocol face of a node: service name = the prefix; metadata lists the hosted
 * domains (and the node id when the router has partition affinity); one endpoint per router
 * subscription, whose `data` holds the command counts, where requests were served (here,
 * forwarded to their partition's owner, for other nodes), the requests in flight and the node's
 * counters (active actors, conflicts, and with affinity `routing`: partitions owned, live nodes)
 * and its process's memory (`memory`: `heapUsedBytes`, `heapTotalBytes`, `rssBytes`), so a
 * monitor can see a node's heap grow without attaching to it.
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
      ...(router.nodeId === undefined ? {} : { nodeId: router.nodeId }),
    },
    endpoints: () => {
      const actors = node.stats();
      const usage = process.memoryUsage();
      const memory = {
        heapUsedBytes: usage.heapUsed,
        heapTotalBytes: usage.heapTotal,
        rssBytes: usage.rss,
      };
      const queries = (options.queries?.endpoints() ?? []).map((e) => ({
        name: e.name,
        subject: e.subject,
        queueGroup: e.queueGroup,
        metadata: { domain: e.domain, kind: 'query' },
        requests: e.requests,
        errors: e.rejected + e.failed,
        lastError: e.lastError,
        processingTimeNs: e.processingTimeNs,
        data: {
          domain: e.domain,
          ok: e.ok,
          rejected: e.rejected,
          failed: e.failed,
          projections: actors.projections,
        },
      }));
      const commands = router.endpoints().map((e) => ({
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
          servedLocally: e.servedLocally,
          forwarded: e.forwarded,
          fallbacks: e.fallbacks,
          servedForOthers: e.servedForOthers,
          refusedForOthers: e.refusedForOthers,
          inFlight: router.inFlight,
          actors,
          memory,
        },
      }));
      return [...commands, ...queries];
    },
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
}
