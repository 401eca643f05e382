import type { z } from 'zod';
import { describeError } from '../errors.js';
import type { DocumentWriter } from './read-model.js';

/** The longest document key, in characters. */
export const maxDocumentKeyLength = 1024;

/**
 * The writes of one batch of a document read model, kept as JSON text until the batch is stored:
 * handlers read their own writes, documents are plain JSON (checked on `put`), and a handler that
 * changes an object it got from `get` without `put` changes nothing.
 */
export class DocumentBatch<D> implements DocumentWriter<D> {
  /** Key → JSON text of the document, or null for a delete; in the order first written. */
  readonly writes = new Map<string, string | null>();
  readonly #read: (key: string) => Promise<string | undefined>;
  readonly #schema: z.ZodType<D> | undefined;
  #bytes = 0;

  /** `read` gives the stored JSON text of a key. */
  constructor(
    read: (key: string) => Promise<string | undefined>,
    schema: z.ZodType<D> | undefined,
  ) {
    this.#read = read;
    this.#schema = schema;
  }

  /** Size of the writes so far, in bytes of JSON text (roughly). */
  get bytes(): number {
    return this.#bytes;
  }

  async get(key: string): Promise<D | undefined> {
    checkKey(key);
    const text = this.writes.has(key) ? this.writes.get(key) : await this.#read(key);
    return text === null || text === undefined ? undefined : (JSON.parse(text) as D);
  }

  put(key: string, document: D): Promise<void> {
    checkKey(key);
    let value: unknown = document;
    if (this.#schema !== undefined) {
      const parsed = this.#schema.safeParse(document);
      if (!parsed.success) {
        throw new Error(
          `document ${JSON.stringify(key)} fails the read model's document schema: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(document)'}: ${i.message}`).join('; ')}`,
        );
      }
      value = parsed.data;
    }
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (error) {
      throw new Error(`document ${JSON.stringify(key)} is not JSON: ${describeError(error)}`, {
        cause: error,
      });
    }
    if (text === undefined) {
      throw new Error(`document ${JSON.stringify(key)} is ${String(value)}; put a JSON value`);
    }
    this.#set(key, text);
    return Promise.resolve();
  }

  delete(key: string): Promise<void> {
    checkKey(key);
    this.#set(key, null);
    return Promise.resolve();
  }

  #set(key: string, text: string | null): void {
    this.#bytes += key.length + (text?.length ?? 0) + 8;
    this.writes.delete(key);
    this.writes.set(key, text);
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > maxDocumentKeyLength) {
    throw new Error(
      `document key ${JSON.stringify(key)} is not valid: use a string of 1 to ${maxDocumentKeyLength} characters`,
    );
  }
}
