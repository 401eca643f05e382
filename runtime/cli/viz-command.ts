import { existsSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { AnyStateMachine } from 'xstate';
import { describeError } from '../errors.js';
import { toMachineGraph, type MachineGraph } from '../visualiser/machine-graph.js';
import { runtimeMachines } from '../visualiser/runtime-machines.js';
import { toDot, type DotOptions } from '../visualiser/to-dot.js';
import { toMermaid } from '../visualiser/to-mermaid.js';
import { toSvg } from '../visualiser/to-svg.js';
import { runCommand, UsageError, type CliIO } from './cli-io.js';
import { loadDomains } from './load-domains.js';

/** Output formats of `jetactor viz`, with the file extension each is written with. */
const extensions = { mermaid: 'mmd', dot: 'dot', svg: 'svg', json: 'json' } as const;

type Format = keyof typeof extensions;

/** File extensions that choose the format when `--format` is absent. */
const formatOfExtension: Record<string, Format> = {
  '.mmd': 'mermaid',
  '.mermaid': 'mermaid',
  '.dot': 'dot',
  '.gv': 'dot',
  '.svg': 'svg',
  '.json': 'json',
};

const directions = ['TB', 'BT', 'LR', 'RL'] as const;

/** The pseudo-domain naming the runtime's own machines. */
const runtimeDomain = 'runtime';

/** Usage of `jetactor viz`. */
export const vizUsage = `Usage: jetactor viz <domain module|flight|bank|runtime>… [options]

Draws the state machine of every aggregate of the given domains; "runtime" (or --runtime)
draws the runtime's own machines: ${runtimeMachines.map((m) => m.name).join(', ')}.

Options:
  -a, --aggregate <name>   only this aggregate or runtime machine (Name or domain.Name);
                           repeat for several
  -f, --format <format>    mermaid (default), dot, svg or json
  -o, --out <file|dir>     write files instead of printing. A directory (an existing one, or a
                           path without extension) gets one <Name>.<ext> per diagram (.mmd,
                           .dot, .svg, .json); a file name with an extension gets everything,
                           and sets the format when --format is not given
      --runtime            draw the runtime's machines too
      --actions            show action names: "Event [guard] / action", entry and exit actions
      --direction <dir>    layout direction: TB (default), LR, BT or RL
  -h, --help               show this help

Printed diagrams are separated by a comment naming each (%% bank.Account, // bank.Account,
<!-- bank.Account -->); JSON is one array of { domain, name, graph }.
`;

/** One machine to draw. */
interface Diagram {
  domain: string;
  name: string;
  machine: AnyStateMachine;
}

/** A drawn machine: its graph and its text in the chosen format. */
interface Rendered {
  diagram: Diagram;
  graph: MachineGraph;
  text: string;
}

/**
 * `jetactor viz <domain module|flight|bank|runtime>… [options]`: draws aggregate machines (and the
 * runtime's own) as Mermaid, DOT, SVG or JSON, printed on stdout or written to files. Returns the
 * exit code: 0; 2 for bad usage (unknown option, format or aggregate) or a module that cannot be
 * loaded; 1 when a file cannot be written.
 */
export function vizCommand(argv: readonly string[], io: CliIO): Promise<number> {
  return runCommand(io, 'viz', () => run(argv, io));
}

async function run(args: readonly string[], io: CliIO): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        aggregate: { type: 'string', short: 'a', multiple: true },
        format: { type: 'string', short: 'f' },
        out: { type: 'string', short: 'o' },
        runtime: { type: 'boolean' },
        actions: { type: 'boolean' },
        direction: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(describeError(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    io.stdout.write(vizUsage);
    return 0;
  }
  const format = chooseFormat(values.format, values.out);
  const direction = values.direction;
  if (direction !== undefined && !(directions as readonly string[]).includes(direction)) {
    throw new UsageError(
      `--direction ${JSON.stringify(direction)} is not one of ${directions.join(', ')}.`,
    );
  }
  const specs = [...positionals];
  if (values.runtime === true && !specs.includes(runtimeDomain)) specs.push(runtimeDomain);
  if (specs.length === 0) {
    throw new UsageError(
      'name what to draw: a domain module (a built .js file), a bundled domain (flight, bank), or runtime.',
    );
  }
  const diagrams = select(await collect(specs), values.aggregate ?? []);
  const options = {
    ...(values.actions === true ? { actions: true } : {}),
    ...(direction === undefined ? {} : { direction: direction as (typeof directions)[number] }),
  };
  const rendered: Rendered[] = [];
  for (const diagram of diagrams) {
    const graph = toMachineGraph(diagram.machine, { name: diagram.name });
    rendered.push({ diagram, graph, text: await render(format, graph, options) });
  }

  const out = values.out;
  if (out === undefined) {
    io.stdout.write(combine(format, rendered));
    return 0;
  }
  if (isDirectory(out)) {
    await mkdir(out, { recursive: true });
    const names = rendered.map(({ diagram }) => diagram.name);
    for (const { diagram, text } of rendered) {
      const clash = names.filter((name) => name === diagram.name).length > 1;
      const base = clash ? `${diagram.domain}.${diagram.name}` : diagram.name;
      const path = join(out, `${base}.${extensions[format]}`);
      await writeFile(path, text);
      io.stderr.write(`jetactor viz: wrote ${path}\n`);
    }
    return 0;
  }
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, combine(format, rendered));
  io.stderr.write(`jetactor viz: wrote ${out}\n`);
  return 0;
}

