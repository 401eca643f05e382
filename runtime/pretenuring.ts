import { setFlagsFromString } from 'node:v8';

/** `--allocation-site-pretenuring` or `--no-allocation-site-pretenuring`, as Node accepts them. */
const PRETENURING_FLAG = /^--(no-)?allocation[-_]site[-_]pretenuring$/;

/**
 * Turns off V8's allocation-site pretenuring for this process, unless node was started with
 * `--allocation-site-pretenuring` or `--no-allocation-site-pretenuring`, which is then left as
 * given. Returns whether it turned it off.
 *
 * V8 allocates the objects of an allocation site (an object literal in a function, say) directly
 * in the old generation once most of them were still alive at a scavenge, and keeps to that
 * decision. Under load a command waits for its append long enough for that, so V8 decides it for a
 * node's per-command objects (the command, its input, its envelope, the decide context, …), which
 * are all dead a few milliseconds later: from then on they fill the old generation, collected by
 * mark-compacts instead of scavenges. Measured in a node at 10k commands/s: the old generation
 * grew by 14 MB/s with pretenuring and 6 MB/s without; end to end, the node spent less CPU per
 * command without it (see docs/performance.md).
 *
 * `jetactor` (the CLI) calls it when it starts. A process that hosts nodes itself (`createNode`)
 * can call it once, as early as it can; it changes the collector of the whole process, so the
 * runtime does not call it for you there. Decisions V8 made before the call stay.
 */
export function disablePretenuring(): boolean {
  if (process.execArgv.some((arg) => PRETENURING_FLAG.test(arg))) return false;
  setFlagsFromString('--no-allocation-site-pretenuring');
  return true;
}
