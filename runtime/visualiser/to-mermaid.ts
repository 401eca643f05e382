import {
  indexGraph,
  stateDetails,
  transitionLabel,
  type GraphEdge,
  type GraphNode,
  type LabelOptions,
  type MachineGraph,
} from './machine-graph.js';

/** Options of {@link toMermaid}. */
export interface MermaidOptions extends LabelOptions {
  /** Layout direction (`direction LR` …); Mermaid's default (top to bottom) when absent. */
  direction?: 'TB' | 'BT' | 'LR' | 'RL';
  /** Put the graph's name in a front-matter `title`. Default true. */
  title?: boolean;
}

/** Words the Mermaid state-diagram grammar reads as keywords (it ignores case), never used as ids. */
const reserved = new Set([
  'accdescr',
  'acctitle',
  'as',
  'class',
  'classdef',
  'click',
  'default',
  'direction',
  'end',
  'hide',
  'note',
  'root',
  'scale',
  'state',
  'statediagram',
  'style',
]);

const plainId = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Draws a machine graph as a Mermaid `stateDiagram-v2`.
 *
 * Compound states are composite states with a `[*]` start; final states lead to `[*]`; the
 * regions of a parallel state are separated by `--`; history states are `H` (shallow) or `H*`
 * (deep) states; transitions read `Event [guard]`; transitions without a target are listed in a
 * note on their state, never drawn as self-loops. Deterministic: the same graph gives the same text.
 */
export function toMermaid(graph: MachineGraph, options: MermaidOptions = {}): string {
  const index = indexGraph(graph, options);
  const ids = mermaidIds(graph);
  const id = (nodeId: string): string => ids.get(nodeId) ?? nodeId;
  const lines: string[] = [];
  if (options.title !== false) lines.push('---', `title: ${JSON.stringify(graph.name)}`, '---');
  lines.push('stateDiagram-v2');
  if (options.direction !== undefined) lines.push(`  direction ${options.direction}`);

  /** Edges drawn inside the block of `parent`: both ends are its children, and it is not parallel. */
  const local = new Map<string, string[]>();
  const topLevel: string[] = [];
  for (const edge of graph.edges) {
    for (const target of edge.targets) {
      const line = `${id(edge.source)} --> ${id(target)}${edgeText(edge, options)}`;
      const parent = index.node(edge.source).parent;
      const key =
        parent !== undefined &&
        index.node(target).parent === parent &&
        index.node(parent).kind !== 'parallel'
          ? parent
          : undefined;
      if (key === undefined) topLevel.push(line);
      else local.set(key, [...(local.get(key) ?? []), line]);
    }
  }

  const body = (node: GraphNode, indent: string): void => {
    const children = node.children.map((child) => index.node(child));
    children.forEach((child, i) => {
      if (node.kind === 'parallel' && i > 0) lines.push(`${indent}--`);
      declare(child, indent);
      if (node.kind === 'parallel' && child.kind === 'final') {
        lines.push(`${indent}${id(child.id)} --> [*]`);
      }
    });
    if (node.initial !== undefined) lines.push(`${indent}[*] --> ${id(node.initial)}`);
    for (const line of local.get(node.id) ?? []) lines.push(`${indent}${line}`);
    if (node.kind !== 'parallel') {
      for (const child of children) {
        if (child.kind === 'final') lines.push(`${indent}${id(child.id)} --> [*]`);
      }
    }
  };

  const declare = (node: GraphNode, indent: string): void => {
    const label = stateLabel(graph, node);
    const nodeId = id(node.id);
    const named = label === nodeId ? nodeId : `"${quoteText(label)}" as ${nodeId}`;
    if (node.children.length > 0) {
      lines.push(`${indent}state ${named} {`);
      body(node, `${indent}  `);
      lines.push(`${indent}}`);
    } else {
      lines.push(label === nodeId ? `${indent}${nodeId}` : `${indent}state ${named}`);
    }
    const details = stateDetails(graph, node, options);
    if (details.length > 0) {
      lines.push(`${indent}note right of ${nodeId}`);
      for (const detail of details) lines.push(`${indent}  ${noteText(detail)}`);
      lines.push(`${indent}end note`);
    }
  };

  if (index.rootIsContainer || index.root.children.length === 0) {
    declare(index.root, '  ');
  } else {
    body(index.root, '  ');
  }
  for (const line of topLevel) lines.push(`  ${line}`);
  return `${lines.join('\n')}\n`;
}

/** What a state is called on the diagram: `H`/`H*` for history, the graph's name for the root. */
function stateLabel(graph: MachineGraph, node: GraphNode): string {
  if (node.kind === 'history') return node.history === 'deep' ? 'H*' : 'H';
  return node.id === graph.root ? graph.name : node.key;
}

/**
 * Mermaid ids: the state's key where it is a plain identifier used once in the machine, else its
 * path joined with `_`; a counter makes the rare clash unique. History states always get the path.
 */
function mermaidIds(graph: MachineGraph): Map<string, string> {
  const keyCount = new Map<string, number>();
  for (const node of graph.nodes) keyCount.set(node.key, (keyCount.get(node.key) ?? 0) + 1);
  const taken = new Set<string>();
  const ids = new Map<string, string>();
  for (const node of graph.nodes) {
    const key = node.id === graph.root ? graph.name : node.key;
    let candidate =
      plainId.test(key) &&
      keyCount.get(node.key) === 1 &&
      node.kind !== 'history' &&
      !reserved.has(key.toLowerCase())
        ? key
        : sanitize(node.path.length === 0 ? key : node.path.join('_'));
    if (reserved.has(candidate.toLowerCase()) || !/^[A-Za-z_]/.test(candidate)) {
      candidate = `s_${candidate}`;
    }
    let unique = candidate;
    for (let n = 2; taken.has(unique.toLowerCase()); n++) unique = `${candidate}_${n}`;
    taken.add(unique.toLowerCase());
    ids.set(node.id, unique);
  }
  return ids;
}

function sanitize(text: string): string {
  return text.replace(/[^A-Za-z0-9_]/g, '_');
}

/** ` : label` for a transition, or nothing; `:` and `;` end a Mermaid label, so they are replaced. */
function edgeText(edge: GraphEdge, options: LabelOptions): string {
  const label = transitionLabel(edge, options);
  return label === ''
    ? ''
    : ` : ${label.replace(/:/g, '∶').replace(/;/g, ',').replace(/\s+/g, ' ')}`;
}

function quoteText(text: string): string {
  return text.replace(/"/g, "'").replace(/\s+/g, ' ');
}

function noteText(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/end note/gi, 'end-note');
}
