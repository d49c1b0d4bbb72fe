/** What the viewer asks the kernel for: pure, so it is tested without a DOM. */

/** How a dimension other than rows and columns is shown. */
export type DimMode = 'index' | 'mean' | 'grid';

/** At most this many dimensions form the grid of small maps (layer × head). */
export const MAX_GRID_DIMS = 2;

/**
 * The `heatmap` request arguments for a view: dimensions in `index` mode are fixed by
 * their slider, `mean` ones averaged, and the first two `grid` ones spread into small
 * maps (a third falls back to its slider).
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
  grid_dims: number[];
} {
  const fixed: Record<string, number> = {};
  const means: number[] = [];
  const grids: number[] = [];
  shape.forEach((_, dim) => {
    if (dim === rowsDim || dim === colsDim) {
      return;
    }
    if (modes[dim] === 'mean') {
      means.push(dim);
    } else if (modes[dim] === 'grid' && grids.length < MAX_GRID_DIMS) {
      grids.push(dim);
    } else {
      fixed[String(dim)] = index[dim];
    }
  });
  return { index: fixed, mean_dims: means, grid_dims: grids };
}

/** The grid position of map `g` in a grid of shape `grid`: one index per grid dim. */
export function gridPosition(g: number, grid: number[]): number[] {
  return grid.length === 2 ? [Math.floor(g / grid[1]), g % grid[1]] : [g];
}
