import type { Clock, TimerHandle } from '../clock.js';
import type { DomainNode } from '../node/domain-node.js';
import type { InspectionEvent } from '../node/inspection-hook.js';
import type { ReactorStats } from '../reactors/reactor-dispatcher.js';
import type { WorkerState } from '../reactors/reactor-worker.js';
import type { SupervisorStats } from '../node/supervisor.js';
import { StateCounter } from './active-states.js';
import type { InspectorCatalogue } from './inspector-catalogue.js';

/** One line of the page's live feed: a command, its reply, or a stored commit. */
export type FeedItem = { seq: number } & (
  | {
      kind: 'command';
      at: number;
      domain: string;
      aggregate: string;
      id: string;
      command: string;
      commandId: string;
      input: unknown;
      actor?: string;
    }
  | {
      kind: 'reply';
      at: number;
      domain?: string;
      aggregate: string;
      id: string;
      command: string;
      commandId?: string;
      ok: boolean;
      version?: number;
      events?: number;
      duplicate?: boolean;
      error?: { code: string; message: string };
    }
  | {
      kind: 'commit';
      at: number;
      domain: string;
      aggregate: string;
      id: string;
      position: number;
      version: number;
      events: { type: string; version: number; data: unknown }[];
      value: unknown;
    }
);

/** What the page shows of the node, pushed every `statsMs` (`GET /api/stats` too). */
export interface InspectorStats {
  /** When it was taken (ms since the epoch). */
  at: number;
  /** Supervisor counters and dead letters since start. */
  node: SupervisorStats & { deadLetters: number };
  /** Reactor counters, keyed `<domain>.<reactor>`. */
  reactors: Record<string, ReactorStats>;
  /**
   * Actors per active state, keyed by diagram (`<domain>.<Aggregate>`, `runtime.<Name>`), then by
   * graph node id: the aggregates of ready actors by their machine's state, every actor by its
   * lifecycle state, every reactor worker by its state.
   */
  states: Record<string, Record<string, number>>;
  /** Pages connected now. */
  pages: number;
}

/** A connected page: where the feed's server-sent events go. */
export interface FeedClient {
  /** Sends one server-sent event; drops it while the page does not keep up with what it was sent. */
  send(event: string, data: string): void;
}

/** Options of {@link InspectorFeed}. */
export interface InspectorFeedOptions {
  /** The node inspected. */
  node: DomainNode;
  /** The diagrams, whose graphs the state counts refer to. */
  catalogue: InspectorCatalogue;
  /** Timers. */
  clock: Clock;
  /** How often feed items are pushed, at most, in milliseconds. Default 100. */
  flushMs?: number;
  /** How often stats are pushed, in milliseconds. Default 500. */
  statsMs?: number;
  /** Most feed items pushed per flush; what comes beyond is counted as dropped. Default 200. */
  maxItems?: number;
  /** Commands' inputs and events' data larger than this (JSON bytes) are replaced by their size. Default 4096. */
  maxValueBytes?: number;
}

/**
 * Attaches to the node while at least one page is connected, and only then: collects what the
 * node reports (`node.inspect`) into batches pushed every `flushMs`, and pushes stats every
 * `statsMs`. The last page leaving detaches it, stops its timers and drops what it held.
 */
export class InspectorFeed {
  readonly #node: DomainNode;
  readonly #clock: Clock;
  readonly #flushMs: number;
  readonly #statsMs: number;
  readonly #maxItems: number;
  readonly #maxValueBytes: number;
  readonly #counters = new Map<string, StateCounter>();
  readonly #clients = new Set<FeedClient>();
  #detach: (() => void) | undefined;
  #pending: FeedItem[] = [];
  #dropped = 0;
  #seq = 0;
  #flushTimer: TimerHandle | undefined;
  #statsTimer: TimerHandle | undefined;

  constructor(options: InspectorFeedOptions) {
    this.#node = options.node;
    this.#clock = options.clock;
    this.#flushMs = options.flushMs ?? 100;
    this.#statsMs = options.statsMs ?? 500;
    this.#maxItems = options.maxItems ?? 200;
    this.#maxValueBytes = options.maxValueBytes ?? 4096;
    const machines = [
      ...options.catalogue.domains.flatMap((domain) => domain.aggregates),
      ...options.catalogue.runtime,
    ];
    for (const machine of machines)
      this.#counters.set(machine.key, new StateCounter(machine.graph));
  }

