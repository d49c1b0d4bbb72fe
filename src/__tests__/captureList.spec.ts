import {
  CaptureListModel,
  matcher,
  EMPTY_FILTER
} from '../captures/captureList';
import { CaptureKind, ICaptureBrief } from '../kernel/protocol';

function brief(
  id: number,
  qualname: string,
  kind: CaptureKind = 'call'
): ICaptureBrief {
  return {
    id,
    kind,
    name: qualname.split('.').pop()!,
    qualname,
    file: '/models/vit.py',
    line: 10 + id,
    time: 1700000000 + id,
    thread: 'MainThread',
    nbytes: 0
  };
}

describe('CaptureListModel', () => {
  it('shows captures newest first, also when events arrive after a reset', () => {
    const list = new CaptureListModel();
    list.reset([brief(1, 'f'), brief(2, 'g')]);
    list.add(brief(3, 'f'));
    expect(list.view.map(b => b.id)).toEqual([3, 2, 1]);
    list.add(brief(2, 'g')); // the same capture announced twice stays once
    expect(list.view.map(b => b.id)).toEqual([3, 2, 1]);
  });

  it('filters by kind, function and search words, and counts per function', () => {
    const list = new CaptureListModel();
    list.reset([
      brief(1, 'Attention.forward'),
      brief(2, 'Block.forward'),
      brief(3, 'Attention.forward', 'hit'),
      brief(17, 'Mlp.forward')
    ]);
    list.setFilter({ kind: 'hit' });
    expect(list.view.map(b => b.id)).toEqual([3]);
    list.add(brief(18, 'Attention.forward', 'attention'));
    list.setFilter({ kind: 'attention' });
    expect(list.view.map(b => b.id)).toEqual([18]);
    list.remove([18]);
    list.setFilter({ kind: 'hit' });
    list.setFilter({ kind: '', qualname: 'Attention.forward' });
    expect(list.view.map(b => b.id)).toEqual([3, 1]);
    list.setFilter({ qualname: '', text: 'ATTENTION vit.py' });
    expect(list.view.map(b => b.id)).toEqual([3, 1]);
    list.setFilter({ text: '#1' }); // exact id, not every id starting with 1
    expect(list.view.map(b => b.id)).toEqual([1]);
    list.setFilter({ text: '' });
    expect(list.groups).toEqual([
      { qualname: 'Attention.forward', calls: 1, hits: 1 },
      { qualname: 'Block.forward', calls: 1, hits: 0 },
      { qualname: 'Mlp.forward', calls: 1, hits: 0 }
    ]);
  });

  it('drops deleted and evicted captures and keeps the eviction notice', () => {
    const list = new CaptureListModel();
    list.reset([brief(1, 'f'), brief(2, 'f'), brief(3, 'f')]);
    list.remove([1, 2], 'evicted 2 records (#1, #2) to stay under the budget');
    expect(list.view.map(b => b.id)).toEqual([3]);
    expect(list.size).toBe(1);
    expect(list.lastEviction).toContain('evicted 2 records');
    expect(list.get(1)).toBeUndefined();
    list.reset([]);
    expect(list.lastEviction).toBeNull();
  });

  it('signals every change and caches the view between changes', () => {
    const list = new CaptureListModel();
    let changes = 0;
    list.changed.connect(() => changes++);
    list.add(brief(1, 'f'));
    const view = list.view;
    expect(list.view).toBe(view);
    list.setFilter({ text: 'f' });
    expect(changes).toBe(2);
    expect(list.view).not.toBe(view);
  });

  it('finds captures by predicate regardless of the filter, newest first', () => {
    const list = new CaptureListModel();
    list.reset([
      brief(1, 'f'),
      brief(2, 'g', 'hit'),
      brief(3, 'f'),
      brief(4, 'f')
    ]);
    list.setFilter({ text: 'g' });
    expect(list.view.map(b => b.id)).toEqual([2]);
    expect(list.where(b => b.qualname === 'f').map(b => b.id)).toEqual([
      4, 3, 1
    ]);
    expect(list.where(b => b.qualname === 'f', 2).map(b => b.id)).toEqual([
      4, 3
    ]);
  });

  it('holds 10,000 captures and filters them', () => {
    const list = new CaptureListModel();
    const many = Array.from({ length: 10000 }, (_, i) =>
      brief(i + 1, i % 2 ? 'Attention.forward' : 'Mlp.forward')
    );
    list.reset(many);
    expect(list.view).toHaveLength(10000);
    expect(list.view[0].id).toBe(10000);
    list.setFilter({ qualname: 'Attention.forward' });
    expect(list.view).toHaveLength(5000);
    expect(list.groups.map(g => g.calls)).toEqual([5000, 5000]);
  });
});

describe('matcher', () => {
  it('requires every word to match', () => {
    const match = matcher({ ...EMPTY_FILTER, text: 'attention mlp' });
    expect(match(brief(1, 'Attention.forward'))).toBe(false);
    expect(
      matcher({ ...EMPTY_FILTER, text: 'attention 11' })(
        brief(1, 'Attention.forward')
      )
    ).toBe(true);
  });
});
