import { setup } from 'xstate';
import { describe, expect, it } from 'vitest';
import { Account } from '../../domains/bank/index.js';
import { activeStateIds, toMachineGraph } from '../../runtime/index.js';
import { StateCounter } from '../../runtime/inspector/active-states.js';

const nested = setup({}).createMachine({
  id: 'm',
  initial: 'flying',
  states: {
    parked: {},
    flying: {
      initial: 'climb',
      states: { climb: {}, cruise: {} },
    },
    both: {
      type: 'parallel',
      states: {
        left: { initial: 'l1', states: { l1: {}, l2: {} } },
        right: { initial: 'r1', states: { r1: {}, r2: {} } },
      },
    },
    done: { type: 'final' },
  },
});

describe('active states', () => {
  it('maps an atomic state value to its node id', () => {
    const graph = toMachineGraph(Account.machine, { name: 'Account' });
    expect(activeStateIds(graph, 'open')).toEqual(['Account.open']);
    expect(activeStateIds(graph, 'closed')).toEqual(['Account.closed']);
  });

  it('lists a nested state with its parents, parents first', () => {
    const graph = toMachineGraph(nested);
    expect(activeStateIds(graph, { flying: 'cruise' })).toEqual(['m.flying', 'm.flying.cruise']);
  });

  it('lists every region of a parallel state', () => {
    const graph = toMachineGraph(nested);
    expect(activeStateIds(graph, { both: { left: 'l2', right: 'r1' } })).toEqual([
      'm.both',
      'm.both.left',
      'm.both.left.l2',
      'm.both.right',
      'm.both.right.r1',
    ]);
  });

  it('maps the value of a running actor of the machine', () => {
    const graph = toMachineGraph(nested);
    const value = nested.resolveState({ value: { both: { left: 'l1', right: 'r2' } } }).value;
    expect(activeStateIds(graph, value)).toContain('m.both.right.r2');
  });

  it('skips keys the graph does not have', () => {
    const graph = toMachineGraph(nested);
    expect(activeStateIds(graph, 'nowhere')).toEqual([]);
    expect(activeStateIds(graph, { flying: 'nowhere' })).toEqual(['m.flying']);
    expect(activeStateIds(graph, 42)).toEqual([]);
  });

  it('counts actors on every active node', () => {
    const counter = new StateCounter(toMachineGraph(nested));
    const counts: Record<string, number> = {};
    counter.add(counts, { flying: 'climb' });
    counter.add(counts, { flying: 'cruise' });
    counter.add(counts, 'parked');
    expect(counts).toEqual({
      'm.flying': 2,
      'm.flying.climb': 1,
      'm.flying.cruise': 1,
      'm.parked': 1,
    });
  });
});
