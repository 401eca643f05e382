import { instance } from '@viz-js/viz';
import { and, assign, fromPromise, not, or, setup, stateIn } from 'xstate';
import { describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import {
  aggregateLifecycleMachine,
  isDefinitionError,
  runtimeMachines,
  toDot,
  toMachineGraph,
  toMermaid,
  toSvg,
  transitionLabel,
  type GraphEdge,
  type MachineGraph,
} from '../../runtime/index.js';

function isBusy(): boolean {
  return false;
}

/** Nested, parallel, final and history states; guards of every form; always; targetless; reenter. */
const tricky = setup({
  guards: { isFrozen: () => false, ok: () => true },
  actions: { log: assign({}) },
}).createMachine({
  id: 'tricky',
  initial: 'idle',
  on: { RESET: { target: '.idle', reenter: true } },
  states: {
    idle: {
      entry: 'log',
      exit: [{ type: 'log' }],
      on: {
        START: [
          { target: 'running', guard: 'isFrozen' },
          { target: 'running.fast', guard: ({ context }) => context === undefined },
          { target: 'paused', guard: isBusy },
        ],
        PING: { actions: 'log' },
        POKE: { guard: not('ok') },
        SELF: { target: 'idle', reenter: true },
        STAY: { target: 'idle' },
      },
      always: {
        target: 'done',
        guard: and(['ok', or([not('isFrozen'), stateIn('#tricky.running')])]),
      },
    },
    running: {
      initial: 'slow',
      states: {
        slow: { on: { FASTER: 'fast' } },
        fast: { on: { SLOWER: 'slow', TICK: {} } },
        hist: { type: 'history', history: 'shallow' },
      },
      on: {
        PAUSE: 'paused',
        SPLIT: { target: ['#tricky.both.left.l2', '#tricky.both.right.r2'] },
        INNER: { target: '.fast' },
      },
    },
    paused: {
      on: {
        RESUME: 'running.hist',
        RESUME_DEEP: { target: 'both.deep', guard: { type: 'ok', params: { n: 1 } } },
      },
    },
    both: {
      type: 'parallel',
      states: {
        left: { initial: 'l1', states: { l1: { on: { L: 'l2' } }, l2: { type: 'final' } } },
        right: { initial: 'r1', states: { r1: { on: { R: 'r2' } }, r2: { type: 'final' } } },
        deep: { type: 'history', history: 'deep', target: 'left.l2' },
      },
      onDone: 'done',
    },
    done: { type: 'final' },
  },
});

const graph = toMachineGraph(tricky);

function edge(source: string, event: string, index = 0): GraphEdge {
  const found = graph.edges.filter((e) => e.source === `tricky.${source}` && e.event === event);
  const result = found[index];
  if (result === undefined) throw new Error(`no edge ${source} ${event} #${index}`);
  return result;
}

function lines(text: string): string[] {
  return text.split('\n').map((line) => line.trim());
}

describe('machine graph', () => {
  it('lists every state node, parents first, with its parent, kind and initial child', () => {
    expect(graph.format).toBe(1);
    expect(graph.name).toBe('tricky');
    expect(graph.root).toBe('tricky');
    expect(graph.nodes.map((node) => [node.id, node.parent, node.kind, node.initial])).toEqual([
      ['tricky', undefined, 'compound', 'tricky.idle'],
      ['tricky.idle', 'tricky', 'atomic', undefined],
      ['tricky.running', 'tricky', 'compound', 'tricky.running.slow'],
      ['tricky.running.slow', 'tricky.running', 'atomic', undefined],
      ['tricky.running.fast', 'tricky.running', 'atomic', undefined],
      ['tricky.running.hist', 'tricky.running', 'history', undefined],
      ['tricky.paused', 'tricky', 'atomic', undefined],
      ['tricky.both', 'tricky', 'parallel', undefined],
      ['tricky.both.left', 'tricky.both', 'compound', 'tricky.both.left.l1'],
      ['tricky.both.left.l1', 'tricky.both.left', 'atomic', undefined],
      ['tricky.both.left.l2', 'tricky.both.left', 'final', undefined],
      ['tricky.both.right', 'tricky.both', 'compound', 'tricky.both.right.r1'],
      ['tricky.both.right.r1', 'tricky.both.right', 'atomic', undefined],
      ['tricky.both.right.r2', 'tricky.both.right', 'final', undefined],
      ['tricky.both.deep', 'tricky.both', 'history', undefined],
      ['tricky.done', 'tricky', 'final', undefined],
    ]);
    expect(graph.nodes.find((node) => node.id === 'tricky.both')).toMatchObject({
      key: 'both',
      path: ['both'],
      children: ['tricky.both.left', 'tricky.both.right', 'tricky.both.deep'],
    });
  });

  it('tells shallow from deep history, and keeps an explicit default target as a history edge', () => {
    const history = graph.nodes.filter((node) => node.kind === 'history');
    expect(history.map((node) => [node.key, node.history])).toEqual([
      ['hist', 'shallow'],
      ['deep', 'deep'],
    ]);
    expect(graph.edges.filter((e) => e.kind === 'history')).toEqual([
      {
        id: 'tricky.both.deep:0',
        source: 'tricky.both.deep',
        targets: ['tricky.both.left.l2'],
        kind: 'history',
        event: '',
        label: '',
        actions: [],
        reenter: false,
        internal: false,
      },
    ]);
  });

  it('shows guards by name, writes out not/and/or/stateIn, and names inline guards', () => {
    expect(edge('idle', 'START', 0).guard).toBe('isFrozen');
    expect(edge('idle', 'START', 1).guard).toBe('guard');
    expect(edge('idle', 'START', 2).guard).toBe('isBusy');
    expect(edge('idle', 'POKE').guard).toBe('!ok');
    expect(edge('paused', 'RESUME_DEEP').guard).toBe('ok');
    expect(edge('idle', '').guard).toBe('ok && (!isFrozen || in(#tricky.running))');
    expect(edge('running', 'PAUSE')).not.toHaveProperty('guard');
  });

  it('records eventless always transitions with the label "always"', () => {
    expect(edge('idle', '')).toMatchObject({
      kind: 'always',
      label: 'always',
      targets: ['tricky.done'],
    });
  });

  it('keeps targetless transitions without targets, as internal, never as self-loops', () => {
    expect(edge('idle', 'PING')).toMatchObject({ targets: [], actions: ['log'], internal: true });
    expect(edge('idle', 'POKE')).toMatchObject({ targets: [], internal: true });
    expect(edge('running.fast', 'TICK')).toMatchObject({ targets: [], internal: true });
  });

  it('keeps a transition with several targets as one edge', () => {
    expect(edge('running', 'SPLIT').targets).toEqual([
      'tricky.both.left.l2',
      'tricky.both.right.r2',
    ]);
  });

  it('marks reenter transitions, and internal ones that stay inside their source', () => {
    expect(edge('idle', 'SELF')).toMatchObject({
      targets: ['tricky.idle'],
      reenter: true,
      internal: false,
    });
    expect(edge('idle', 'STAY')).toMatchObject({ reenter: false, internal: true });
    expect(edge('running', 'INNER')).toMatchObject({ reenter: false, internal: true });
    expect(edge('running', 'PAUSE')).toMatchObject({ reenter: false, internal: false });
    expect(graph.edges.find((e) => e.event === 'RESET')).toMatchObject({
      source: 'tricky',
      targets: ['tricky.idle'],
      reenter: true,
      internal: false,
    });
  });

  it('names entry, exit and transition actions', () => {
    const idle = graph.nodes.find((node) => node.id === 'tricky.idle');
    expect(idle).toMatchObject({ entry: ['log'], exit: ['log'] });
    const account = toMachineGraph(Account.machine, { name: 'Account' });
    const actions = (event: string) => account.edges.find((e) => e.event === event)?.actions;
    expect(actions('Opened')).toEqual(['assign']);
    expect(actions('Deposited')).toEqual(['deposit']);
  });

  it('labels delayed, onDone and onError transitions and lists invoked actors', () => {
    const worker = setup({
      actors: { fetchUser: fromPromise(() => Promise.resolve(1)) },
      delays: { SLOW: 500 },
    }).createMachine({
      id: 'worker',
      initial: 'loading',
      states: {
        loading: {
          invoke: { src: 'fetchUser', onDone: 'ready', onError: 'failed' },
          after: { 1000: 'failed', SLOW: { actions: [] } },
        },
        ready: {},
        failed: { type: 'final' },
      },
    });
    const workerGraph = toMachineGraph(worker);
    expect(workerGraph.nodes[1]).toMatchObject({ key: 'loading', invoke: ['fetchUser'] });
    expect(workerGraph.edges.map((e) => [e.kind, e.label, e.targets])).toEqual([
      ['done', 'onDone fetchUser', ['worker.ready']],
      ['error', 'onError fetchUser', ['worker.failed']],
      ['after', 'after 1000ms', ['worker.failed']],
      ['after', 'after SLOW', []],
    ]);
    expect(edge('both', 'xstate.done.state.tricky.both')).toMatchObject({
      kind: 'done',
      label: 'onDone',
    });
  });

  it('labels transitions "Event [guard]", with actions and (reenter) when asked', () => {
    expect(transitionLabel(edge('idle', 'START', 0))).toBe('START [isFrozen]');
    expect(transitionLabel(edge('idle', 'PING'))).toBe('PING');
    expect(transitionLabel(edge('idle', 'PING'), { actions: true })).toBe('PING / log');
    expect(transitionLabel(edge('idle', 'SELF'))).toBe('SELF (reenter)');
  });

  it('is plain JSON and the same for the same machine', () => {
    expect(JSON.parse(JSON.stringify(graph))).toEqual(graph);
    expect(JSON.stringify(toMachineGraph(tricky))).toBe(JSON.stringify(graph));
    expect(toMermaid(toMachineGraph(tricky))).toBe(toMermaid(graph));
    expect(toDot(toMachineGraph(tricky))).toBe(toDot(graph));
  });

  it('rejects what is not a machine with INVALID_DEFINITION', () => {
    let caught: unknown;
    try {
      toMachineGraph({ states: {} } as never);
    } catch (error) {
      caught = error;
    }
    expect(isDefinitionError(caught) && caught.code).toBe('INVALID_DEFINITION');
    expect((caught as Error).message).toContain('createMachine');
  });
});

describe('mermaid diagram', () => {
  it('draws the bank account with a start, an end, notes for targetless transitions', () => {
    expect(toMermaid(toMachineGraph(Account.machine, { name: 'Account' }))).toBe(
      [
        '---',
        'title: "Account"',
        '---',
        'stateDiagram-v2',
        '  new',
        '  open',
        '  note right of open',
        '    Deposited',
        '    Withdrawn',
        '  end note',
        '  frozen',
        '  note right of frozen',
        '    Deposited',
        '  end note',
        '  closed',
        '  [*] --> new',
        '  new --> open : Opened',
        '  open --> frozen : Frozen',
        '  open --> closed : Closed',
        '  frozen --> open : Unfrozen',
        '  closed --> [*]',
        '',
      ].join('\n'),
    );
  });

  const mermaid = toMermaid(graph);
  const mermaidLines = lines(mermaid);

  it('nests compound states, separates parallel regions with --, and ends final states in [*]', () => {
    expect(mermaid).toContain(
      [
        '    state both {',
        '      state left {',
        '        l1',
        '        l2',
        '        [*] --> l1',
        '        l1 --> l2 : L',
        '        l2 --> [*]',
        '      }',
        '      --',
        '      state right {',
      ].join('\n'),
    );
    expect(mermaidLines).toContain('state tricky {');
    expect(mermaidLines).toContain('[*] --> idle');
    expect(mermaidLines).toContain('[*] --> slow');
    expect(mermaidLines).toContain('done --> [*]');
  });

  it('draws history states as H and H*, with the default target of the deep one', () => {
    expect(mermaidLines).toContain('state "H" as running_hist');
    expect(mermaidLines).toContain('state "H*" as both_deep');
    expect(mermaidLines).toContain('paused --> running_hist : RESUME');
    expect(mermaidLines).toContain('both_deep --> l2');
  });

  it('labels transitions "Event [guard]" and draws always, multi-target and reenter ones', () => {
    expect(mermaidLines).toContain('idle --> running : START [isFrozen]');
    expect(mermaidLines).toContain('idle --> fast : START [guard]');
    expect(mermaidLines).toContain(
      'idle --> done : always [ok && (!isFrozen || in(#tricky.running))]',
    );
    expect(mermaidLines).toContain('running --> l2 : SPLIT');
    expect(mermaidLines).toContain('running --> r2 : SPLIT');
    expect(mermaidLines).toContain('idle --> idle : SELF (reenter)');
    expect(mermaidLines).toContain('tricky --> idle : RESET (reenter)');
    expect(mermaidLines).toContain('both --> done : onDone');
  });

  it('lists targetless transitions in a note, never as self-loops', () => {
    expect(mermaid).toContain(
      ['    note right of idle', '      PING', '      POKE [!ok]', '    end note'].join('\n'),
    );
    expect(mermaid).not.toMatch(/idle --> idle : (PING|POKE)/);
    expect(mermaid).not.toMatch(/fast --> fast/);
    expect(toMermaid(graph, { actions: true })).toContain('PING / log');
  });

  it('draws transitions crossing a composite border at the top level, siblings in their block', () => {
    const topLevel = mermaid
      .split('\n')
      .filter((line) => /^ {2}\S/.test(line) && line.includes('-->'));
    expect(topLevel).toEqual([
      '  tricky --> idle : RESET (reenter)',
      '  idle --> fast : START [guard]',
      '  running --> l2 : SPLIT',
      '  running --> r2 : SPLIT',
      '  running --> fast : INNER',
      '  paused --> running_hist : RESUME',
      '  paused --> both_deep : RESUME_DEEP [ok]',
      '  both_deep --> l2',
    ]);
  });

  it('gives keywords, repeated keys and odd characters ids Mermaid can read', () => {
    const odd = setup({}).createMachine({
      id: 'odd',
      initial: 'state',
      states: {
        state: { on: { 'user:login': 'a' } },
        a: { initial: 'a', states: { a: {}, 'has space': {} } },
      },
    });
    const text = toMermaid(toMachineGraph(odd));
    expect(lines(text)).toEqual(
      expect.arrayContaining([
        'state "state" as s_state',
        'state a {',
        'state "a" as a_a',
        'state "has space" as a_has_space',
        '[*] --> s_state',
        's_state --> a : user∶login',
      ]),
    );
  });
});

describe('dot diagram', () => {
  it('draws the bank account with a point for the start and a double circle for the end', () => {
    const dot = toDot(toMachineGraph(Account.machine, { name: 'Account' }));
    expect(dot).toContain('digraph "Account" {');
    expect(dot).toContain('"#initial Account" [shape=point, width=0.12, label=""];');
    expect(dot).toContain('"Account.closed" [shape=doublecircle, label="closed"];');
    expect(dot).toContain('"#initial Account" -> "Account.new";');
    expect(dot).toContain('"Account.new" -> "Account.open" [label="Opened"];');
    expect(dot).toContain('<TR><TD><B>open</B></TD></TR><HR/><TR><TD ALIGN="LEFT">Deposited</TD>');
  });

  const dot = toDot(graph);
  const dotLines = lines(dot);

  it('makes compound states clusters, with dashed borders for parallel regions', () => {
    expect(dot).toContain(
      [
        '    subgraph "cluster_tricky.running" {',
        '      label="running";',
        '      style="rounded";',
      ].join('\n'),
    );
    expect(dot).toContain(
      [
        '      subgraph "cluster_tricky.both.left" {',
        '        label="left";',
        '        style="rounded,dashed";',
      ].join('\n'),
    );
    expect(dotLines).toContain('"#initial tricky.both.left" -> "tricky.both.left.l1";');
    expect(dotLines).toContain('"tricky.both.left.l2" [shape=doublecircle, label="l2"];');
  });

  it('draws history states as H and H* circles, the default target dashed', () => {
    expect(dotLines).toContain(
      '"tricky.running.hist" [shape=circle, width=0.4, fixedsize=true, label="H", tooltip="hist (shallow history)"];',
    );
    expect(dotLines).toContain(
      '"tricky.both.deep" [shape=circle, width=0.4, fixedsize=true, label="H*", tooltip="deep (deep history)"];',
    );
    expect(dotLines).toContain('"tricky.both.deep" -> "tricky.both.left.l2" [style=dashed];');
  });

  it('labels edges "Event [guard]" and clips edges of compound states at their border', () => {
    expect(dotLines).toContain(
      '"tricky.idle" -> "#anchor tricky.running" [label="START [isFrozen]", lhead="cluster_tricky.running"];',
    );
    expect(dotLines).toContain(
      '"#anchor tricky.running" -> "tricky.paused" [label="PAUSE", ltail="cluster_tricky.running"];',
    );
    expect(dotLines).toContain(
      '"#anchor tricky.running" -> "tricky.running.fast" [label="INNER"];',
    );
    expect(dotLines).toContain('"tricky.idle" -> "tricky.idle" [label="SELF (reenter)"];');
    expect(dotLines).toContain(
      '"tricky.idle" -> "tricky.done" [label="always [ok && (!isFrozen || in(#tricky.running))]"];',
    );
  });

  it('lists targetless transitions inside their state, never as self-loops', () => {
    expect(dot).toContain(
      '"tricky.idle" [label=<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1"><TR><TD><B>idle</B></TD></TR><HR/><TR><TD ALIGN="LEFT">PING</TD></TR><TR><TD ALIGN="LEFT">POKE [!ok]</TD></TR></TABLE>>];',
    );
    const selfLoops = dotLines.filter((line) => /^"([^"]+)" -> "\1"/.test(line));
    expect(selfLoops).toEqual([
      '"tricky.idle" -> "tricky.idle" [label="SELF (reenter)"];',
      '"tricky.idle" -> "tricky.idle" [label="STAY"];',
    ]);
    const withActions = toDot(graph, { actions: true });
    expect(withActions).toContain('entry / log');
    expect(withActions).toContain('PING / log');
  });

  it('renders to SVG with Graphviz without errors or warnings, showing every state', async () => {
    const viz = await instance();
    for (const machine of [tricky, Account.machine, aggregateLifecycleMachine]) {
      const machineGraph = toMachineGraph(machine);
      for (const actions of [false, true]) {
        const result = viz.render(toDot(machineGraph, { actions }), { format: 'svg' });
        expect(result.errors).toEqual([]);
        expect(result.status).toBe('success');
        for (const node of machineGraph.nodes.filter((n) => n.kind !== 'history')) {
          expect(result.output).toContain(
            `>${node.id === machineGraph.root ? node.id : node.key}<`,
          );
        }
      }
    }
  });
});

