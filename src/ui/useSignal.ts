/** Re-render a function component when a Lumino signal fires. */
import * as React from 'react';
import { ISignal } from '@lumino/signaling';

/**
 * How many times each signal fired since a component first watched it. Counting starts at
 * that first render (one connection per signal, dropped with the sender's
 * `Signal.clearData`), so an emission that comes after a component rendered and before
 * its subscription (effects run after the render, a kernel reply can land in between) is
 * not missed: React compares the count when it subscribes and renders again.
 */
const counters = new WeakMap<ISignal<any, any>, { count: number }>();

function counterOf(signal: ISignal<any, any>): { count: number } {
  let counter = counters.get(signal);
  if (!counter) {
    const created = { count: 0 };
    signal.connect(() => {
      created.count++;
    });
    counters.set(signal, created);
    counter = created;
  }
  return counter;
}

/** Subscribe to `signal` for the component's lifetime; re-renders on each emission. */
export function useSignal<T>(signal: ISignal<T, any>): void {
  const counter = counterOf(signal);
  const subscribe = React.useCallback(
    (changed: () => void) => {
      const onEmit = () => {
        // counted here too: the shared count may have been disconnected by a
        // Signal.clearData of the sender (only changes of the count matter)
        counter.count++;
        changed();
      };
      signal.connect(onEmit);
      return () => {
        signal.disconnect(onEmit);
      };
    },
    [signal, counter]
  );
  React.useSyncExternalStore(subscribe, () => counter.count);
}
