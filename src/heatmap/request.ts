/** What the viewer asks the kernel for: pure, so it is tested without a DOM. */

/** How a dimension other than rows and columns is shown. */
export type DimMode = 'index' | 'mean' | 'grid';

/**
 * The `heatmap` request arguments for a view: dimensions in `index` mode are fixed by
 * their slider, `mean` ones averaged, and the first `grid` one spread into small maps.
 */
export function heatmapRequest(
  shape: number[],
  rowsDim: number,
  colsDim: number,
  index: number[],
  modes: DimMode[]
): {
  index: Record<string, number>;
  mean_dims: number[];
  grid_dim: number | null;
} {
  const fixed: Record<string, number> = {};
  const means: number[] = [];
  let grid: number | null = null;
  shape.forEach((_, dim) => {
    if (dim === rowsDim || dim === colsDim) {
      return;
    }
    if (modes[dim] === 'mean') {
      means.push(dim);
    } else if (modes[dim] === 'grid' && grid === null) {
      grid = dim;
    } else {
      fixed[String(dim)] = index[dim];
    }
  });
  return { index: fixed, mean_dims: means, grid_dim: grid };
}
