import {
  clipBox,
  FlowModel,
  IFlowKernel,
  mapNode,
  nodeAtPixel,
  nodeCentre,
  visibleLinks
} from '../flow/model';
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

  it('is busy while the kernel computes, and Stop interrupts it', async () => {
    const kernel = fakeKernel();
    let fail: (error: Error) => void = () => undefined;
    kernel.open = () => new Promise((_, reject) => (fail = reject));
    kernel.interrupt = jest.fn(() => true);
    const model = new FlowModel(kernel, { ids: [1, 2] });
    const opened = model.open();
    expect(model.busy).toBe(true);
    expect(model.stop()).toBe(true);
    expect(kernel.interrupt).toHaveBeenCalledTimes(1);
    fail(
      new Error(
        "flow_open was interrupted (the kernel's stop button) before it finished"
      )
    );
    await opened;
    expect(model.busy).toBe(false);
    expect(model.error).toContain('interrupted');
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

describe('mapping nodes through the offsets', () => {
  // a 16x16 input, conv 3x3 stride 2 padding 1 -> 8x8, then conv 3x3 padding 1 -> 8x8:
  // the offsets the kernel derives (FlowLayer.offsets_on_input)
  const input = {
    ...LAYER,
    index: 0,
    name: 'x',
    grid: [16, 16],
    nodes: 256,
    offsets_on_input: { stride: [1, 1], offset: [0, 0], extent: [1, 1] }
  };
  const conv1 = {
    ...LAYER,
    index: 1,
    name: 'conv1',
    grid: [8, 8],
    nodes: 64,
    offsets_on_input: { stride: [2, 2], offset: [-1, -1], extent: [3, 3] }
  };
  const conv2 = {
    ...LAYER,
    index: 2,
    name: 'conv2',
    grid: [8, 8],
    nodes: 64,
    offsets_on_input: { stride: [2, 2], offset: [-3, -3], extent: [7, 7] }
  };

  it('places a node at the centre of its receptive field', () => {
    // conv1 node (1, 2) reads input rows 1..3 and columns 3..5
    expect(nodeCentre(1 * 8 + 2, conv1.offsets_on_input, conv1.grid)).toEqual([
      2, 4
    ]);
    expect(nodeCentre(5, null, [8, 8])).toBeNull();
  });

  it('picks the node whose field is centred nearest a pixel, clamped to the grid', () => {
    expect(nodeAtPixel([2, 4], conv1.offsets_on_input, conv1.grid)).toBe(10);
    expect(nodeAtPixel([3, 5], conv1.offsets_on_input, conv1.grid)).toBe(
      // 3 sits between the centres 2 and 4: rounds half up to row 2, column 3
      2 * 8 + 3
    );
    expect(nodeAtPixel([-5, 40], conv1.offsets_on_input, conv1.grid)).toBe(7);
    // channel nodes (a leading dimension without offsets) cannot be mapped
    expect(nodeAtPixel([2, 4], conv1.offsets_on_input, [4, 8, 8])).toBeNull();
  });

  it('maps an input click onto the selected layer and a target click onto the output layer', () => {
    // input pixel (5, 9) is read most centrally by conv1 node (3, 5) (centre 6, 10 is
    // one off; centre 4, 8 also one off: round half up picks the later one)
    expect(mapNode(5 * 16 + 9, input, conv1)).toBe(
      nodeAtPixel([5, 9], conv1.offsets_on_input, conv1.grid)
    );
    // the target (conv2) sits on the same places as conv1: a node maps onto itself
    for (const node of [0, 10, 63]) {
      expect(mapNode(node, conv2, conv1)).toBe(node);
    }
    // and back onto the input: the centre pixel of its field
    expect(mapNode(10, conv1, input)).toBe(2 * 16 + 4);
    expect(mapNode(10, { ...conv1, offsets_on_input: null }, input)).toBeNull();
  });
});
