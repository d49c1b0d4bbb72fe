import { Signal } from '@lumino/signaling';

import {
  CellNames,
  ICellLike,
  IPYKERNEL_HASH_SEED,
  cellFileHash,
  murmur2x86
} from '../cells/cellNames';

describe('murmur2x86', () => {
  // reference values: ipykernel.compiler.murmur2_x86(text, 0xC70F6907)
  it.each([
    ['', 3990065800],
    ['a', 2167009006],
    ['ab', 2805137849],
    ['abc', 3350977461],
    ['x = 1\nprint(x)', 4252719672],
    ['é漢字🙂 tail', 3744446540]
  ])('hashes %j as ipykernel does', (text, expected) => {
    expect(murmur2x86(text, IPYKERNEL_HASH_SEED)).toBe(expected);
  });
});

describe('CellNames', () => {
  function cell(id: string, source: string, count: number | null): ICellLike {
    let text = source;
    return {
      id,
      type: 'code',
      executionCount: count,
      sharedModel: {
        getSource: () => text,
        // test helper
        setSource: (value: string) => (text = value)
      } as any
    };
  }
  function notebook(cells: ICellLike[]) {
    const changed = new Signal<any, any>({});
    return {
      cells: {
        get length() {
          return cells.length;
        },
        get: (i: number) => cells[i],
        changed
      },
      list: cells,
      changed
    };
  }
  const file = (text: string) =>
    `/tmp/ipykernel_4242/${murmur2x86(text, IPYKERNEL_HASH_SEED)}.py`;

  it('reads the hash of ipykernel cell files only', () => {
    expect(cellFileHash('/tmp/ipykernel_1/1929098357.py')).toBe(1929098357);
    expect(cellFileHash('C:\\T\\ipykernel_1\\12.py')).toBe(12);
    expect(cellFileHash('/usr/lib/python3/site.py')).toBeNull();
  });

  it('names a cell file by the cell position and prompt, following moves', () => {
    const a = cell('a', 'import torch', 1);
    const b = cell('b', 'def f(x):\n    return x * 10', 4);
    const nb = notebook([a, b]);
    const names = new CellNames(nb);
    expect(names.label(file(b.sharedModel.getSource()), 2)).toBe(
      'Cell 2 [4], line 2'
    );
    nb.list.reverse();
    expect(names.label(file(b.sharedModel.getSource()), 2)).toBe(
      'Cell 1 [4], line 2'
    );
    expect(names.label('/site-packages/torch/nn/modules/linear.py', 7)).toBe(
      'linear.py:7'
    );
  });

  it('keeps naming a cell edited after it ran', () => {
    const b = cell('b', 'y = 2', 3);
    const names = new CellNames(notebook([cell('a', 'x', 1), b]));
    names.noteRun(b);
    const ran = file('y = 2');
    (b.sharedModel as any).setSource('y = 3');
    expect(names.fileLabel(ran)).toBe('Cell 2 (edited)');
    expect(names.locate(file('never ran'))).toBeNull();
  });
});
