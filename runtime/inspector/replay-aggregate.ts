import type { AnyMachineSnapshot } from 'xstate';
import { MachineSteps } from '../aggregate/machine-steps.js';
import type { AnyAggregateDefinition } from '../domain/define-aggregate.js';
import type { StoredEvent } from '../domain/events.js';
import { readEvent } from '../domain/read-event.js';
import { InfrastructureError, RejectionError, describeError } from '../errors.js';
import type { EventStore } from '../event-store/event-store.js';

/** Options of {@link replayAggregate}. */
export interface ReplayOptions {
  /** Where the events are read from. */
  store: EventStore;
  /** Domain of the aggregate. */
  domain: string;
  /** The aggregate's definition: its machine folds the events, its schemas read them. */
  definition: AnyAggregateDefinition;
  /** Aggregate id. */
  id: string;
  /** Fold the events up to this version (0: the initial state); default the latest. */
  version?: number | undefined;
  /** Most events returned in `history` (the latest ones). Default 1000. */
  maxHistory?: number;
}

/** An aggregate as it was at one version, replayed from its stored events. */
export interface AggregateAtVersion {
  /** Domain of the aggregate. */
  domain: string;
  /** Aggregate type. */
  aggregate: string;
  /** Aggregate id. */
  id: string;
  /** The version shown: how many events were folded. */
  version: number;
  /** The latest stored version. */
  latestVersion: number;
  /** Position of the commit holding the last event folded (0 at version 0). */
  position: number;
  /** State value of the machine at `version`. */
  value: unknown;
  /** Context of the machine at `version`. */
  context: unknown;
  /** `done` once the machine reached a final state. */
  status: 'active' | 'done';
  /** The event that led to `version` (absent at version 0). */
  event?: StoredEvent;
  /** The stored events (upcast, validated), oldest first: the latest `maxHistory` of them. */
  history: StoredEvent[];
}

/**
 * Replays an aggregate from its stream, not from any actor's memory: reads every commit, makes
 * each event current (upcast, validated) and folds those up to `version` through the machine's
 * steps ({@link MachineSteps}), as an actor's replay does. A stored event the machine does not
 * accept, or that cannot be read, fails with `REPLAY_FAILED`; a version beyond the latest with
 * `INVALID_REQUEST`.
 */
export async function replayAggregate(options: ReplayOptions): Promise<AggregateAtVersion> {
  const { store, domain, definition, id, version: target } = options;
  const maxHistory = options.maxHistory ?? 1000;
  const stream = { domain, aggregate: definition.name, id };
  const where = `${definition.name} "${id}"`;
  const steps = MachineSteps.of(definition.machine);
  let snapshot: AnyMachineSnapshot = steps.initial();
  let latest = 0;
  let version = 0;
  let position = 0;
  let last: StoredEvent | undefined;
  const history: StoredEvent[] = [];
  for await (const commit of store.read(stream, 0)) {
    for (const raw of commit.events) {
      const failed = (why: string, cause?: unknown) =>
        new InfrastructureError(
          'REPLAY_FAILED',
          `${where}: the event at version ${latest + 1} (commit ${commit.position}) cannot be replayed: ${why}.`,
          { cause, details: { position: commit.position, version: latest + 1 } },
        );
      if (raw?.meta?.version !== latest + 1) {
        throw failed(`its version is ${JSON.stringify(raw?.meta?.version)}`);
      }
      const read = readEvent(definition, raw);
      if (!read.ok) throw failed(read.why);
      latest += 1;
      history.push(read.event);
      if (history.length > maxHistory) history.shift();
      if (target !== undefined && latest > target) continue;
      if (!steps.accepts(snapshot, read.event)) {
        throw failed(`the machine in state ${JSON.stringify(snapshot.value)} does not accept it`);
      }
      try {
        snapshot = steps.transition(snapshot, read.event);
      } catch (error) {
        throw failed(describeError(error), error);
      }
      if (snapshot.status === 'error') throw failed(describeError(snapshot.error), snapshot.error);
      version = latest;
      position = commit.position;
      last = read.event;
    }
  }
  if (target !== undefined && target > latest) {
    throw new RejectionError(
      'INVALID_REQUEST',
      `${where} has ${latest} events, so there is no version ${target}; ask for a version from 0 to ${latest}.`,
      { details: { version: target, latestVersion: latest } },
    );
  }
  return {
    domain,
    aggregate: definition.name,
    id,
    version,
    latestVersion: latest,
    position,
    value: snapshot.value,
    context: snapshot.context,
    status: snapshot.status === 'done' ? 'done' : 'active',
    ...(last === undefined ? {} : { event: last }),
    history,
  };
}
