import { clipBox, FlowModel, IFlowKernel, visibleLinks } from '../flow/model';
import { gridShape, thresholdAt } from '../flow/FlowView';

function view(values: ArrayLike<number>, type: 'f' | 'i'): DataView {
  const array =
    type === 'f' ? new Float32Array(values) : new Int32Array(values);
  return new DataView(array.buffer);
}

const LAYER = {
  origin: '',
  shape: [1, 1, 2, 2],
  nodes: 4,
  grid: [2, 2],
  node_kind: 'spatial',
  feeds_next_call: true,
  grad_norm: 1,
  grads_missing: null,
  offsets_on_input: null
};

/** A kernel whose links are fixed; counts the requests. */
function fakeKernel(): IFlowKernel & { calls: any[] } {
  const calls: any[] = [];
  return {
    calls,
    open: async args => {
      calls.push(['open', args]);
      return {
        result: {
          flow: 'flow-1',
          kind: 'gradient',
          sample: null,
          layers: [0, 1].map(index => ({ ...LAYER, index, name: `l${index}` }))
        },
        buffers: [view([1, 2, 3, 4], 'f'), view([4, 3, 2, 1], 'f')]
      };
    },
    links: async args => {
      calls.push(['links', args]);
      return {
        result: {
          flow: 'flow-1',
          layer: 0,
          kind: 'gradient',
          count: 4,
          total_links: 9,
          grid: [
            [2, 2],
            [2, 2]
          ],
          offsets: { target_on_source: null, source_on_input: null },
          src_grads_missing: null,
          dst_grads_missing: null
        },
        buffers: [
          view([0, 1, 0, 2], 'i'),
          view([3, 3, 1, 0], 'i'),
          view([0.9, -0.5, 0.2, -0.01], 'f'),
          view([1, 2, 3, 4], 'f'),
          view([4, 3, 2, 1], 'f')
        ]
      };
    },
    close: flow => calls.push(['close', flow])
  };
}

describe('flow model', () => {
  it('filters the links it holds by threshold and node without asking the kernel', async () => {
    const kernel = fakeKernel();
    const model = new FlowModel(kernel, { ids: [1, 2] });
    await model.open();
    expect(kernel.calls.map(c => c[0])).toEqual(['open', 'links']);
    expect(model.visible()).toEqual([0, 1, 2, 3]);
    model.setThreshold(0.3);
    expect(model.visible()).toEqual([0, 1]);
    model.select({ role: 'dst', node: 3 });
    expect(model.visible()).toEqual([0, 1]);
    model.select({ role: 'src', node: 0 });
    expect(model.visible()).toEqual([0]);
    expect(kernel.calls).toHaveLength(2);
    expect(model.maxAbs()).toBeCloseTo(0.9);
  });

  it('sends regions clipped to the grids and reports kernel errors', async () => {
    const kernel = fakeKernel();
    const model = new FlowModel(kernel, { stack: 7 });
    await model.open();
    await model.setRegions([0, 1, 0, 9], [0, 2, 0, 2]);
    const last = kernel.calls[kernel.calls.length - 1][1];
    expect(last.src_region).toEqual([0, 1, 0, 2]);
    expect(last.dst_region).toBeNull(); // the whole grid: no region
    kernel.links = async () => {
      throw new Error('no open flow');
    };
    await model.setTopK(5);
    expect(model.error).toBe('no open flow');
    model.dispose();
    expect(kernel.calls[kernel.calls.length - 1]).toEqual(['close', 'flow-1']);
  });

  it('has pure helpers for thresholds, boxes and grids', () => {
    expect(thresholdAt(0, 2)).toBe(0);
    expect(thresholdAt(100, 2)).toBeCloseTo(2);
    expect(thresholdAt(50, 2)).toBeCloseTo(0.02);
    expect(clipBox([-1, 5], [4])).toBeNull();
    expect(clipBox([1, 3], [4])).toEqual([1, 3]);
    expect(gridShape([3])).toEqual([1, 3]);
    expect(gridShape([2, 3, 4])).toEqual([6, 4]);
    const links = {
      layer: 0,
      kind: 'gradient' as const,
      src: new Int32Array([0, 1]),
      dst: new Int32Array([1, 0]),
      value: new Float32Array([-1, 0.5]),
      srcGrads: null,
      dstGrads: null,
      totalLinks: 2,
      targetOnSource: null
    };
    expect(visibleLinks(links, 0.6, null)).toEqual([0]);
  });
});
