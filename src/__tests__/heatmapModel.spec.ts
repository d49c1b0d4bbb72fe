import { lookupTable } from '../heatmap/colormap';
import {
  GRID_MAX_SIZE,
  HeatmapModel,
  IHeatmapSource,
  MAX_SIZE
} from '../heatmap/model';

/** A fake kernel: records every request; each answer is settled by the test. */
class FakeKernel {
  calls: {
    op: string;
    args: any;
    resolve: (v: any) => void;
    reject: (e: Error) => void;
  }[] = [];
  readonly client = {
    request: (op: string, args: any): Promise<any> =>
      new Promise((resolve, reject) =>
        this.calls.push({ op, args, resolve, reject })
      )
  } as any;

  /** Answer call `i` of a heatmap request with a rows×cols slice holding `values`. */
  answerSlice(
    i: number,
    rows: number,
    cols: number,
    values: number[],
    grid: number[] | null = null
  ) {
    const data = new Float32Array(values);
    this.calls[i].resolve({
      result: {
        shape: [],
        grid,
        rows,
        cols,
        row_step: 1,
        col_step: 1,
        reduce: null,
        min: Math.min(...values),
        max: Math.max(...values),
        nan: 0,
        inf: 0,
        expression: 'x'
      },
      buffers: [new DataView(data.buffer)]
    });
  }
}

function source(
  kernel: { client: any },
  shape: number[],
  signed = false
): IHeatmapSource {
  return {
    bridge: kernel,
    captureId: 7,
    path: ['locals', 'attn'],
    expression: "nopdb_lab.store[7].locals['attn']",
    shape,
    signed
  };
}

const settle = () => new Promise(resolve => setTimeout(resolve, 0));

