/** Re-render a function component when a Lumino signal fires. */
import * as React from 'react';
import { ISignal } from '@lumino/signaling';

/** Subscribe to `signal` for the component's lifetime; re-renders on each emission. */
export function useSignal<T>(signal: ISignal<T, any>): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => {
    const rerender = () => setTick(t => t + 1);
    signal.connect(rerender);
    return () => {
      signal.disconnect(rerender);
    };
  }, [signal]);
}
