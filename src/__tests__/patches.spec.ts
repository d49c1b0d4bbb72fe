import { patchAt, patchLayout, patchRow } from '../heatmap/patches';

describe('patch layout', () => {
  it('finds the CLS token and the patch grid of a ViT', () => {
    expect(patchLayout(197)).toEqual({ prefix: 1, side: 14 }); // ViT-B/16 at 224
    expect(patchLayout(196)).toEqual({ prefix: 0, side: 14 }); // no CLS
    expect(patchLayout(4 + 256)).toEqual({ prefix: 4, side: 16 }); // CLS + 3 registers
    expect(patchLayout(1 + 4 + 256)).toBeNull(); // more prefix tokens than recognised
    expect(patchLayout(13)).toEqual({ prefix: 4, side: 3 });
    expect(patchLayout(7)).toEqual({ prefix: 3, side: 2 });
    expect(patchLayout(2)).toBeNull();
  });

  it('cuts the query row down to the patches', () => {
    // 5 tokens: CLS + 2x2 patches; row 0 is CLS
    const values = Float32Array.from({ length: 25 }, (_, i) => i);
    expect(Array.from(patchRow(values, 5, 0, { prefix: 1, side: 2 }))).toEqual([
      1, 2, 3, 4
    ]);
    expect(Array.from(patchRow(values, 5, 3, { prefix: 1, side: 2 }))).toEqual([
      16, 17, 18, 19
    ]);
  });

  it('maps a click on the image to a patch', () => {
    expect(patchAt(0, 0, 14)).toBe(0);
    expect(patchAt(0.99, 0.99, 14)).toBe(195);
    expect(patchAt(0.5, 0.25, 2)).toBe(1);
    expect(patchAt(1.5, -1, 2)).toBe(1);
  });
});
