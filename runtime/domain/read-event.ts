import type { AnyAggregateDefinition } from './define-aggregate.js';
import type { StoredEvent } from './events.js';

/** A stored event made current, or why it cannot be. */
export type ReadEventResult = { ok: true; event: StoredEvent } | { ok: false; why: string };

/**
 * Makes a stored event current: upcasts its payload from the schema version it was written with
 * to the aggregate's current one, then validates it against the current schema. Used wherever
 * events are read (replay, reactors), so old events never reach domain code in an old shape.
 */
export function readEvent(definition: AnyAggregateDefinition, raw: StoredEvent): ReadEventResult {
  if (typeof raw !== 'object' || raw === null || typeof raw.type !== 'string') {
    return { ok: false, why: 'the event has no type' };
  }
  const schema = Object.hasOwn(definition.events, raw.type)
    ? definition.events[raw.type]
    : undefined;
  if (schema === undefined) {
    return { ok: false, why: `unknown event type ${JSON.stringify(raw.type)}` };
  }
  const current = definition.eventVersions[raw.type] ?? 1;
  const written = raw.meta?.schemaVersion ?? 1;
  if (!Number.isInteger(written) || written < 1 || written > current) {
    return {
      ok: false,
      why: `"${raw.type}" was written with schema version ${JSON.stringify(written)}, but this definition knows versions 1 to ${current}; deploy the newer definition`,
    };
  }
  let data = raw.data;
  const upcasters = written < current ? (definition.upcasters[raw.type] ?? []) : [];
  for (let version = written; version < current; version++) {
    const upcast = upcasters[version - 1];
    if (upcast === undefined) break;
    try {
      data = upcast(data);
    } catch (error) {
      return {
        ok: false,
        why: `upcasting "${raw.type}" from version ${version} to ${version + 1} threw: ${String(error)}`,
      };
    }
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    return {
      ok: false,
      why: `"${raw.type}" data fails its schema: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    };
  }
  let meta = raw.meta;
  if (current !== 1) {
    meta = { ...raw.meta, schemaVersion: current };
  } else if (raw.meta.schemaVersion !== undefined) {
    const { schemaVersion: _written, ...rest } = raw.meta;
    meta = rest;
  }
  // Without a schema version to change, the meta read is the event's (the caller's own copy).
  return { ok: true, event: { type: raw.type, data: parsed.data, meta } };
}
