import { mapLine, mapOffset, rangeDeleted } from '../breakpoints/lineMapping';

const OLD = 'def f(x):\n    y = x + 1\n    return y\n';

describe('mapOffset', () => {
  it('shifts past text inserted before it and at it (assoc 1)', () => {
    expect(mapOffset([{ insert: 'ab' }], 0, 1)).toBe(2);
    expect(mapOffset([{ insert: 'ab' }], 0, -1)).toBe(0);
    expect(mapOffset([{ retain: 3 }, { insert: 'xy' }], 5)).toBe(7);
  });

  it('collapses deleted positions to the deletion point', () => {
    expect(mapOffset([{ retain: 2 }, { delete: 4 }], 4)).toBe(2);
    expect(mapOffset([{ retain: 2 }, { delete: 4 }], 8)).toBe(4);
  });
});

describe('rangeDeleted', () => {
  it('is true only when every character of the range went', () => {
    expect(rangeDeleted([{ retain: 2 }, { delete: 5 }], 3, 6)).toBe(true);
    expect(rangeDeleted([{ retain: 2 }, { delete: 2 }], 3, 6)).toBe(false);
    expect(
      rangeDeleted([{ delete: 3 }, { retain: 1 }, { delete: 3 }], 0, 7)
    ).toBe(false);
  });
});

describe('mapLine', () => {
  const edit = (delta: any[], apply: (s: string) => string, line: number) =>
    mapLine(OLD, apply(OLD), delta, line);

  it('follows a line when lines are inserted above it', () => {
    expect(
      edit([{ insert: 'import math\n' }], s => 'import math\n' + s, 2)
    ).toBe(3);
  });

  it('follows a line when a new line is typed at its start', () => {
    // Enter pressed before "y = x + 1" after its indentation
    const at = OLD.indexOf('y =');
    expect(
      edit(
        [{ retain: at }, { insert: 'z = 0\n    ' }],
        s => s.slice(0, at) + 'z = 0\n    ' + s.slice(at),
        2
      )
    ).toBe(3);
  });

  it('stays on a line that is edited in place', () => {
    const at = OLD.indexOf('1');
    expect(
      edit(
        [{ retain: at }, { delete: 1 }, { insert: '2' }],
        s => s.slice(0, at) + '2' + s.slice(at + 1),
        2
      )
    ).toBe(2);
  });

  it('moves up when a line above is deleted', () => {
    const end = OLD.indexOf('\n') + 1;
    expect(edit([{ delete: end }], s => s.slice(end), 3)).toBe(2);
  });

  it('drops a line whose text was deleted', () => {
    const from = OLD.indexOf('    y =');
    const to = OLD.indexOf('    return');
    expect(
      edit(
        [{ retain: from }, { delete: to - from }],
        s => s.slice(0, from) + s.slice(to),
        2
      )
    ).toBeNull();
  });

  it('finds the line again when the whole source is replaced', () => {
    const formatted = 'def f(x):\n    y = x + 1\n\n    return y\n';
    expect(
      mapLine(
        OLD,
        formatted,
        [{ delete: OLD.length }, { insert: formatted }],
        3
      )
    ).toBe(4);
    expect(
      mapLine(OLD, 'pass\n', [{ delete: OLD.length }, { insert: 'pass\n' }], 3)
    ).toBeNull();
  });
});
