import type { AnyStateMachine } from 'xstate';
import { DefinitionError } from '../errors.js';

/** What a state node is, as XState v5 calls it. */
export type NodeKind = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

/**
 * Where a transition comes from: an event (`on`), an eventless `always`, a delay (`after`), a
 * finished state or invoked actor (`onDone`), a failed invoked actor (`onError`), an invoked
 * actor's snapshot (`onSnapshot`), or the default target of a history state.
 */
export type EdgeKind = 'event' | 'always' | 'after' | 'done' | 'error' | 'snapshot' | 'history';

/** One state node of a machine. */
export interface GraphNode {
  /** The XState id (`Account.open`, or a custom `id`); unique within the machine. */
  id: string;
  /** The key under its parent (`open`); the machine's id for the root. */
  key: string;
  /** Keys from the root down to this node; empty for the root. */
  path: string[];
  /** Id of the parent node; absent on the root. */
  parent?: string;
  /** Atomic, compound, parallel, final or history. */
  kind: NodeKind;
  /** On history nodes only: whether the whole nested state is remembered (`deep`) or one level. */
  history?: 'shallow' | 'deep';
  /** On compound nodes only: id of the child entered first. */
  initial?: string;
  /** Ids of the child nodes, in document order. */
  children: string[];
  /** Names of the entry actions. */
  entry: string[];
  /** Names of the exit actions. */
  exit: string[];
  /** Names of the actors invoked while in this state (`src`, or the invoke `id` for inline logic). */
  invoke: string[];
  /** The node's tags. */
  tags: string[];
  /** The node's `description`, when it has one. */
  description?: string;
}

/** One transition. A transition with several targets is one edge; one without target has none. */
export interface GraphEdge {
  /** `<source id>:<n>`, n counting the source's transitions from 0 in document order. */
  id: string;
  /** Id of the node the transition is defined on. */
  source: string;
  /** Ids of the target nodes: empty for a targetless transition (the state handles the event and stays). */
  targets: string[];
  /** What triggers it. */
  kind: EdgeKind;
  /** The XState event descriptor (`Deposited`, `*`, `xstate.after.500.m.a`); empty for `always` and history defaults. */
  event: string;
  /** The trigger as drawn: the event name, `always`, `after 500ms`, `onDone`, `onError fetchUser`; empty for history defaults. */
  label: string;
  /** The guard as drawn: a name, `!a`, `a && b`, `in(#m.b)`, or `guard` for an anonymous inline function. */
  guard?: string;
  /** Names of the transition's actions. */
  actions: string[];
  /** True for `reenter: true`: the source is exited and entered again even when the target is inside it. */
  reenter: boolean;
  /**
   * True when the source state is not exited: a targetless transition, or one without `reenter`
   * whose targets are the source itself or its descendants.
   */
  internal: boolean;
}

/**
 * A state machine as plain, JSON-serialisable data: what `jetactor viz --format json` prints, what
 * {@link toMermaid} and {@link toDot} draw, and what a browser can draw on its own.
 */
export interface MachineGraph {
  /** Version of this format; changes only when a field changes meaning or goes away. */
  format: 1;
  /** Title of the diagram: the `name` option, else the machine's id. */
  name: string;
  /** Id of the root node (the machine itself). */
  root: string;
  /** Every state node, parents before children, in document order. */
  nodes: GraphNode[];
  /** Every transition, grouped by source in node order, in document order within a source. */
  edges: GraphEdge[];
}

/** Options of {@link toMachineGraph}. */
export interface MachineGraphOptions {
  /** Title of the diagram (e.g. the aggregate name); defaults to the machine's id. */
  name?: string;
}

/** Options shared by the renderers for what transition and state labels show. */
export interface LabelOptions {
  /** Show action names: `Event [guard] / action` on transitions, `entry / a` in states. Default false. */
  actions?: boolean;
}

