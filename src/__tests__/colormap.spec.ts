import {
  lookupTable,
  NAN_RGB,
  normalise,
  paint,
  parseRgb
} from '../heatmap/colormap';

describe('colour mapping', () => {
  it('samples viridis from dark purple to yellow', () => {
    const table = lookupTable('viridis');
    expect(Array.from(table.slice(0, 3))).toEqual([68, 1, 84]);
    expect(Array.from(table.slice(255 * 3))).toEqual([253, 231, 37]);
  });

  it('puts blue below zero and red above on the diverging map', () => {
    const table = lookupTable('RdBu');
    const [r0, , b0] = table.slice(0, 3);
    const [r1, , b1] = table.slice(255 * 3);
    expect(b0).toBeGreaterThan(r0);
    expect(r1).toBeGreaterThan(b1);
  });

  it('normalises globally, per row, on a log scale and around zero', () => {
    const values = new Float32Array([0, 5, 10, 100, 200, 300]);
    const global = normalise(values, 2, 3, {
      scale: 'linear',
      normalisation: 'global',
      diverging: false
    });
    expect(Array.from(global.positions)).toEqual(
      [0, 5 / 300, 10 / 300, 1 / 3, 2 / 3, 1].map(v => Math.fround(v))
    );
    expect(global.range).toEqual({ low: 0, high: 300 });
    const rows = normalise(values, 2, 3, {
      scale: 'linear',
      normalisation: 'row',
      diverging: false
    });
    expect(Array.from(rows.positions)).toEqual([0, 0.5, 1, 0, 0.5, 1]);
    const log = normalise(new Float32Array([1, 10, 100, 0]), 1, 4, {
      scale: 'log',
      normalisation: 'global',
      diverging: false
    });
    expect(Array.from(log.positions.slice(0, 3))).toEqual([0, 0.5, 1]);
    expect(log.positions[3]).toBeNaN(); // 0 has no logarithm
    const signed = normalise(new Float32Array([-2, 0, 1]), 1, 3, {
      scale: 'linear',
      normalisation: 'global',
      diverging: true
    });
    expect(Array.from(signed.positions)).toEqual([0, 0.5, 0.75]);
  });

  it('paints NaN grey and clamps to the table', () => {
    const table = lookupTable('magma');
    const pixels = paint(new Float32Array([NaN, 0, 2]), table);
    expect(Array.from(pixels.slice(0, 4))).toEqual([...NAN_RGB, 255]);
    expect(Array.from(pixels.slice(8, 11))).toEqual(
      Array.from(table.slice(255 * 3))
    );
  });

  it('parses the colour formats d3 returns', () => {
    expect(parseRgb('rgb(1, 2, 3)')).toEqual([1, 2, 3]);
    expect(parseRgb('#0a0B0c')).toEqual([10, 11, 12]);
    expect(() => parseRgb('blue')).toThrow('cannot parse colour blue');
  });
});