describe('HeatmapModel', () => {
  it('starts on the last two dimensions, other dimensions at index 0', async () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [2, 3, 4, 5]));
    expect(model.rowsDim).toBe(2);
    expect(model.colsDim).toBe(3);
    expect(model.colormap).toBe('viridis');
    void model.fetch();
    expect(kernel.calls).toHaveLength(1);
    expect(kernel.calls[0].op).toBe('heatmap');
    expect(kernel.calls[0].args).toEqual({
      id: 7,
      path: ['locals', 'attn'],
      rows_dim: 2,
      cols_dim: 3,
      index: { '0': 0, '1': 0 },
      mean_dims: [],
      grid_dims: [],
      max_size: MAX_SIZE,
      reduce: 'max'
    });
  });

  it('opens signed data with the diverging colormap', () => {
    const model = new HeatmapModel(source(new FakeKernel(), [3, 3], true));
    expect(model.colormap).toBe('RdBu');
  });

  it('asks again when the slice changes: slider, mean, grid, pooling', () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [2, 3, 4, 5]));
    model.setIndex(1, 2);
    expect(kernel.calls[0].args.index).toEqual({ '0': 0, '1': 2 });
    model.setMode(0, 'mean');
    expect(kernel.calls[1].args.mean_dims).toEqual([0]);
    expect(kernel.calls[1].args.index).toEqual({ '1': 2 });
    model.setMode(1, 'grid');
    expect(kernel.calls[2].args.grid_dims).toEqual([1]);
    expect(kernel.calls[2].args.max_size).toBe(GRID_MAX_SIZE);
    model.setReduce('mean');
    expect(kernel.calls[3].args.reduce).toBe('mean');
    model.setRowsDim(0);
    expect(kernel.calls[4].args.rows_dim).toBe(0);
    expect(kernel.calls).toHaveLength(5);
  });

  it('does not ask again for a change that changes nothing', () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [2, 3, 4]));
    model.setIndex(0, 0);
    model.setMode(0, 'index');
    model.setReduce('max');
    // rows and columns cannot be the same dimension
    model.setRowsDim(model.colsDim);
    expect(model.rowsDim).toBe(1);
    expect(kernel.calls).toHaveLength(0);
  });

  it('recolours without asking the kernel again', async () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [2, 2]));
    const fetched = model.fetch();
    kernel.answerSlice(0, 2, 2, [0, 1, 2, 3]);
    await fetched;
    const painted: any[] = [];
    model.paintedChanged.connect((_, p) => painted.push(p));
    const before = model.painted!;
    model.setColormap('magma');
    expect(kernel.calls).toHaveLength(1);
    expect(painted).toHaveLength(1);
    expect(painted[0].table).toEqual(lookupTable('magma'));
    expect(painted[0].pixels[0]).not.toEqual(before.pixels[0]);
    expect(model.painted).toBe(painted[0]);
  });

  it('keeps the newest answer when answers arrive out of order', async () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [3, 1, 2]));
    model.setIndex(0, 1);
    model.setIndex(0, 2);
    kernel.answerSlice(1, 1, 2, [20, 21]);
    await settle();
    kernel.answerSlice(0, 1, 2, [10, 11]);
    await settle();
    expect(Array.from(model.slice!.values)).toEqual([20, 21]);
    expect(model.error).toBeNull();
  });

  it('reports a failed request and a kernel that is not connected', async () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [2, 2]));
    const fetched = model.fetch();
    kernel.calls[0].reject(new Error('IndexError: dim 5'));
    await fetched;
    expect(model.error).toBe('IndexError: dim 5');

    const offline = new HeatmapModel(source({ client: null }, [2, 2]));
    await offline.fetch();
    expect(offline.error).toBe('The kernel is not connected.');
  });

  it('applies labels to the axes whose length they match', async () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [3, 2]));
    const fetched = model.fetch();
    kernel.answerSlice(0, 3, 2, [0, 1, 2, 3, 4, 5]);
    await fetched;

    const applied = model.applyLabels('tokens');
    expect(kernel.calls[1].op).toBe('labels');
    expect(kernel.calls[1].args).toEqual({ expression: 'tokens' });
    kernel.calls[1].resolve({
      result: { labels: ['a', 'b', 'c'] },
      buffers: []
    });
    await applied;
    expect(model.rowLabels).toEqual(['a', 'b', 'c']);
    expect(model.colLabels).toBeNull();
    expect(model.labelMismatch).toBeNull();
    model.setHover({ g: 0, r: 1, c: 1 });
    expect(model.hoverText).toBe('row 1 "b", column 1: 3');

    const wrong = model.applyLabels('other');
    kernel.calls[2].resolve({ result: { labels: ['x'] }, buffers: [] });
    await wrong;
    expect(model.labelMismatch).toBe('1 labels, but rows have 3 and columns 2');

    const failing = model.applyLabels('missing');
    kernel.calls[3].reject(
      new Error("NameError: name 'missing' is not defined")
    );
    await failing;
    expect(model.labelsError).toBe("NameError: name 'missing' is not defined");

    await model.applyLabels('  ');
    expect(kernel.calls).toHaveLength(4);
    expect(model.labels).toBeNull();
    expect(model.labelsError).toBeNull();
  });

  it('asks for an overlay image and keeps its pixels', async () => {
    const kernel = new FakeKernel();
    const model = new HeatmapModel(source(kernel, [5, 5]));
    const applied = model.applyImage('image');
    expect(kernel.calls[0]).toMatchObject({
      op: 'image',
      args: { expression: 'image' }
    });
    const rgb = new Uint8Array([1, 2, 3, 4, 5, 6]);
    kernel.calls[0].resolve({
      result: { width: 2, height: 1 },
      buffers: [new DataView(rgb.buffer)]
    });
    await applied;
    expect(model.image).toMatchObject({ width: 2, height: 1 });
    expect(Array.from(model.image!.rgb)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(model.imageError).toBeNull();
  });

  it('signals a hover only when the hovered cell changes', () => {
    const model = new HeatmapModel(source(new FakeKernel(), [2, 2]));
    let hovers = 0;
    model.hoverChanged.connect(() => hovers++);
    model.setHover({ g: 0, r: 0, c: 1 });
    model.setHover({ g: 0, r: 0, c: 1 });
    model.setHover(null);
    expect(hovers).toBe(2);
  });

  it('zooms between 1× and 64× around the cursor, pans and resets', () => {
    const model = new HeatmapModel(source(new FakeKernel(), [2, 2]));
    model.zoomAt(100, 50, -100);
    expect(model.zoom.k).toBeCloseTo(1.2);
    // the point under the cursor stays put: (px - x) / k is unchanged
    expect((100 - model.zoom.x) / model.zoom.k).toBeCloseTo(100);
    expect((50 - model.zoom.y) / model.zoom.k).toBeCloseTo(50);
    for (let i = 0; i < 50; i++) {
      model.zoomAt(0, 0, -100);
    }
    expect(model.zoom.k).toBe(64);
    model.zoomAt(0, 0, 100000);
    expect(model.zoom.k).toBe(1);
    const before = { ...model.zoom };
    model.pan(5, -3);
    expect(model.zoom).toEqual({ k: 1, x: before.x + 5, y: before.y - 3 });
    model.resetZoom();
    expect(model.zoom).toEqual({ k: 1, x: 0, y: 0 });
  });
});

/** Answer call `i` with a slice pooled by `step` (or exact with step 1) at `origin`. */
function answerRegion(
  kernel: FakeKernel,
  i: number,
  rows: number,
  cols: number,
  step: number,
  values: number[],
  origin: [number, number] = [0, 0]
) {
  const data = new Float32Array(values);
  kernel.calls[i].resolve({
    result: {
      shape: [],
      grid: null,
      rows,
      cols,
      row_step: step,
      col_step: step,
      row0: origin[0],
      col0: origin[1],
      reduce: step > 1 ? 'max' : null,
      min: Math.min(...values),
      max: Math.max(...values),
      nan: 0,
      inf: 0,
      expression: 'x'
    },
    buffers: [new DataView(data.buffer)]
  });
}