describe('machines of unusual shape', () => {
  it('draws a machine that is one state, and one whose root is parallel', async () => {
    const single = setup({}).createMachine({ id: 'single', on: { PING: {} } });
    const singleGraph = toMachineGraph(single);
    expect(singleGraph.nodes.map((node) => node.kind)).toEqual(['atomic']);
    expect(lines(toMermaid(singleGraph))).toEqual(
      expect.arrayContaining(['single', 'note right of single', 'PING', 'end note']),
    );
    expect(toDot(singleGraph)).toContain('<B>single</B></TD></TR><HR/><TR><TD ALIGN="LEFT">PING<');

    const parallel = setup({}).createMachine({
      id: 'par',
      type: 'parallel',
      on: { STOP: '.a.y' },
      states: { a: { initial: 'x', states: { x: { on: { GO: 'y' } }, y: {} } }, b: {} },
    });
    const parallelGraph = toMachineGraph(parallel);
    const mermaid = toMermaid(parallelGraph);
    expect(mermaid).toContain('  state par {\n    state a {\n');
    expect(mermaid).toContain('    }\n    --\n    b\n  }\n  par --> y : STOP\n');
    const dot = toDot(parallelGraph);
    expect(dot).toContain('"par.b" [label="b", style="rounded,dashed"];');
    expect(dot).toContain('"#anchor par" -> "par.a.y" [label="STOP"];');
    for (const g of [singleGraph, parallelGraph]) expect(await toSvg(g)).toContain('<svg');
  });
});

describe('svg diagram', () => {
  const names = (g: MachineGraph) => g.nodes.filter((n) => n.id !== g.root).map((n) => n.key);

  it('draws the bank account and the aggregate actor lifecycle', async () => {
    const account = toMachineGraph(Account.machine, { name: 'Account' });
    const lifecycle = toMachineGraph(aggregateLifecycleMachine, { name: 'AggregateActor' });
    for (const g of [account, lifecycle]) {
      const svg = await toSvg(g);
      expect(svg).toMatch(/^<\?xml[^]*<svg[^]*<\/svg>\s*$/);
      expect(svg).toContain(`>${g.name}</text>`);
      for (const name of names(g)) expect(svg).toContain(`>${name}</text>`);
    }
    expect(await toSvg(account)).toBe(await toSvg(account));
  });

  it('draws every runtime machine', async () => {
    expect(runtimeMachines.map((m) => m.name)).toEqual(['AggregateActor', 'ReactorWorker']);
    for (const { name, machine } of runtimeMachines) {
      expect(await toSvg(toMachineGraph(machine, { name }))).toContain(`>${name}</text>`);
    }
  });
});