/** The part of an XState v5 state node the converter reads. */
interface NodeView {
  id: string;
  key: string;
  path: string[];
  type: NodeKind;
  history: false | 'shallow' | 'deep';
  parent?: NodeView;
  states: Record<string, NodeView>;
  config: { target?: unknown; invoke?: unknown };
  entry: readonly unknown[];
  exit: readonly unknown[];
  tags?: readonly string[];
  description?: string;
  transitions: Map<string, readonly TransitionView[]>;
  always?: readonly TransitionView[];
  initial: { target: readonly NodeView[] };
  invoke: readonly { id: string; src: unknown }[];
}

interface TransitionView {
  target?: readonly NodeView[];
  guard?: unknown;
  actions: readonly unknown[];
  reenter?: boolean;
}

/**
 * Converts an XState v5 machine into a {@link MachineGraph}: every state node (`machine.root` and
 * its descendants) and every transition, with guards and actions by name. Pure and deterministic:
 * the same machine always gives the same graph.
 *
 * @example
 * const graph = toMachineGraph(Account.machine, { name: 'Account' });
 * console.log(toMermaid(graph));
 */
export function toMachineGraph(
  machine: AnyStateMachine,
  options: MachineGraphOptions = {},
): MachineGraph {
  const root = (machine as { root?: unknown } | null)?.root as NodeView | undefined;
  if (root === undefined || typeof root !== 'object' || !(root.transitions instanceof Map)) {
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `toMachineGraph: ${describeValue(machine)} is not an XState v5 machine; pass one made with setup({ … }).createMachine({ … }) (for an aggregate: Aggregate.machine).`,
    );
  }
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const visit = (node: NodeView): void => {
    nodes.push(toNode(node));
    edges.push(...nodeEdges(node, root));
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(root);
  return { format: 1, name: options.name ?? root.id, root: root.id, nodes, edges };
}

/** The label of a transition as drawn: `Event [guard]`, `/ actions` when asked, `(reenter)`. */
export function transitionLabel(edge: GraphEdge, options: LabelOptions = {}): string {
  let label = edge.label;
  if (edge.guard !== undefined) label += `${label === '' ? '' : ' '}[${edge.guard}]`;
  if (options.actions === true && edge.actions.length > 0) {
    label += `${label === '' ? '' : ' '}/ ${edge.actions.join(', ')}`;
  }
  if (edge.reenter) label += `${label === '' ? '' : ' '}(reenter)`;
  return label;
}

/**
 * The lines written inside a state besides its name: invoked actors, entry and exit actions (with
 * `actions`), and its targetless transitions, which are drawn there rather than as self-loops.
 */
export function stateDetails(
  graph: MachineGraph,
  node: GraphNode,
  options: LabelOptions = {},
): string[] {
  const lines: string[] = [];
  if (options.actions === true) {
    if (node.entry.length > 0) lines.push(`entry / ${node.entry.join(', ')}`);
    if (node.exit.length > 0) lines.push(`exit / ${node.exit.join(', ')}`);
  }
  for (const src of node.invoke) lines.push(`invoke ${src}`);
  for (const edge of graph.edges) {
    if (edge.source === node.id && edge.targets.length === 0) {
      lines.push(transitionLabel(edge, options));
    }
  }
  return lines;
}

function toNode(node: NodeView): GraphNode {
  const initial = node.type === 'compound' ? node.initial.target[0] : undefined;
  const description = typeof node.description === 'string' ? node.description : '';
  return {
    id: node.id,
    key: node.key,
    path: [...node.path],
    ...(node.parent === undefined ? {} : { parent: node.parent.id }),
    kind: node.type,
    ...(node.type === 'history' ? { history: node.history === 'deep' ? 'deep' : 'shallow' } : {}),
    ...(initial === undefined ? {} : { initial: initial.id }),
    children: Object.values(node.states).map((child) => child.id),
    entry: node.entry.map(actionName),
    exit: node.exit.map(actionName),
    invoke: invokeNames(node).map(([, name]) => name),
    tags: [...(node.tags ?? [])],
    ...(description === '' ? {} : { description }),
  };
}

