/** Probe front end: which cells an edit and a Δ view name, token scores, the kernel code. */
import { boxCells, sliceMarks } from '../probes/editModel';
import { isTokenMap, tokenScores } from '../probes/attributionModel';
import { attributeCode, KernelRunError } from '../probes/session';

describe('probe edit geometry', () => {
  it('a drag spans the box between two cells, either direction', () => {
    expect(
      [...boxCells({ r: 2, c: 3 }, { r: 1, c: 1 }, 5)].sort((a, b) => a - b)
    ).toEqual([6, 7, 8, 11, 12, 13]);
    expect([...boxCells({ r: 0, c: 0 }, { r: 0, c: 0 }, 5)]).toEqual([0]);
  });

  it('the Δ view marks only changed elements on the shown slice', () => {
    // input 2×3×4, rows dim 1, cols dim 2, showing index 1 of dim 0
    const indices = [
      [1, 0, 2],
      [0, 1, 1], // another slice: not marked
      [1, 2, 3]
    ];
    expect(
      [...sliceMarks(indices, [1, 0, 0], 1, 2, 4)].sort((a, b) => a - b)
    ).toEqual([2, 11]);
  });
});

describe('attribution display', () => {
  it('sums a token map over its embedding dimensions', () => {
    const values = new Float32Array([1, 2, 3, -1, -1, -1]);
    expect(Array.from(tokenScores(values, [2, 3])!)).toEqual([6, -3]);
    expect(tokenScores(values, [6])).toBe(values);
    expect(tokenScores(values, [1, 2, 3])).toBeNull();
  });

  it('tells token maps from images', () => {
    expect(isTokenMap([1, 12])).toBe(true);
    expect(isTokenMap([1, 12, 384])).toBe(true);
    expect(isTokenMap([1, 3, 224, 224])).toBe(false);
  });
});

describe('attribution code', () => {
  it('quotes names as Python literals and passes only set options', () => {
    const code = attributeCode('t"1', 'my "probe"', {
      method: 'integrated_gradients',
      steps: 32,
      baseline: 0.5,
      internal_batch_size: 8
    });
    expect(code).toContain(
      'attribute("t\\"1", "my \\"probe\\"", method="integrated_gradients", steps=32, ' +
        'baseline=0.5, internal_batch_size=8)'
    );
    expect(attributeCode('t', 'p', { method: 'saliency' })).toContain(
      'attribute("t", "p", method="saliency")'
    );
  });

  it('says an interrupt is one', () => {
    const error = new KernelRunError('KeyboardInterrupt', '');
    expect(error.interrupted).toBe(true);
    expect(error.message).toMatch(/Interrupted/);
    expect(new KernelRunError('ProbeError', 'boom').message).toBe(
      'ProbeError: boom'
    );
  });
});
