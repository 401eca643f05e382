import type { GraphNode, MachineGraph } from '../visualiser/machine-graph.js';

/**
 * The ids of the graph nodes a state value stands for, parents before children, without the root:
 * `'open'` → `['Account.open']`; `{ flying: 'cruise' }` → `['m.flying', 'm.flying.cruise']`; a
 * parallel state's regions are all listed. Keys the graph does not have are skipped.
 *
 * @example
 * activeStateIds(toMachineGraph(Account.machine), 'open'); // ['Account.open']
 */
export function activeStateIds(graph: MachineGraph, value: unknown): string[] {
  const byId = new Map(graph.nodes.map((node) => [node.id, node]));
  const ids: string[] = [];
  const childByKey = (node: GraphNode, key: string): GraphNode | undefined => {
    for (const id of node.children) {
      const child = byId.get(id);
      if (child?.key === key) return child;
    }
    return undefined;
  };
  const visit = (node: GraphNode, state: unknown): void => {
    if (typeof state === 'string') {
      const child = childByKey(node, state);
      if (child !== undefined) ids.push(child.id);
      return;
    }
    if (typeof state !== 'object' || state === null) return;
    for (const [key, inner] of Object.entries(state)) {
      const child = childByKey(node, key);
      if (child === undefined) continue;
      ids.push(child.id);
      visit(child, inner);
    }
  };
  const root = byId.get(graph.root);
  if (root !== undefined) visit(root, value);
  return ids;
}

/**
 * Counts actors per active graph node, remembering the ids of each state value it has seen (an
 * aggregate has few distinct state values), so counting many actors costs one lookup each.
 */
export class StateCounter {
  readonly #graph: MachineGraph;
  readonly #cache = new Map<string, string[]>();

  constructor(graph: MachineGraph) {
    this.#graph = graph;
  }

  /** The active node ids of a state value, cached. */
  ids(value: unknown): string[] {
    const key = typeof value === 'string' ? value : JSON.stringify(value);
    let ids = this.#cache.get(key);
    if (ids === undefined) {
      ids = activeStateIds(this.#graph, value);
      if (this.#cache.size < 1024) this.#cache.set(key, ids);
    }
    return ids;
  }

  /** Adds one actor in state `value` to `counts` (node id → actors). */
  add(counts: Record<string, number>, value: unknown): void {
    for (const id of this.ids(value)) counts[id] = (counts[id] ?? 0) + 1;
  }
}
