export { defineAggregate, isZodSchema } from './domain/define-aggregate.js';
export { defineDomain } from './domain/define-domain.js';
export { defineReactor } from './domain/define-reactor.js';
export { defineProjection } from './domain/define-projection.js';
export { defineQuery } from './domain/define-query.js';
export { kvReadModel, postgresReadModel } from './projections/read-model.js';
export { KvReadModelStore } from './projections/kv-read-model-store.js';
export { InMemoryReadModelStore } from './projections/in-memory-read-model-store.js';
export {
  PostgresReadModelStore,
  DEFAULT_DATABASE_URL,
} from './projections/postgres-read-model-store.js';
export { InProcessProjections } from './projections/in-process-projections.js';
export { JetStreamProjections } from './projections/jetstream-projections.js';
export { QueryServer, queryHeaders } from './messaging/query-server.js';
export {
  domainQuerySubjects,
  projectionBucket,
  projectionConsumerName,
  projectionControlSubject,
  projectionLeaseBucket,
  projectionSchema,
  projectionStatusSubject,
  queryQueueGroup,
  querySubject,
} from './nats/subjects.js';
export { aggregateLifecycleMachine } from './aggregate/aggregate-lifecycle.js';
export { toMachineGraph, transitionLabel, stateDetails } from './visualiser/machine-graph.js';
export { toMermaid } from './visualiser/to-mermaid.js';
export { toDot } from './visualiser/to-dot.js';
export { toSvg } from './visualiser/to-svg.js';
export { runtimeMachines } from './visualiser/runtime-machines.js';
export { Inspector, startInspector, DEFAULT_INSPECTOR_PORT } from './inspector/inspector-server.js';
export { activeStateIds } from './inspector/active-states.js';
export { replayAggregate } from './inspector/replay-aggregate.js';
export { AggregateActor } from './aggregate/aggregate-actor.js';
export { Supervisor } from './node/supervisor.js';
export {
  PartitionLeases,
  partitionOf,
  DEFAULT_PARTITIONS,
  DEFAULT_LEASE_MS,
} from './node/partition-leases.js';
export { DomainNode, createNode } from './node/domain-node.js';
export { JetactorClient, createClient } from './messaging/client.js';
export {
  CommandRouter,
  DEFAULT_FORWARD_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT,
  DEFAULT_MAX_PAYLOAD_BYTES,
} from './messaging/command-router.js';
export { ServiceResponder } from './messaging/service-responder.js';
export { createNodeService } from './messaging/node-service.js';
export { commandHeaders } from './messaging/protocol.js';
export {
  commandQueueGroup,
  commandSubject,
  domainCommandSubjects,
  forwardSubject,
  viewSubject,
} from './nats/subjects.js';
export { InMemoryEventStore, streamKey } from './event-store/in-memory-event-store.js';
export {
  JetStreamEventStore,
  MIN_VERSION_FOR_REPLICAS,
} from './event-store/jetstream-event-store.js';
export { InMemorySnapshotStore } from './event-store/in-memory-snapshot-store.js';
export { KvSnapshotStore, snapshotKey } from './event-store/kv-snapshot-store.js';
export {
  DEFAULT_PREFIX,
  eventSubject,
  leaseBucket,
  snapshotBucket,
  streamName,
} from './nats/subjects.js';
export { MsgpackCodec } from './codec/msgpack-codec.js';
export { JsonCodec } from './codec/json-codec.js';
export { InProcessReactors } from './reactors/in-process-reactors.js';
export { JetStreamReactors } from './reactors/jetstream-reactors.js';
export { reactorWorkerMachine } from './reactors/reactor-worker.js';
export { InMemoryDeadLetterStore } from './reactors/in-memory-dead-letter-store.js';
export { JetStreamDeadLetterStore } from './reactors/jetstream-dead-letter-store.js';
export { deadLetterStream, deadLetterSubject, reactorConsumerName } from './nats/subjects.js';
export { systemClock } from './clock.js';
export { randomCommandId } from './command-id.js';
export {
  createLogger,
  loggerOptions,
  CREDENTIAL_LOG_PATHS,
  PAYLOAD_LOG_PATHS,
  REDACTED,
} from './logger.js';
export {
  clientPermissions,
  nodePermissions,
  natsAuthorization,
  roleUsers,
  userInboxPrefix,
} from './nats/nats-permissions.js';
export { isPermissionViolation, permissionViolationOf } from './nats/permission-denied.js';
export { isSubjectToken } from './names.js';
export {
  LocalNatsServer,
  startNatsServer,
  findNatsServer,
  bundledNatsConfig,
  NATS_SERVER_FALLBACK_DIRS,
} from './nats/local-nats-server.js';
export { LocalNatsCluster, startNatsCluster } from './nats/local-nats-cluster.js';
export { errorCodes } from './error-codes.js';
export { disablePretenuring } from './pretenuring.js';
export {
  JetactorError,
  RejectionError,
  DomainError,
  ConflictError,
  InfrastructureError,
  DefinitionError,
  ConfigError,
  isJetactorError,
  isRejectionError,
  isDomainError,
  isConflictError,
  isInfrastructureError,
  isDefinitionError,
  isConfigError,
  errorFromJSON,
} from './errors.js';
export { testAggregate } from './testing/given.js';
export { TestClock } from './testing/test-clock.js';

