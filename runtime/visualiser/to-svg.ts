import type { Viz } from '@viz-js/viz';
import { DefinitionError } from '../errors.js';
import { toDot, type DotOptions } from './to-dot.js';
import type { MachineGraph } from './machine-graph.js';

/** Options of {@link toSvg}: those of {@link toDot}. */
export type SvgOptions = DotOptions;

let viz: Promise<Viz> | undefined;

/**
 * Draws a machine graph as SVG: {@link toDot}, laid out by Graphviz compiled to WebAssembly
 * (`@viz-js/viz`), so it works offline, in Node and in a browser. The module (about 1 MB, 150 ms to
 * load) is imported on the first call only, and kept.
 */
export async function toSvg(graph: MachineGraph, options: SvgOptions = {}): Promise<string> {
  return renderDot(toDot(graph, options));
}

/**
 * Lays out DOT text with Graphviz (WebAssembly) and returns the SVG; a DOT syntax error throws a
 * {@link DefinitionError} (`INVALID_DEFINITION`) with Graphviz's messages in `details.errors`.
 */
export async function renderDot(dot: string): Promise<string> {
  viz ??= import('@viz-js/viz')
    .then((module) => module.instance())
    .catch((error: unknown) => {
      viz = undefined;
      throw error;
    });
  const result = (await viz).render(dot, { format: 'svg' });
  if (result.status !== 'success') {
    const messages = result.errors.map((error) => error.message.trim()).join('; ');
    throw new DefinitionError(
      'INVALID_DEFINITION',
      `Graphviz could not lay out the diagram: ${messages}. Draw graphs made by toMachineGraph(machine); hand-written DOT must be valid Graphviz syntax.`,
      { details: { errors: result.errors } },
    );
  }
  return result.output;
}
