/**
 * `list` with `item` at its end: a new one-element array when `list` is empty, else `list`
 * itself. The first `push` on an empty array reserves 17 slots; on paths taken once per command
 * (most batches hold one command with one event) the literal is a tenth of that.
 */
export function pushed<T>(list: T[], item: T): T[] {
  if (list.length === 0) return [item];
  list.push(item);
  return list;
}