export type {
  AggregateDefinition,
  AggregateOptions,
  AnyAggregateDefinition,
  Upcaster,
  Upcasters,
  AnyCommandDefinition,
  CommandDefinition,
  CommandHelper,
  CommandInput,
  CommandMetadata,
  CommandResponse,
  DecideContext,
  DecideResult,
} from './domain/define-aggregate.js';
export type { DomainDefinition, DomainOptions } from './domain/define-domain.js';
export type {
  EventForKey,
  EventKey,
  ReactorContext,
  ReactorDefinition,
  ReactorHandler,
  ReactorHandlers,
  ReactorOptions,
  ReactorRetry,
  DeadLetterPolicy,
} from './domain/define-reactor.js';
export type { ReactorHost, ReactorHostOptions } from './reactors/reactor-host.js';
export type {
  AnyProjectionDefinition,
  ProjectionContext,
  ProjectionDefinition,
  ProjectionHandler,
  ProjectionHandlers,
  ProjectionOptions,
} from './domain/define-projection.js';
export type {
  AnyQueryDefinition,
  QueryContext,
  QueryDefinition,
  QueryInput,
  QueryOptions,
  QueryOutput,
} from './domain/define-query.js';
export type { QueriesByName } from './domain/define-domain.js';
export type {
  AnyReadModelSpec,
  DocumentReader,
  DocumentReadModel,
  DocumentWriter,
  KvReadModelOptions,
  PgClientLike,
  PgPoolLike,
  PostgresReadModel,
  PostgresReadModelOptions,
  ReadModelReader,
  ReadModelSpec,
  ReadModelWriter,
  SqlClient,
  SqlResult,
} from './projections/read-model.js';
export type {
  ApplyOptions,
  ProjectionUnit,
  ReadModelStore,
  RunHandler,
} from './projections/read-model-store.js';
export type { KvReadModelStoreOptions } from './projections/kv-read-model-store.js';
export type { PostgresReadModelStoreOptions } from './projections/postgres-read-model-store.js';
export type {
  ProjectionHost,
  ProjectionHostOptions,
  ProjectionStatus,
  RebuildStarted,
} from './projections/projection-host.js';
export type { ProjectionState, ProjectionStats } from './projections/projection-runner.js';
export type { InProcessProjectionsDeps } from './projections/in-process-projections.js';
export type {
  JetStreamProjectionsDeps,
  ProjectionControlReply,
  ProjectionStatusReply,
} from './projections/jetstream-projections.js';
export type { QueryCallOptions } from './projections/run-query.js';
export type {
  QueryEndpointStats,
  QueryReplyBody,
  QueryServerOptions,
} from './messaging/query-server.js';
export type { ReactorStats, ReactorWorkerView } from './reactors/reactor-dispatcher.js';
export type { WorkerEvent, WorkerState } from './reactors/reactor-worker.js';
export type {
  DeadLetter,
  DeadLetterFilter,
  DeadLetterStore,
} from './reactors/dead-letter-store.js';
export type { InProcessReactorsDeps } from './reactors/in-process-reactors.js';
export type { JetStreamReactorsDeps } from './reactors/jetstream-reactors.js';
export type { JetStreamDeadLetterStoreOptions } from './reactors/jetstream-dead-letter-store.js';
export type {
  DomainEvents,
  EventMetadata,
  EventSchemas,
  NewEvent,
  StoredEvent,
} from './domain/events.js';
export type {
  Command,
  CommandOptions,
  CommandRequest,
  CommandResult,
} from './aggregate/command.js';
export type { AggregateActorOptions, AggregateView } from './aggregate/aggregate-actor.js';
export type { LifecycleEvent, LifecycleState } from './aggregate/aggregate-lifecycle.js';
export type {
  EdgeKind,
  GraphEdge,
  GraphNode,
  LabelOptions,
  MachineGraph,
  MachineGraphOptions,
  NodeKind,
} from './visualiser/machine-graph.js';
export type { MermaidOptions } from './visualiser/to-mermaid.js';
export type { DotOptions } from './visualiser/to-dot.js';
export type { SvgOptions } from './visualiser/to-svg.js';
export type { RuntimeMachine } from './visualiser/runtime-machines.js';
export type { InspectorOptions } from './inspector/inspector-server.js';
export type { InspectorStats, FeedItem } from './inspector/inspector-feed.js';
export type {
  InspectorCatalogue,
  CatalogueAggregate,
  CatalogueCommand,
  CatalogueDomain,
  CatalogueMachine,
  CatalogueRuntimeMachine,
} from './inspector/inspector-catalogue.js';
export type { AggregateAtVersion, ReplayOptions } from './inspector/replay-aggregate.js';
export type {
  InspectedCommand,
  InspectedCommit,
  InspectedReply,
  InspectionEvent,
  InspectionListener,
  LiveActor,
} from './node/inspection-hook.js';
export type { SupervisorOptions, SupervisorStats } from './node/supervisor.js';
export type {
  PartitionAcquired,
  PartitionLeaseEvents,
  PartitionLeaseStats,
  PartitionLeasesOptions,
  PartitionLossReason,
  PartitionLost,
} from './node/partition-leases.js';
export type { AggregateRef, NodeOptions } from './node/domain-node.js';
export type { ClientOptions, ClientQueryOptions } from './messaging/client.js';
export type {
  AffinityOptions,
  CommandRouterOptions,
  RouterEndpointStats,
} from './messaging/command-router.js';
export type {
  ForwardFallbackReason,
  RoutingCounters,
  RoutingStats,
} from './messaging/partition-routing.js';
export type {
  ServiceEndpointInfo,
  ServiceEndpointStats,
  ServiceInfo,
  ServiceInfoEndpoint,
  ServicePing,
  ServiceResponderOptions,
  ServiceStats,
  ServiceStatsEndpoint,
} from './messaging/service-responder.js';
export type { NodeServiceOptions } from './messaging/node-service.js';
export type { ErrorReplyBody, ReplyStatus } from './messaging/protocol.js';
export type {
  AppendRequest,
  AppendResult,
  CommandRecord,
  Commit,
  EventStore,
  StoreSubscription,
  StreamRef,
  SubscribeOptions,
} from './event-store/event-store.js';
export type { InMemoryEventStoreOptions } from './event-store/in-memory-event-store.js';
export type { JetStreamEventStoreOptions } from './event-store/jetstream-event-store.js';
export type { KvSnapshotStoreOptions } from './event-store/kv-snapshot-store.js';
export type { Snapshot, SnapshotStore } from './event-store/snapshot-store.js';
export type { Codec } from './codec/codec.js';
export type { Clock, TimerHandle } from './clock.js';
export type { Logger, LogLevel, LoggerOptions } from './logger.js';
export type {
  ClientPermissionOptions,
  NatsPermissions,
  NatsUser,
  NodePermissionOptions,
  RoleUsersOptions,
} from './nats/nats-permissions.js';
export type { PermissionViolation } from './nats/permission-denied.js';
export type { LocalNatsServerCluster, LocalNatsServerOptions } from './nats/local-nats-server.js';
export type { LocalNatsClusterOptions } from './nats/local-nats-cluster.js';
export type { ErrorCode, ErrorKind } from './error-codes.js';
export type { ErrorJSON, JetactorErrorOptions } from './errors.js';
export type { Given, TestAggregateOptions, ThenResult, When } from './testing/given.js';
