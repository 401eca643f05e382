/**
 * The keys of `options` that are not in `known`, so a misspelt option (`prefx`, `deadletter`) is
 * refused with an error naming it instead of being ignored. Empty when `options` is not an object.
 */
export function unknownOptions(options: unknown, known: readonly string[]): string[] {
  if (typeof options !== 'object' || options === null) return [];
  return Object.keys(options).filter((key) => !known.includes(key));
}

/** `unknown option "prefx"; the known ones are connection, prefix, replicas, codec`. */
export function describeUnknownOptions(
  unknown: readonly string[],
  known: readonly string[],
): string {
  const names = unknown.map((key) => JSON.stringify(key)).join(', ');
  return `unknown option${unknown.length === 1 ? '' : 's'} ${names}; the known ones are ${known.join(', ')}`;
}
