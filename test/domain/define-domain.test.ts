import { createMachine } from 'xstate';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  DefinitionError,
  createNode,
  defineAggregate,
  defineDomain,
  defineReactor,
  isDefinitionError,
  type JetactorError,
} from '../../runtime/index.js';
import { Account } from '../../domains/bank/index.js';
import { Aircraft } from '../../domains/flight/index.js';
import { silentLogger } from '../fixtures/test-support.js';

function definitionErrorOf(define: () => unknown): JetactorError {
  try {
    define();
  } catch (error) {
    expect(error).toBeInstanceOf(DefinitionError);
    expect(isDefinitionError(error)).toBe(true);
    return error as DefinitionError;
  }
  return expect.unreachable('expected a DefinitionError');
}

function aggregateNamed(name: string) {
  return defineAggregate({
    name,
    events: { Happened: z.object({}) },
    machine: createMachine({ on: { Happened: {} } }),
    commands: (command) => ({
      happen: command(z.object({}), () => ({ type: 'Happened', data: {} })),
    }),
  });
}

const audit = defineReactor({
  name: 'audit',
  aggregates: [Account],
  on: { 'Account.Opened': () => undefined },
});

describe('defineDomain', () => {
  it('groups aggregates by name with their reactors, as frozen data', () => {
    const domain = defineDomain({ name: 'bank', aggregates: [Account], reactors: [audit] });

    expect(domain.kind).toBe('domain');
    expect(domain.name).toBe('bank');
    expect(domain.aggregates).toEqual({ Account });
    expect(domain.reactors).toEqual([audit]);
    expect(Object.isFrozen(domain)).toBe(true);
    expect(Object.isFrozen(domain.aggregates)).toBe(true);
    expect(defineDomain({ name: 'flight', aggregates: [Aircraft] }).reactors).toEqual([]);
  });

  it.each(['', 'my bank', 'bank.eu', '9bank', 'bank>', 'b'.repeat(65)])(
    'refuses the domain name %j with INVALID_NAME',
    (name) => {
      const error = definitionErrorOf(() => defineDomain({ name, aggregates: [Account] }));
      expect(error.code).toBe('INVALID_NAME');
      expect(error.message).toContain(JSON.stringify(name));
    },
  );

  it('refuses a domain without aggregates, or with things not made by defineAggregate', () => {
    const empty = definitionErrorOf(() => defineDomain({ name: 'bank', aggregates: [] }));
    expect(empty.code).toBe('INVALID_DEFINITION');
    expect(empty.message).toContain('has no aggregates');

    const stranger = definitionErrorOf(() =>
      defineDomain({ name: 'bank', aggregates: [{ name: 'Account' } as never] }),
    );
    expect(stranger.code).toBe('INVALID_DEFINITION');
    expect(stranger.message).toContain('must be made with defineAggregate');

    const notReactor = definitionErrorOf(() =>
      defineDomain({ name: 'bank', aggregates: [Account], reactors: [{ name: 'x' } as never] }),
    );
    expect(notReactor.code).toBe('INVALID_DEFINITION');
  });

  it('refuses two aggregates or two reactors with the same name, with DUPLICATE_NAME', () => {
    const aggregates = definitionErrorOf(() =>
      defineDomain({ name: 'bank', aggregates: [Account, aggregateNamed('Account')] }),
    );
    expect(aggregates.code).toBe('DUPLICATE_NAME');
    expect(aggregates.message).toContain('two aggregates named "Account"');

    const reactors = definitionErrorOf(() =>
      defineDomain({ name: 'bank', aggregates: [Account], reactors: [audit, audit] }),
    );
    expect(reactors.code).toBe('DUPLICATE_NAME');
    expect(reactors.message).toContain('two reactors named "audit"');
  });

  it('treats names that are also Object properties as ordinary names', () => {
    const domain = defineDomain({
      name: 'odd',
      aggregates: [aggregateNamed('constructor'), aggregateNamed('toString')],
    });
    expect(Object.keys(domain.aggregates)).toEqual(['constructor', 'toString']);
  });

  it('refuses a reactor handling events of an aggregate outside the domain, with UNDECLARED_EVENT', () => {
    const tower = defineReactor({
      name: 'tower',
      aggregates: [Aircraft],
      on: { 'Aircraft.TakenOff': () => undefined },
    });
    const error = definitionErrorOf(() =>
      defineDomain({ name: 'bank', aggregates: [Account], reactors: [tower] }),
    );
    expect(error.code).toBe('UNDECLARED_EVENT');
    expect(error.message).toContain('"Aircraft.TakenOff"');
  });

  it('cannot be hosted twice by one node (DUPLICATE_NAME)', () => {
    const again = defineDomain({ name: 'bank', aggregates: [aggregateNamed('Ledger')] });
    const error = definitionErrorOf(() =>
      createNode({
        domains: [defineDomain({ name: 'bank', aggregates: [Account] }), again],
        logger: silentLogger,
      }),
    );
    expect(error.code).toBe('DUPLICATE_NAME');
    expect(error.message).toContain('"bank"');
  });
});

