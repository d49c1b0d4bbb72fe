import { heatmapRequest } from '../heatmap/request';

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
    ).toEqual({
      index: { '0': 1, '1': 5 },
      mean_dims: [],
      grid_dim: null
    });
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
    ).toEqual({
      index: { '0': 1 },
      mean_dims: [1],
      grid_dim: null
    });
    expect(
      heatmapRequest(
        shape,
        2,
        3,
        [0, 0, 0, 0],
        ['grid', 'grid', 'index', 'index']
      )
    ).toEqual({
      index: { '1': 0 }, // a second grid dimension falls back to its index
      mean_dims: [],
      grid_dim: 0
    });
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
    ).toEqual({
      index: { '0': 0 },
      mean_dims: [2],
      grid_dim: null
    });
  });
});
