import { createHash } from 'node:crypto';
import type { AnyStateMachine } from 'xstate';

/**
 * A short hash of what decides how events fold into state: the machine's configuration (states,
 * transitions, the source of its inline actions and guards), its implementations, and the event
 * schema versions. Two definitions with the same fingerprint replay events to the same state.
 */
export function machineFingerprint(
  machine: AnyStateMachine,
  eventVersions: Readonly<Record<string, number>>,
): string {
  const seen = new WeakSet<object>();
  const text = JSON.stringify(
    { config: machine.config, implementations: machine.implementations, eventVersions },
    (_key, value: unknown) => {
      if (typeof value === 'function') return `fn:${value.toString()}`;
      if (typeof value === 'object' && value !== null) {
        if (seen.has(value)) return '[seen]';
        seen.add(value);
      }
      return value;
    },
  );
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}