async function render(format: Format, graph: MachineGraph, options: DotOptions): Promise<string> {
  if (format === 'mermaid') return toMermaid(graph, options);
  if (format === 'dot') return toDot(graph, options);
  if (format === 'svg') return toSvg(graph, options);
  return `${JSON.stringify(graph, null, 2)}\n`;
}

/**
 * What stdout (or a single `--out` file) gets: JSON as one array of `{ domain, name, graph }`;
 * one diagram as is; several each after a comment naming it.
 */
function combine(format: Format, rendered: readonly Rendered[]): string {
  if (format === 'json') {
    const entries = rendered.map(({ diagram, graph }) => ({
      domain: diagram.domain,
      name: diagram.name,
      graph,
    }));
    return `${JSON.stringify(entries, null, 2)}\n`;
  }
  if (rendered.length === 1) return rendered[0]?.text ?? '';
  return rendered
    .map(({ diagram, text }) => `${comment(format, `${diagram.domain}.${diagram.name}`)}\n${text}`)
    .join('\n');
}

function chooseFormat(format: string | undefined, out: string | undefined): Format {
  if (format === undefined) {
    const fromOut = out === undefined ? undefined : formatOfExtension[extname(out).toLowerCase()];
    return fromOut ?? 'mermaid';
  }
  if (!Object.hasOwn(extensions, format)) {
    throw new UsageError(
      `--format ${JSON.stringify(format)} is not one of ${Object.keys(extensions).join(', ')}.`,
    );
  }
  return format as Format;
}

/** The machines of the given domains, in the order given; `runtime` names the runtime's own. */
async function collect(specs: readonly string[]): Promise<Diagram[]> {
  const diagrams: Diagram[] = [];
  const seen = new Set<string>();
  for (const spec of specs) {
    if (spec === runtimeDomain) {
      if (seen.has(runtimeDomain)) continue;
      seen.add(runtimeDomain);
      for (const { name, machine } of runtimeMachines) {
        diagrams.push({ domain: runtimeDomain, name, machine });
      }
      continue;
    }
    for (const domain of await loadDomains([spec])) {
      if (seen.has(domain.name)) continue;
      seen.add(domain.name);
      for (const aggregate of Object.values(domain.aggregates)) {
        diagrams.push({ domain: domain.name, name: aggregate.name, machine: aggregate.machine });
      }
    }
  }
  return diagrams;
}

/** Keeps the diagrams `--aggregate` names (`Name` or `domain.Name`); all when none is named. */
function select(diagrams: Diagram[], wanted: readonly string[]): Diagram[] {
  if (wanted.length === 0) return diagrams;
  const matches = (diagram: Diagram, name: string): boolean =>
    name === diagram.name || name === `${diagram.domain}.${diagram.name}`;
  for (const name of wanted) {
    if (!diagrams.some((diagram) => matches(diagram, name))) {
      const domains = [...new Set(diagrams.map((diagram) => diagram.domain))];
      const known = diagrams.map((diagram) => diagram.name);
      throw new UsageError(
        `no aggregate ${JSON.stringify(name)} in ${domains.join(', ')}; known: ${known.join(', ')}.`,
      );
    }
  }
  return diagrams.filter((diagram) => wanted.some((name) => matches(diagram, name)));
}

/** True when `--out` names a directory: an existing one, one ending in a slash, or a path without extension. */
function isDirectory(out: string): boolean {
  if (existsSync(out)) return statSync(out).isDirectory();
  return /[/\\]$/.test(out) || extname(out) === '';
}

function comment(format: Format, text: string): string {
  if (format === 'mermaid') return `%% ${text}`;
  if (format === 'dot') return `// ${text}`;
  return `<!-- ${text} -->`;
}
