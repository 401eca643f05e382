import { assign, setup } from 'xstate';
import { z } from 'zod';
import { defineAggregate, type DomainEvents } from '../../runtime/index.js';

const events = {
  TakenOff: z.object({}),
  Landed: z.object({ airport: z.string().regex(/^[A-Z]{3}$/, 'an IATA code such as "CDG"') }),
};

export interface AircraftContext {
  /** Where the aircraft last landed; null before its first landing. */
  airport: string | null;
  /** Flights completed. */
  flights: number;
}

const machine = setup({
  types: {
    context: {} as AircraftContext,
    events: {} as DomainEvents<typeof events>,
  },
}).createMachine({
  id: 'Aircraft',
  initial: 'onGround',
  context: { airport: null, flights: 0 },
  states: {
    onGround: {
      on: { TakenOff: { target: 'flying' } },
    },
    flying: {
      on: {
        Landed: {
          target: 'onGround',
          actions: assign(({ context, event }) => ({
            airport: event.data.airport,
            flights: context.flights + 1,
          })),
        },
      },
    },
  },
});

/**
 * An aircraft takes off and lands. A flying aircraft cannot take off again and a grounded one
 * cannot land: the machine itself refuses those commands with INVALID_TRANSITION.
 */
export const Aircraft = defineAggregate({
  name: 'Aircraft',
  events,
  machine,
  commands: (command) => ({
    takeOff: command(z.object({}), () => ({ type: 'TakenOff', data: {} })),
    land: command(events.Landed, (_state, input) => ({
      events: [{ type: 'Landed', data: { airport: input.airport } }],
      response: { airport: input.airport },
    })),
  }),
});
