import { IllegalStateError, type Command, type Event } from '@event-driven-io/emmett';

/**
 * The bank domain of domains/bank written as Emmett's documentation recommends: commands and
 * events as types, a pure decider (`decide`, `evolve`, `initialState`). The same rules as the
 * jetactor Account: deposits while open or frozen, withdrawals within the overdraft limit while
 * open, closing at a zero balance.
 */
export type AccountEvent =
  | Event<'Opened', { owner: string; overdraftLimit: number }>
  | Event<'Deposited', { amount: number }>
  | Event<'Withdrawn', { amount: number }>
  | Event<'Frozen', { reason: string }>
  | Event<'Unfrozen', Record<string, never>>
  | Event<'Closed', Record<string, never>>;

export type AccountCommand =
  | Command<'Open', { owner: string; overdraftLimit: number }>
  | Command<'Deposit', { amount: number }>
  | Command<'Withdraw', { amount: number }>
  | Command<'Freeze', { reason: string }>
  | Command<'Unfreeze', Record<string, never>>
  | Command<'Close', Record<string, never>>;

export interface Account {
  status: 'new' | 'open' | 'frozen' | 'closed';
  owner: string;
  balance: number;
  overdraftLimit: number;
}

export const initialState = (): Account => ({
  status: 'new',
  owner: '',
  balance: 0,
  overdraftLimit: 0,
});

export const evolve = (state: Account, event: AccountEvent): Account => {
  switch (event.type) {
    case 'Opened':
      return { ...state, status: 'open', ...event.data };
    case 'Deposited':
      return { ...state, balance: state.balance + event.data.amount };
    case 'Withdrawn':
      return { ...state, balance: state.balance - event.data.amount };
    case 'Frozen':
      return { ...state, status: 'frozen' };
    case 'Unfrozen':
      return { ...state, status: 'open' };
    case 'Closed':
      return { ...state, status: 'closed' };
  }
};

export const decide = (command: AccountCommand, state: Account): AccountEvent => {
  switch (command.type) {
    case 'Open':
      if (state.status !== 'new') throw new IllegalStateError('Account is already open');
      return { type: 'Opened', data: command.data };
    case 'Deposit':
      if (state.status !== 'open' && state.status !== 'frozen') {
        throw new IllegalStateError(`Cannot deposit into a ${state.status} account`);
      }
      return { type: 'Deposited', data: command.data };
    case 'Withdraw': {
      if (state.status !== 'open') {
        throw new IllegalStateError(`Cannot withdraw from a ${state.status} account`);
      }
      const available = state.balance + state.overdraftLimit;
      if (command.data.amount > available) {
        throw new IllegalStateError(`Cannot withdraw ${command.data.amount}: at most ${available}`);
      }
      return { type: 'Withdrawn', data: command.data };
    }
    case 'Freeze':
      if (state.status !== 'open') throw new IllegalStateError('Only an open account freezes');
      return { type: 'Frozen', data: command.data };
    case 'Unfreeze':
      if (state.status !== 'frozen') throw new IllegalStateError('The account is not frozen');
      return { type: 'Unfrozen', data: {} };
    case 'Close':
      if (state.status !== 'open' || state.balance !== 0) {
        throw new IllegalStateError('Only an open account with a zero balance closes');
      }
      return { type: 'Closed', data: {} };
  }
};
