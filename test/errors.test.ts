import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  ConflictError,
  DefinitionError,
  DomainError,
  InfrastructureError,
  JetactorError,
  RejectionError,
  errorFromJSON,
  isConflictError,
  isDomainError,
  isInfrastructureError,
  isJetactorError,
  isRejectionError,
} from '../runtime/index.js';

describe('errors', () => {
  it('say whether retrying can help by their kind', () => {
    expect(new RejectionError('VALIDATION_FAILED', 'bad').retryable).toBe(false);
    expect(new DomainError('INSUFFICIENT_FUNDS', 'poor').retryable).toBe(false);
    expect(new DefinitionError('INVALID_NAME', 'bad name').retryable).toBe(false);
    expect(new ConfigError('bad options').retryable).toBe(false);
    expect(new ConflictError('CONCURRENCY_CONFLICT', 'lost').retryable).toBe(true);
    expect(new InfrastructureError('STORE_FAILED', 'down').retryable).toBe(true);
  });

  it('travel as JSON without their cause and come back as the same classes', () => {
    const sent = [
      new RejectionError('WRONG_EXPECTED_VERSION', 'stale', {
        details: { expected: 1, actual: 2 },
      }),
      new DomainError('INSUFFICIENT_FUNDS', 'poor', { balance: 0 }),
      new ConflictError('CONCURRENCY_CONFLICT', 'lost', { cause: new Error('10071') }),
      new InfrastructureError('AGGREGATE_UNAVAILABLE', 'later', { details: { retryAfterMs: 100 } }),
      new DefinitionError('IMPURE_MACHINE', 'impure'),
      new ConfigError('bad options'),
    ];
    const received = sent.map((error) => errorFromJSON(JSON.parse(JSON.stringify(error))));

    expect(JSON.parse(JSON.stringify(sent[2]))).toEqual({
      code: 'CONCURRENCY_CONFLICT',
      message: 'lost',
      kind: 'conflict',
    });
    received.forEach((error, i) => {
      expect(error).toBeInstanceOf(sent[i]?.constructor);
      expect(error.toJSON()).toEqual(sent[i]?.toJSON());
      expect(isJetactorError(error)).toBe(true);
    });
    expect(isRejectionError(received[0])).toBe(true);
    expect(isDomainError(received[1])).toBe(true);
    expect(isConflictError(received[2])).toBe(true);
    expect(isInfrastructureError(received[3])).toBe(true);
    expect(received.map((e) => e.name)).toEqual([
      'RejectionError',
      'DomainError',
      'ConflictError',
      'InfrastructureError',
      'DefinitionError',
      'ConfigError',
    ]);
  });

  it('come back as a plain JetactorError when the code is unknown and not a rejection', () => {
    const error = errorFromJSON({ code: 'MARTIANS', message: '?', kind: 'infrastructure' });
    expect(error).toBeInstanceOf(JetactorError);
    expect(error.retryable).toBe(true);
  });
});
