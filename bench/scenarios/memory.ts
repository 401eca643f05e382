import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startBenchServer } from '../bench-server.js';
import { contenderNames } from '../contenders/start-contenders.js';
import type { MemoryChildResult } from '../memory-child.js';
import { atMost, median } from '../results.js';
import type { Scenario, ScenarioContext } from '../scenario.js';

const NAME = 'memory';
const run = promisify(execFile);
const child = fileURLToPath(new URL('../memory-child.js', import.meta.url));

/**
 * Memory of idle actors: a child process (`--expose-gc`) opens 100k accounts through a node on
 * JetStream and keeps their actors alive; heap after a full GC, minus the heap before, divided by
 * the actors. A second child measures bare XState actors of the same machine for reference.
 */
export const memory: Scenario = {
  name: NAME,
  title: '100k active idle aggregates: heap per actor',
  async run(context: ScenarioContext): Promise<void> {
    const { idleActors: actors, reps } = context.options;
    const bench = await startBenchServer(NAME);
    try {
      const jetactor: MemoryChildResult[] = [];
      const xstate: MemoryChildResult[] = [];
      for (let rep = 1; rep <= reps; rep++) {
        context.progress(`${NAME}: run ${rep}/${reps}: ${actors} idle actors in a child process`);
        const measured = await measure('jetactor', bench.server.url, actors);
        if (measured.active !== actors) {
          throw new Error(`${measured.active ?? 0} actors alive, expected ${actors}`);
        }
        jetactor.push(measured);
        xstate.push(await measure('xstate', '-', actors));
        context.progress(
          `${NAME}: run ${rep}/${reps}: ${(measured.bytesPerActor / 1024).toFixed(2)} KB per jetactor actor, ${((xstate.at(-1)?.bytesPerActor ?? 0) / 1024).toFixed(2)} KB per bare XState actor`,
        );
      }
      const perActor = median(jetactor.map((r) => r.bytesPerActor / 1024));
      context.add({
        scenario: NAME,
        contender: contenderNames.inProcess,
        status: 'measured',
        unit: 'KB/actor',
        value: perActor,
        values: jetactor.map((r) => r.bytesPerActor / 1024),
        checks: [atMost('≤ 6 KB', perActor, 6)],
        note: `${actors} opened accounts, actors alive and idle, JetStream store; KB = 1024 bytes`,
        extra: { runs: jetactor },
      });
      context.add({
        scenario: NAME,
        contender: 'bare XState actor (reference)',
        status: 'measured',
        unit: 'KB/actor',
        value: median(xstate.map((r) => r.bytesPerActor / 1024)),
        values: xstate.map((r) => r.bytesPerActor / 1024),
        checks: [],
        note: 'createActor(Account.machine).start(), nothing else',
        extra: { runs: xstate },
      });
    } finally {
      await bench.close();
    }
  },
};

async function measure(
  mode: 'jetactor' | 'xstate',
  url: string,
  actors: number,
): Promise<MemoryChildResult> {
  const { stdout } = await run(
    process.execPath,
    ['--expose-gc', child, mode, url, String(actors)],
    {
      maxBuffer: 1 << 20,
      timeout: 300_000,
    },
  );
  const line = stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(line) as MemoryChildResult;
}
