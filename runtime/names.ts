/**
 * A NATS subject token: no dots, wildcards or whitespace, not empty. Aggregate ids, domain,
 * aggregate, command and event names all become subject tokens.
 */
const subjectToken = /^[^\s.*>]+$/u;

/** The first character a subject token cannot hold (made once: a literal is a new object each time). */
const notInSubjectToken = /[\s.*>]/u;

/** Names chosen by developers (domains, aggregates, commands, events) are plain identifiers. */
const identifier = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** The longest aggregate id accepted, in characters. */
export const maxIdLength = 256;

/** True when `value` can be used as one NATS subject token. */
export function isSubjectToken(value: string): boolean {
  return value.length > 0 && value.length <= maxIdLength && subjectToken.test(value);
}

/** True when `value` is a name the runtime accepts for a domain, aggregate, command or event. */
export function isIdentifier(value: string): boolean {
  return value.length <= 64 && identifier.test(value);
}

/** Why `value` is not a subject token, for error messages; undefined when it is one. */
export function whyNotSubjectToken(value: string): string | undefined {
  if (value.length === 0) return 'it is empty';
  if (value.length > maxIdLength)
    return `it is ${value.length} characters long (at most ${maxIdLength})`;
  const bad = notInSubjectToken.exec(value);
  if (bad) return `it contains ${JSON.stringify(bad[0])} (no ".", "*", ">" or whitespace)`;
  return undefined;
}
