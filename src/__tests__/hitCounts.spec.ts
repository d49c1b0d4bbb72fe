import { describeHits, totalHits } from '../breakpoints/hitCounts';
import { IBreakpointState } from '../kernel/protocol';

const state = (hits: number, total_hits: number): IBreakpointState => ({
  id: 'b',
  state: 'active',
  message: '',
  field: '',
  hits,
  total_hits,
  file: '/tmp/ipykernel_1/1.py',
  line: 2,
  function: null
});

describe('hit counts', () => {
  it('shows the total across edits, and the count since the last change', () => {
    expect(totalHits(state(1, 3))).toBe(3);
    expect(describeHits(state(1, 3))).toBe('3 hits (1 since the last change)');
    expect(describeHits(state(1, 1))).toBe('1 hit');
    expect(totalHits(undefined)).toBe(0);
  });
});
