import {
  indexGraph,
  stateDetails,
  transitionLabel,
  type GraphNode,
  type LabelOptions,
  type MachineGraph,
} from './machine-graph.js';

/** Options of {@link toDot}. */
export interface DotOptions extends LabelOptions {
  /** Graphviz `rankdir`: the direction transitions mostly run in. Default `TB` (top to bottom). */
  direction?: 'TB' | 'BT' | 'LR' | 'RL';
}

/**
 * Draws a machine graph in Graphviz DOT.
 *
 * Compound and parallel states are clusters; the regions of a parallel state have dashed borders;
 * a small dot marks the initial state of each compound state; final states are double circles;
 * history states are circles marked `H` (shallow) or `H*` (deep), with a dashed arrow to their
 * default target; transitions read `Event [guard]`. Transitions without a target are listed inside
 * their state, under its name, never drawn as self-loops. Deterministic: the same graph gives the
 * same text.
 */
export function toDot(graph: MachineGraph, options: DotOptions = {}): string {
  const index = indexGraph(graph, options);
  const anchored = new Set<string>();
  const isContainer = (node: GraphNode): boolean =>
    node.children.length > 0 && (node.id !== graph.root || index.rootIsContainer);
  const initialLines: string[] = [];
  const edgeLines: string[] = [];

  const endpoint = (id: string, other: string, end: 'tail' | 'head'): [string, string[]] => {
    const node = index.node(id);
    if (!isContainer(node)) return [quote(id), []];
    anchored.add(id);
    // Clipping at the cluster border only works when the other end lies outside the cluster.
    const clip = index.isWithin(other, id)
      ? []
      : [`${end === 'tail' ? 'ltail' : 'lhead'}=${quote(clusterName(id))}`];
    return [quote(anchorName(id)), clip];
  };

  for (const edge of graph.edges) {
    const label = transitionLabel(edge, options);
    for (const target of edge.targets) {
      const [tail, tailClip] = endpoint(edge.source, target, 'tail');
      const [head, headClip] = endpoint(target, edge.source, 'head');
      const attributes = [
        ...(label === '' ? [] : [`label=${quote(label)}`]),
        ...(edge.kind === 'history' ? ['style=dashed'] : []),
        ...tailClip,
        ...headClip,
      ];
      edgeLines.push(`${tail} -> ${head}${list(attributes)};`);
    }
  }

  const lines: string[] = [];
  const graphAttributes = [
    'compound=true',
    'fontname="Helvetica"',
    'fontsize=12',
    ...(isContainer(index.root) ? [] : [`label=${quote(graph.name)}`, 'labelloc=t']),
    `rankdir=${options.direction ?? 'TB'}`,
  ];
  lines.push(`digraph ${quote(graph.name)} {`);
  lines.push(`  graph${list(graphAttributes)};`);
  lines.push('  node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];');
  lines.push('  edge [fontname="Helvetica", fontsize=10];');

  const initial = (node: GraphNode, indent: string): void => {
    if (node.initial === undefined) return;
    const [head, clip] = endpoint(node.initial, initialName(node.id), 'head');
    lines.push(`${indent}${quote(initialName(node.id))} [shape=point, width=0.12, label=""];`);
    initialLines.push(`${quote(initialName(node.id))} -> ${head}${list(clip)};`);
  };

  const declare = (node: GraphNode, indent: string): void => {
    const parent = node.parent === undefined ? undefined : index.node(node.parent);
    const region = parent?.kind === 'parallel' && node.kind !== 'history';
    const name = node.id === graph.root ? graph.name : node.key;
    const label = htmlLabel(name, stateDetails(graph, node, options));
    if (isContainer(node)) {
      lines.push(`${indent}subgraph ${quote(clusterName(node.id))} {`);
      const inner = `${indent}  `;
      lines.push(`${inner}label=${label};`);
      lines.push(`${inner}style=${quote(region ? 'rounded,dashed' : 'rounded')};`);
      if (anchored.has(node.id)) {
        lines.push(
          `${inner}${quote(anchorName(node.id))} [shape=point, style=invis, width=0.01, height=0.01, label=""];`,
        );
      }
      initial(node, inner);
      for (const child of node.children) declare(index.node(child), inner);
      lines.push(`${indent}}`);
      return;
    }
    const attributes: string[] = [];
    if (node.kind === 'history') {
      const mark = node.history === 'deep' ? 'H*' : 'H';
      attributes.push('shape=circle', 'width=0.4', 'fixedsize=true', `label=${quote(mark)}`);
      attributes.push(`tooltip=${quote(`${node.key} (${node.history ?? 'shallow'} history)`)}`);
    } else {
      if (node.kind === 'final') attributes.push('shape=doublecircle');
      attributes.push(`label=${label}`);
      if (region) attributes.push('style="rounded,dashed"');
    }
    lines.push(`${indent}${quote(node.id)}${list(attributes)};`);
  };

  // Edges were walked first so that every cluster knows whether it needs an anchor.
  if (isContainer(index.root)) {
    declare(index.root, '  ');
  } else {
    initial(index.root, '  ');
    for (const child of index.root.children) declare(index.node(child), '  ');
    if (index.root.children.length === 0) declare(index.root, '  ');
  }
  for (const line of [...initialLines, ...edgeLines]) lines.push(`  ${line}`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

function clusterName(id: string): string {
  return `cluster_${id}`;
}

/** Helper node names start with `#`, which no XState id can start with. */
function anchorName(id: string): string {
  return `#anchor ${id}`;
}

function initialName(id: string): string {
  return `#initial ${id}`;
}

function list(attributes: readonly string[]): string {
  return attributes.length === 0 ? '' : ` [${attributes.join(', ')}]`;
}

function quote(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/** The state's name, with its details under a rule when it has any (an HTML-like label). */
function htmlLabel(name: string, details: readonly string[]): string {
  if (details.length === 0) return quote(name);
  const rows = details.map((line) => `<TR><TD ALIGN="LEFT">${html(line)}</TD></TR>`).join('');
  return `<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD><B>${html(name)}</B></TD></TR><HR/>${rows}</TABLE>>`;
}

function html(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}
