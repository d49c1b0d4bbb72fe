import { gridPosition, heatmapRequest } from '../heatmap/request';

describe('heatmapRequest', () => {
  const shape = [2, 12, 197, 197]; // batch, heads, queries, keys

  it('fixes every other dimension by its slider', () => {
    expect(
      heatmapRequest(
        shape,
        2,
        3,
        [1, 5, 0, 0],
        ['index', 'index', 'index', 'index']
      )
    ).toEqual({ index: { '0': 1, '1': 5 }, mean_dims: [], grid_dims: [] });
  });

  it('averages or grids a dimension instead of indexing it', () => {
    expect(
      heatmapRequest(
        shape,
        2,
        3,
        [1, 5, 0, 0],
        ['index', 'mean', 'index', 'index']
      )
    ).toEqual({ index: { '0': 1 }, mean_dims: [1], grid_dims: [] });
    // layer x head: two grid dimensions
    expect(
      heatmapRequest(
        [4, 2, 12, 9, 9],
        3,
        4,
        [0, 1, 0, 0, 0],
        ['grid', 'index', 'grid', 'index', 'index']
      )
    ).toEqual({ index: { '1': 1 }, mean_dims: [], grid_dims: [0, 2] });
  });

  it('lets a third grid dimension fall back to its slider', () => {
    expect(
      heatmapRequest(
        [2, 3, 4, 5, 5],
        3,
        4,
        [1, 2, 3, 0, 0],
        ['grid', 'grid', 'grid', 'index', 'index']
      )
    ).toEqual({ index: { '2': 3 }, mean_dims: [], grid_dims: [0, 1] });
  });

  it('ignores modes of the row and column dimensions', () => {
    expect(
      heatmapRequest(
        shape,
        1,
        3,
        [0, 0, 7, 0],
        ['index', 'grid', 'mean', 'index']
      )
    ).toEqual({ index: { '0': 0 }, mean_dims: [2], grid_dims: [] });
  });

  it('places maps row by row in a two-dimensional grid', () => {
    expect(gridPosition(7, [4, 3])).toEqual([2, 1]);
    expect(gridPosition(7, [12])).toEqual([7]);
  });
});
