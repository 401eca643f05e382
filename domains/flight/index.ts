import { defineDomain } from '../../runtime/index.js';
import { Aircraft } from './aircraft.js';

export { Aircraft } from './aircraft.js';

/** The flight domain: aircraft taking off and landing. */
export const flight = defineDomain({ name: 'flight', aggregates: [Aircraft] });

export default flight;
