import { CaptureListModel } from '../captures/captureList';
import { describeBar, logHeights } from '../gradients/LayerStrip';
import { ICaptureBrief } from '../kernel/protocol';

function brief(id: number, grads?: ICaptureBrief['grads']): ICaptureBrief {
  return {
    id,
    kind: 'call',
    name: 'forward',
    qualname: 'Attention.forward',
    file: '/models/vit.py',
    line: 10,
    time: 1700000000 + id,
    thread: 'MainThread',
    nbytes: 0,
    ...(grads ? { grads } : {})
  };
}

describe('captures_updated', () => {
  it('replaces the rows of known captures and ignores unknown ids', () => {
    const list = new CaptureListModel();
    list.reset([brief(1, { received: 0, asked: 2 }), brief(2)]);
    let changes = 0;
    list.changed.connect(() => changes++);
    list.update(brief(1, { received: 2, asked: 2 }), brief(9));
    expect(list.get(1)!.grads).toEqual({ received: 2, asked: 2 });
    expect(list.get(9)).toBeUndefined();
    expect(list.view.map(b => b.id)).toEqual([2, 1]);
    expect(changes).toBe(1);
    list.update(brief(9));
    expect(changes).toBe(1); // nothing known changed: no re-render
  });
});

describe('layer strip', () => {
  it('scales norms logarithmically, keeping the smallest bar visible', () => {
    const h = logHeights([1e-6, 1e-3, 1, undefined, 0]);
    expect(h[2]).toBe(1);
    expect(h[0]).toBeCloseTo(0.08);
    expect(h[1]).toBeCloseTo(0.08 + 0.92 * 0.5);
    expect(h[3]).toBe(0);
    expect(h[4]).toBe(0);
    expect(logHeights([2, 2])).toEqual([1, 1]);
  });

  it('says what a bar holds, or why it has no gradient', () => {
    expect(
      describeBar(
        {
          id: 4,
          present: true,
          flag: 'vanishing',
          norm: 1.5e-9,
          mean_abs: 2e-10,
          max_abs: 1e-9,
          nan: 0,
          inf: 1
        },
        2
      )
    ).toBe(
      'layer 2 (#4): ‖g‖₂ 1.50e-9 · mean |g| 2.00e-10 · max |g| 1.00e-9 · NaN 0 · Inf 1 · vanishing'
    );
    expect(
      describeBar(
        { id: 5, present: false, flag: '', reason: 'pending: no backward' },
        0
      )
    ).toBe('layer 0 (#5): no gradient: pending: no backward');
  });
});
