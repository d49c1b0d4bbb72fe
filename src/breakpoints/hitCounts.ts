/**
 * A breakpoint's hit count as a user reads it: the total over every version of the
 * breakpoint (edits and page loads re-set it in the kernel, and the capture list still
 * shows the earlier hits), and the count since its last change when that differs.
 */
import { IBreakpointState } from '../kernel/protocol';

/** Hits of every version of the breakpoint (kernels before `total_hits`: `hits`). */
export function totalHits(state: IBreakpointState | undefined): number {
  if (!state) {
    return 0;
  }
  return typeof state.total_hits === 'number'
    ? Math.max(state.total_hits, state.hits)
    : state.hits;
}

/** `5 hits` or `5 hits (2 since the last change)`. */
export function describeHits(state: IBreakpointState | undefined): string {
  const total = totalHits(state);
  const since = state?.hits ?? 0;
  const text = `${total} hit${total === 1 ? '' : 's'}`;
  return since !== total ? `${text} (${since} since the last change)` : text;
}