describe('defineReactor', () => {
  it('retries 5 times from 100 ms unless told otherwise', () => {
    expect(audit.retry).toEqual({ attempts: 5, backoffMs: 100, maxBackoffMs: 30_000 });
    const patient = defineReactor({
      name: 'patient',
      aggregates: [Account],
      on: {},
      retry: { attempts: 9 },
    });
    expect(patient.retry).toEqual({ attempts: 9, backoffMs: 100, maxBackoffMs: 30_000 });
    expect(Object.isFrozen(patient)).toBe(true);
    expect(Object.isFrozen(patient.retry)).toBe(true);
  });

  it('runs 16 aggregates at once and skips past dead letters unless told otherwise', () => {
    expect(audit).toMatchObject({ concurrency: 16, deadLetters: 'skip' });
    const strict = defineReactor({
      name: 'strict',
      aggregates: [Account],
      on: {},
      concurrency: 2,
      deadLetters: 'wait',
    });
    expect(strict).toMatchObject({ concurrency: 2, deadLetters: 'wait' });
  });

  it('refuses invalid settings with INVALID_DEFINITION naming each one', () => {
    const error = definitionErrorOf(() =>
      defineReactor({
        name: 'audit',
        aggregates: [Account],
        on: {},
        concurrency: 0,
        retry: { attempts: 1.5 },
        deadLetters: 'drop' as never,
      }),
    );
    expect(error.code).toBe('INVALID_DEFINITION');
    expect(error.message).toContain('concurrency 0');
    expect(error.message).toContain('retry.attempts 1.5');
    expect(error.message).toContain('deadLetters "drop"');
  });

  it('refuses an invalid name with INVALID_NAME', () => {
    const error = definitionErrorOf(() =>
      defineReactor({ name: 'the auditor', aggregates: [Account], on: {} }),
    );
    expect(error.code).toBe('INVALID_NAME');
  });

  it('refuses a handler for an event its aggregates do not declare, at compile time too', () => {
    const error = definitionErrorOf(() =>
      defineReactor({
        name: 'audit',
        aggregates: [Account],
        // @ts-expect-error: Account has no event "Robbed"
        on: { 'Account.Robbed': () => undefined },
      }),
    );
    expect(error.code).toBe('UNDECLARED_EVENT');
    expect(error.message).toContain('"Account.Robbed"');
    expect(error.message).toContain('Account.Deposited');
  });

  it('refuses a handler that is not a function with INVALID_DEFINITION', () => {
    const error = definitionErrorOf(() =>
      defineReactor({
        name: 'audit',
        aggregates: [Account],
        on: { 'Account.Opened': 'log it' as never },
      }),
    );
    expect(error.code).toBe('INVALID_DEFINITION');
  });
});
