import type { z } from 'zod';
import { DocumentBatch } from './document-batch.js';
import type { DocumentReader, DocumentWriter } from './read-model.js';
import {
  fenced,
  runAll,
  type ApplyOptions,
  type ProjectionUnit,
  type ReadModelStore,
  type RunHandler,
} from './read-model-store.js';

/**
 * A document read model in memory: what a `kvReadModel` projection uses on a node without NATS
 * (the in-memory event store). Same API and batches as the KV store; nothing survives the process.
 */
export class InMemoryReadModelStore<D = unknown> implements ReadModelStore<
  { documents: DocumentWriter<D> },
  DocumentReader<D>
> {
  readonly kind = 'memory' as const;
  readonly location: string;
  readonly #schema: z.ZodType<D> | undefined;
  #documents = new Map<string, string>();
  #position = 0;
  #marks = new Set<number>();

  /** `location` names it in logs. */
  constructor(location: string, schema?: z.ZodType<D>) {
    this.location = location;
    this.#schema = schema;
  }

  open(): Promise<number> {
    return Promise.resolve(this.#position);
  }

  async apply(
    units: readonly ProjectionUnit[],
    run: RunHandler<{ documents: DocumentWriter<D> }>,
    options: ApplyOptions,
  ): Promise<'applied' | 'already'> {
    if (options.expected !== this.#position) {
      throw fenced(this.location, options.expected, this.#position);
    }
    if (options.mark !== undefined && this.#marks.has(options.mark)) return 'already';
    const batch = new DocumentBatch<D>(
      (key) => Promise.resolve(this.#documents.get(key)),
      this.#schema,
    );
    await runAll(units, run, { documents: batch });
    if (options.expected !== this.#position) {
      throw fenced(this.location, options.expected, this.#position);
    }
    for (const [key, text] of batch.writes) {
      if (text === null) this.#documents.delete(key);
      else this.#documents.set(key, text);
    }
    this.#position = options.to;
    if (options.mark !== undefined) this.#marks.add(options.mark);
    return 'applied';
  }

  checkpoint(): Promise<number> {
    return Promise.resolve(this.#position);
  }

  reader(): DocumentReader<D> {
    return {
      get: (key) => {
        const text = this.#documents.get(key);
        return Promise.resolve(text === undefined ? undefined : (JSON.parse(text) as D));
      },
      keys: () => Promise.resolve([...this.#documents.keys()]),
      list: () =>
        Promise.resolve(
          [...this.#documents].map(([key, text]) => ({ key, document: JSON.parse(text) as D })),
        ),
    };
  }

  drop(): Promise<void> {
    this.#documents = new Map();
    this.#position = 0;
    this.#marks = new Set();
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
