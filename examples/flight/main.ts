/**
 * The flight example: an aircraft takes off and lands, a control tower reacts to take-offs.
 * Runs on the embedded in-memory store; no server needed.
 *
 *   npm run build && node dist/examples/flight/main.js
 */
import { Aircraft } from '../../domains/flight/index.js';
import { createLogger, createNode, defineDomain, defineReactor } from '../../runtime/index.js';

const departures: string[] = [];
let towerSawTakeOff: () => void = () => undefined;
const tower = new Promise<void>((resolve) => (towerSawTakeOff = resolve));

/** The control tower notes every take-off, after it is stored. */
const controlTower = defineReactor({
  name: 'control-tower',
  aggregates: [Aircraft],
  on: {
    'Aircraft.TakenOff': (event) => {
      departures.push(event.meta.aggregateId);
      console.log(`tower: ${event.meta.aggregateId} took off (version ${event.meta.version})`);
      towerSawTakeOff();
    },
  },
});

const flight = defineDomain({ name: 'flight', aggregates: [Aircraft], reactors: [controlTower] });
const node = createNode({ domains: [flight], logger: createLogger('warn') });
await node.start();

const aircraft = node.aggregate(Aircraft, 'F-GKXA');
const takeOff = await aircraft.takeOff({});
console.log('takeOff →', { version: takeOff.version, events: takeOff.events.map((e) => e.type) });

try {
  await aircraft.takeOff({});
} catch (error) {
  console.log('takeOff again →', (error as { code: string }).code, '-', (error as Error).message);
}

const landed = await aircraft.land({ airport: 'CDG' });
console.log('land →', { version: landed.version, response: landed.response });

const state = await node.view(Aircraft, 'F-GKXA');
console.log('state:', { value: state.value, context: state.context, version: state.version });

console.log('events:');
for await (const commit of node.store.read({
  domain: 'flight',
  aggregate: 'Aircraft',
  id: 'F-GKXA',
})) {
  for (const event of commit.events) {
    console.log(
      `  v${event.meta.version} ${event.type}`,
      JSON.stringify(event.data),
      new Date(event.meta.timestamp).toISOString(),
    );
  }
}

await tower;
await node.stop();
console.log(`departures seen by the tower: ${departures.join(', ')}`);