  /** True while a page is connected (and so the node is inspected). */
  get attached(): boolean {
    return this.#detach !== undefined;
  }

  /** Pages connected now. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Connects a page: attaches to the node if it is the first. Returns the disconnect function. */
  connect(client: FeedClient): () => void {
    this.#clients.add(client);
    if (this.#detach === undefined) {
      this.#detach = this.#node.inspect((event) => this.#collect(event));
    }
    client.send('stats', JSON.stringify(this.stats()));
    this.#scheduleStats();
    return () => {
      if (!this.#clients.delete(client)) return;
      if (this.#clients.size === 0) this.#stop();
    };
  }

  /** Disconnects every page and detaches from the node. */
  close(): void {
    this.#clients.clear();
    this.#stop();
  }

  /** The node's counters and the actors per state, now. */
  stats(): InspectorStats {
    const { reactors, ...node } = this.#node.stats();
    const states: Record<string, Record<string, number>> = {};
    const countsOf = (key: string): Record<string, number> => (states[key] ??= {});
    const lifecycle = this.#counters.get('runtime.AggregateActor');
    for (const actor of this.#node.actors()) {
      if (lifecycle !== undefined)
        lifecycle.add(countsOf('runtime.AggregateActor'), actor.lifecycle);
      if (actor.lifecycle !== 'ready' && actor.lifecycle !== 'committing') continue;
      const key = `${actor.domain}.${actor.aggregate}`;
      this.#counters.get(key)?.add(countsOf(key), actor.value);
    }
    const workers = this.#counters.get('runtime.ReactorWorker');
    if (workers !== undefined) {
      const counts = countsOf('runtime.ReactorWorker');
      for (const reactor of Object.values(reactors)) {
        for (const [state, count] of Object.entries(reactor.workers) as [WorkerState, number][]) {
          if (count === 0) continue;
          for (const id of workers.ids(state)) counts[id] = (counts[id] ?? 0) + count;
        }
      }
    }
    return { at: this.#clock.now(), node, reactors, states, pages: this.#clients.size };
  }

  #collect(event: InspectionEvent): void {
    if (this.#pending.length >= this.#maxItems) {
      this.#dropped += 1;
      return;
    }
    this.#pending.push(this.#item(event));
    this.#flushTimer ??= this.#clock.setTimeout(() => this.#flush(), this.#flushMs);
  }

  #item(event: InspectionEvent): FeedItem {
    const seq = ++this.#seq;
    switch (event.kind) {
      case 'command':
        return { ...event, seq, input: this.#bounded(event.input) };
      case 'reply':
        return { ...event, seq };
      case 'commit':
        return {
          ...event,
          seq,
          events: event.events.map((e) => ({
            type: e.type,
            version: e.meta.version,
            data: this.#bounded(e.data),
          })),
        };
    }
  }

  /** The value, or `{ "…": <bytes> }` when its JSON is larger than `maxValueBytes`. */
  #bounded(value: unknown): unknown {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      return { '…': 'not JSON' };
    }
    if (text === undefined || text.length <= this.#maxValueBytes) return value;
    return { '…': `${text.length} bytes` };
  }

  #flush(): void {
    this.#flushTimer = undefined;
    if (this.#pending.length === 0 && this.#dropped === 0) return;
    const data = JSON.stringify({ items: this.#pending, dropped: this.#dropped });
    this.#pending = [];
    this.#dropped = 0;
    for (const client of this.#clients) client.send('feed', data);
  }

  #scheduleStats(): void {
    if (this.#statsTimer !== undefined) return;
    this.#statsTimer = this.#clock.setTimeout(() => {
      this.#statsTimer = undefined;
      if (this.#clients.size === 0) return;
      const data = JSON.stringify(this.stats());
      for (const client of this.#clients) client.send('stats', data);
      this.#scheduleStats();
    }, this.#statsMs);
  }

  #stop(): void {
    this.#detach?.();
    this.#detach = undefined;
    for (const timer of [this.#flushTimer, this.#statsTimer]) {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
    }
    this.#flushTimer = undefined;
    this.#statsTimer = undefined;
    this.#pending = [];
    this.#dropped = 0;
  }
}
