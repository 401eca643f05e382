import type { StoredEvent } from '../domain/events.js';
import type { LifecycleState } from '../aggregate/aggregate-lifecycle.js';

/** A command a node accepted (validated) and handed to its aggregate's actor. */
export interface InspectedCommand {
  /** What this is. */
  kind: 'command';
  /** When the node received it, by the node's clock (ms since the epoch). */
  at: number;
  /** Domain of the aggregate. */
  domain: string;
  /** Aggregate type. */
  aggregate: string;
  /** Aggregate id. */
  id: string;
  /** Command name. */
  command: string;
  /** Command id (the caller's, or the generated one). */
  commandId: string;
  /** The validated input. */
  input: unknown;
  /** Who sent it, when the command says. */
  actor?: string;
}

/** How a command ended: its reply, or the error it was rejected with. */
export interface InspectedReply {
  /** What this is. */
  kind: 'reply';
  /** When the reply was given (ms since the epoch). */
  at: number;
  /** Domain, when known (a command for an unknown domain has the one it named, or none). */
  domain?: string;
  /** Aggregate type as the request named it. */
  aggregate: string;
  /** Aggregate id as the request named it. */
  id: string;
  /** Command name as the request named it. */
  command: string;
  /** Command id; absent when the request was rejected before it got one. */
  commandId?: string;
  /** True when the command succeeded. */
  ok: boolean;
  /** On success: the aggregate's version after the command. */
  version?: number;
  /** On success: how many events the command stored. */
  events?: number;
  /** On success: true when it was a resent command answered with its first result. */
  duplicate?: boolean;
  /** On failure: the error's code and message. */
  error?: { code: string; message: string };
}

/** A commit an actor of the node stored: the events of one or more commands of one aggregate. */
export interface InspectedCommit {
  /** What this is. */
  kind: 'commit';
  /** When it was stored (ms since the epoch). */
  at: number;
  /** Domain of the aggregate. */
  domain: string;
  /** Aggregate type. */
  aggregate: string;
  /** Aggregate id. */
  id: string;
  /** Position of the commit in the domain's log. */
  position: number;
  /** Version of the aggregate after the commit. */
  version: number;
  /** The events stored. */
  events: readonly StoredEvent[];
  /** State value of the aggregate's machine after the commit. */
  value: unknown;
}

/** What an inspection listener receives. */
export type InspectionEvent = InspectedCommand | InspectedReply | InspectedCommit;

/** Receives what a node does while it is attached (`node.inspect(listener)`). Must not throw. */
export type InspectionListener = (event: InspectionEvent) => void;

/** One live actor of a node, as inspectors see it (`node.actors()`). */
export interface LiveActor {
  /** Domain of the aggregate. */
  domain: string;
  /** Aggregate type. */
  aggregate: string;
  /** Aggregate id. */
  id: string;
  /** Lifecycle state of the actor. */
  lifecycle: LifecycleState;
  /** State value of the aggregate's machine (confirmed: stored events only). */
  value: unknown;
  /** Version of the confirmed state. */
  version: number;
  /** Commands waiting in its mailbox. */
  mailboxDepth: number;
}

/**
 * The node's inspection point. The command path and the commit path call `emit?.(…)`: while no
 * listener is attached `emit` is `undefined`, so a detached node pays one property read per
 * command and per commit, and builds nothing. A listener that throws is detached.
 */
export class InspectionHook {
  readonly #listeners = new Set<InspectionListener>();
  /** Calls every attached listener; `undefined` while none is attached. */
  emit: InspectionListener | undefined;

  /** Attaches a listener; returns the function that detaches it (idempotent). */
  attach(listener: InspectionListener): () => void {
    this.#listeners.add(listener);
    this.#update();
    return () => {
      this.#listeners.delete(listener);
      this.#update();
    };
  }

  /** How many listeners are attached. */
  get attached(): number {
    return this.#listeners.size;
  }

  #update(): void {
    if (this.#listeners.size === 0) {
      this.emit = undefined;
      return;
    }
    const listeners = [...this.#listeners];
    this.emit = (event) => {
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          this.#listeners.delete(listener);
          this.#update();
        }
      }
    };
  }
}

/** The code and message of what a command was rejected or failed with. */
export function inspectedError(error: unknown): { code: string; message: string } {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return {
    code: typeof code === 'string' ? code : 'INTERNAL_ERROR',
    message: typeof message === 'string' ? message : String(error),
  };
}

/** The reply of a request rejected before it reached an actor (its fields as it gave them). */
export function rejectedRequest(request: unknown, error: unknown, at: number): InspectedReply {
  const field = (name: string): string => {
    const value = (request as Record<string, unknown> | null | undefined)?.[name];
    return typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);
  };
  const domain = field('domain');
  const commandId = field('commandId');
  return {
    kind: 'reply',
    at,
    ...(domain === '' ? {} : { domain }),
    aggregate: field('aggregate'),
    id: field('id'),
    command: field('command'),
    ...(commandId === '' ? {} : { commandId }),
    ok: false,
    error: inspectedError(error),
  };
}