function nodeEdges(node: NodeView, root: NodeView): GraphEdge[] {
  const edges: GraphEdge[] = [];
  const invokes = new Map(invokeNames(node));
  const add = (
    transition: TransitionView,
    kind: EdgeKind,
    event: string,
    label: string,
    targets: readonly NodeView[],
  ): void => {
    const reenter = transition.reenter === true;
    edges.push({
      id: `${node.id}:${edges.length}`,
      source: node.id,
      targets: targets.map((target) => target.id),
      kind,
      event,
      label,
      ...(transition.guard === undefined ? {} : { guard: guardName(transition.guard) }),
      actions: transition.actions.map(actionName),
      reenter,
      internal: !reenter && targets.every((target) => isWithin(target, node)),
    });
  };
  for (const [event, transitions] of node.transitions) {
    const [kind, label] = describeEvent(event, node, invokes);
    for (const transition of transitions) {
      add(transition, kind, event, label, transition.target ?? []);
    }
  }
  for (const transition of node.always ?? []) {
    add(transition, 'always', '', 'always', transition.target ?? []);
  }
  if (node.type === 'history') {
    const targets = historyTargets(node, root);
    if (targets.length > 0) add({ actions: [] }, 'history', '', '', targets);
  }
  return edges;
}

function describeEvent(
  event: string,
  node: NodeView,
  invokes: ReadonlyMap<string, string>,
): [EdgeKind, string] {
  const actor = (prefix: string): string => {
    const id = event.slice(prefix.length);
    return invokes.get(id) ?? id;
  };
  if (event === `xstate.done.state.${node.id}`) return ['done', 'onDone'];
  if (event.startsWith('xstate.done.actor.')) {
    return ['done', `onDone ${actor('xstate.done.actor.')}`];
  }
  if (event.startsWith('xstate.error.actor.')) {
    return ['error', `onError ${actor('xstate.error.actor.')}`];
  }
  if (event.startsWith('xstate.snapshot.')) {
    return ['snapshot', `onSnapshot ${actor('xstate.snapshot.')}`];
  }
  const suffix = `.${node.id}`;
  if (event.startsWith('xstate.after.') && event.endsWith(suffix)) {
    const delay = event.slice('xstate.after.'.length, -suffix.length);
    return ['after', `after ${/^\d+$/.test(delay) ? `${delay}ms` : delay}`];
  }
  return ['event', event];
}

/** Invoke id → name shown: the `src` when it names an actor of `setup`, else the invoke's own id. */
function invokeNames(node: NodeView): [string, string][] {
  const configs = node.config.invoke;
  const list = Array.isArray(configs) ? (configs as unknown[]) : configs ? [configs] : [];
  return node.invoke.map((definition, index) => {
    const config = list[index] as { src?: unknown; id?: unknown } | undefined;
    const src = config?.src ?? definition.src;
    const name =
      typeof src === 'string' ? src : typeof config?.id === 'string' ? config.id : 'actor';
    return [definition.id, name];
  });
}

/** The explicit default target of a history node (`target`), resolved like XState does. */
function historyTargets(node: NodeView, root: NodeView): NodeView[] {
  const target = node.config.target;
  const list = Array.isArray(target) ? (target as unknown[]) : target === undefined ? [] : [target];
  const found: NodeView[] = [];
  for (const item of list) {
    if (typeof item !== 'string') continue;
    const resolved = item.startsWith('#')
      ? findById(root, item.slice(1))
      : findByPath(node.parent, item.split('.'));
    if (resolved !== undefined) found.push(resolved);
  }
  return found;
}

function findById(node: NodeView, id: string): NodeView | undefined {
  if (node.id === id) return node;
  for (const child of Object.values(node.states)) {
    const found = findById(child, id);
    if (found !== undefined) return found;
  }
  return undefined;
}

function findByPath(node: NodeView | undefined, path: readonly string[]): NodeView | undefined {
  let current = node;
  for (const key of path) current = current?.states[key];
  return current;
}