describe('HeatmapModel on a pooled (long) map', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /** A 4096 × 4096 map sent as 2 × 2 cells pooled over 2048 × 2048 blocks. */
  async function pooledModel(kernel: FakeKernel): Promise<HeatmapModel> {
    const model = new HeatmapModel(source(kernel, [2, 4096, 4096]));
    const fetched = model.fetch();
    answerRegion(kernel, 0, 2, 2, 2048, [0.5, 0.25, 0.125, 1]);
    await fetched;
    return model;
  }

  it('zoomed in, asks for the visible region at full resolution and reads it exactly', async () => {
    const kernel = new FakeKernel();
    const model = await pooledModel(kernel);
    expect(model.pooled).toBe(true);
    model.setVisible({ top: 0, bottom: 1, left: 0, right: 1 });
    jest.advanceTimersByTime(1000);
    expect(kernel.calls).toHaveLength(1); // zoom 1: the pooled map is all there is
    model.zoomAt(0, 0, -2000);
    model.setVisible({ top: 0.5, bottom: 0.50049, left: 0.25, right: 0.2505 });
    model.setVisible({ top: 0.5, bottom: 0.5005, left: 0.25, right: 0.2505 });
    jest.advanceTimersByTime(200); // one request after the view stays still
    expect(kernel.calls).toHaveLength(2);
    expect(kernel.calls[1].args).toMatchObject({
      region: { row0: 2048, row1: 2051, col0: 1024, col1: 1027 },
      max_size: MAX_SIZE,
      rows_dim: 1,
      cols_dim: 2
    });
    answerRegion(
      kernel,
      1,
      3,
      3,
      1,
      [1, 2, 3, 4, 5, 6, 7, 8, 0.75],
      [2048, 1024]
    );
    await Promise.resolve();
    await Promise.resolve();
    const detail = model.detail!;
    expect(detail).toMatchObject({
      row0: 2048,
      col0: 1024,
      rowSpan: 3,
      colSpan: 3
    });
    // painted in the whole map's colours: 0.75 is 3/4 between its low and high... of the
    // pooled map (0.125 .. 1), clamped beyond it
    expect(detail.pixels).toHaveLength(9 * 4);
    model.setHover({ g: 0, r: 2, c: 2, detail: true });
    expect(model.hoverText).toBe('row 2050, column 1026: 0.75');
    // back to zoom 1: the region goes
    model.resetZoom();
    expect(model.detail).toBeNull();
  });

  it('hovering a pooled cell shows the exact value of the source cell under the mouse', async () => {
    const kernel = new FakeKernel();
    const model = await pooledModel(kernel);
    model.setHover({ g: 0, r: 1, c: 0, fy: 0.75, fx: 0.1 });
    expect(model.hoverText).toBe(
      'max of rows 2048–4095, columns 0–2047: 0.125'
    );
    jest.advanceTimersByTime(200);
    expect(kernel.calls[1].args).toMatchObject({
      region: { row0: 3072, row1: 3073, col0: 409, col1: 410 },
      max_size: 1
    });
    answerRegion(kernel, 1, 1, 1, 1, [0.0625], [3072, 409]);
    await Promise.resolve();
    await Promise.resolve();
    expect(model.hoverText).toBe(
      'row 3072, column 409: 0.0625 · max of rows 2048–4095, columns 0–2047: 0.125'
    );
  });

  it('names rows and columns with the labels the source brings', () => {
    const model = new HeatmapModel({
      ...source(new FakeKernel(), [4, 3, 2]),
      axisLabels: { rows: ['0 a', '1 b', '2 c'], cols: ['head 0', 'head 1'] }
    });
    expect(model.rowLabels).toEqual(['0 a', '1 b', '2 c']);
    expect(model.colLabels).toEqual(['head 0', 'head 1']);
    model.setRowsDim(0);
    expect(model.rowLabels).toBeNull(); // they name their own dimensions only
  });
});

describe('HeatmapModel while the kernel computes', () => {
  it('says it is loading until the answer, and Stop interrupts the request', async () => {
    const kernel = new FakeKernel();
    const interruptRequests = jest.fn(() => true);
    const model = new HeatmapModel({
      ...source(kernel, [3, 3]),
      bridge: { client: kernel.client, interruptRequests }
    });
    const fetched = model.fetch();
    expect(model.loading).toBe(true);
    expect(model.stop()).toBe(true);
    expect(interruptRequests).toHaveBeenCalledTimes(1);
    kernel.calls[0].reject(
      new Error(
        "heatmap was interrupted (the kernel's stop button) before it finished"
      )
    );
    await fetched;
    expect(model.loading).toBe(false);
    expect(model.error).toContain('was interrupted');
  });
});