/** True when `node` is `ancestor` or one of its descendants. */
function isWithin(node: NodeView, ancestor: NodeView): boolean {
  for (let current: NodeView | undefined = node; current; current = current.parent) {
    if (current === ancestor) return true;
  }
  return false;
}

/** Names JavaScript gives an inline function from the config key it is written under. */
const keyNames = new Set(['actions', 'entry', 'exit', 'guard']);

/** An action by name: `deposit`, `assign` for an inline `assign(…)`, `action` for an anonymous function. */
function actionName(action: unknown): string {
  if (typeof action === 'string') return action;
  if (typeof action === 'function') {
    const type = (action as { type?: unknown }).type;
    if (typeof type === 'string') return type.replace(/^xstate\./, '');
    return action.name !== '' && !keyNames.has(action.name) ? action.name : 'action';
  }
  if (typeof action === 'object' && action !== null) {
    const type = (action as { type?: unknown }).type;
    if (typeof type === 'string') return type;
  }
  return 'action';
}

/** A guard by name, with XState's `and`, `or`, `not` and `stateIn` written out. */
function guardName(guard: unknown, nested = false): string {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const parts = (guard as { guards?: unknown }).guards;
    const isBuiltin = typeof (guard as { check?: unknown }).check === 'function';
    if (isBuiltin && Array.isArray(parts)) {
      if (guard.name === 'not') return `!${guardName(parts[0], true)}`;
      if (guard.name === 'and' || guard.name === 'or') {
        const joined = parts
          .map((part) => guardName(part, true))
          .join(guard.name === 'and' ? ' && ' : ' || ');
        return nested && parts.length > 1 ? `(${joined})` : joined;
      }
      return `${guard.name}(${parts.map((part) => guardName(part)).join(', ')})`;
    }
    if (isBuiltin && 'stateValue' in guard) {
      const value = (guard as { stateValue?: unknown }).stateValue;
      return `in(${typeof value === 'string' ? value : JSON.stringify(value)})`;
    }
    return guard.name !== '' && !keyNames.has(guard.name) ? guard.name : 'guard';
  }
  if (typeof guard === 'object' && guard !== null) {
    const type = (guard as { type?: unknown }).type;
    if (typeof type === 'string') return type;
  }
  return 'guard';
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return `an object with keys ${JSON.stringify(Object.keys(value))}`;
  return `a ${typeof value}`;
}

/** Lookups the renderers share. Internal: not exported from the package. */
export interface GraphIndex {
  /** Node by id. */
  node(id: string): GraphNode;
  /** True when `id` is `ancestor` or one of its descendants. */
  isWithin(id: string, ancestor: string): boolean;
  /** The root node. */
  root: GraphNode;
  /** Whether the root is drawn as a container (it is parallel, or has transitions or details of its own). */
  rootIsContainer: boolean;
}

/** Builds the lookups the renderers share. */
export function indexGraph(graph: MachineGraph, options: LabelOptions = {}): GraphIndex {
  const byId = new Map(graph.nodes.map((node) => [node.id, node]));
  const node = (id: string): GraphNode => {
    const found = byId.get(id);
    if (found === undefined) {
      throw new DefinitionError(
        'INVALID_DEFINITION',
        `Machine graph "${graph.name}" refers to node "${id}", which it does not contain; build graphs with toMachineGraph(machine).`,
      );
    }
    return found;
  };
  const isWithin = (id: string, ancestor: string): boolean => {
    for (let current: string | undefined = id; current !== undefined;) {
      if (current === ancestor) return true;
      current = byId.get(current)?.parent;
    }
    return false;
  };
  const root = node(graph.root);
  const rootIsContainer =
    root.children.length > 0 &&
    (root.kind === 'parallel' ||
      graph.edges.some((edge) => edge.source === root.id) ||
      stateDetails(graph, root, options).length > 0);
  return { node, isWithin, root, rootIsContainer };
}
