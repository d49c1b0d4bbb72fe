/**
 * The gradient-flow view's state: the layers and node gradients of a flow the kernel keeps
 * open, the top-k links of the selected transition (strongest first), and what the user
 * picked (layer, node, threshold, regions, node and flow kind). Threshold and selection
 * changes only filter the links already received (no kernel round trip); a new layer,
 * top-k, region or kind asks the kernel (`flow_links`), which applies regions before the
 * top-k. Pure logic, tested with Jest.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { KernelBridge } from '../kernel/bridge';
import { RequestArgs, RequestResult } from '../kernel/protocol';

export type FlowKind = 'gradient' | 'contribution';
export type NodeKind = 'spatial' | 'channel' | 'token' | 'feature' | 'element';
export type FlowLayer = RequestResult<'flow_open'>['layers'][number];
export type Offsets = FlowLayer['offsets_on_input'];
/** A half-open box of a node grid: [y0, y1, x0, x1] (or [i0, i1] for a 1-D grid). */
export type Box = number[] | null;

/** Where a flow comes from: captures, a stack record or a displayed flow's token. */
export type FlowSource =
  { ids: number[] } | { stack: number } | { display: string };

/** The links of one transition as the kernel sent them (strongest first). */
export interface ILinks {
  layer: number;
  kind: FlowKind;
  src: Int32Array;
  dst: Int32Array;
  value: Float32Array;
  srcGrads: Float32Array | null;
  dstGrads: Float32Array | null;
  totalLinks: number | null;
  targetOnSource: Offsets;
}

/** The node picked: in the transition's source layer or its target layer. */
export interface ISelection {
  role: 'src' | 'dst';
  node: number;
}

/** The requests the model makes (a bridge's client, or a fake in tests). */
export interface IFlowKernel {
  open(
    args: RequestArgs<'flow_open'>
  ): Promise<{ result: RequestResult<'flow_open'>; buffers: DataView[] }>;
  links(
    args: RequestArgs<'flow_links'>
  ): Promise<{ result: RequestResult<'flow_links'>; buffers: DataView[] }>;
  close(flow: string): void;
  /** Interrupt the requests the kernel is serving now; whether it asked. */
  interrupt?(): boolean;
}

/** The flow requests of a notebook's kernel connection. */
export function bridgeKernel(bridge: KernelBridge): IFlowKernel {
  const client = () => {
    if (!bridge.client) {
      throw new Error(
        'the notebook kernel is not connected to nopdb-lab (run a cell first)'
      );
    }
    return bridge.client;
  };
  return {
    open: args => client().request('flow_open', args),
    links: args => client().request('flow_links', args),
    interrupt: () => bridge.interruptRequests(),
    close: flow => {
      if (bridge.client) {
        void bridge.client.request('flow_close', { flow }).catch(() => {
          /* the kernel went away: nothing left to close */
        });
      }
    }
  };
}

export function toFloats(view: DataView | undefined): Float32Array | null {
  if (!view || view.byteLength === 0) {
    return null;
  }
  return new Float32Array(
    view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)
  );
}

function toInts(view: DataView): Int32Array {
  return new Int32Array(
    view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)
  );
}

/** Indices of links kept by a threshold on |value| and a selected node. */
export function visibleLinks(
  links: ILinks,
  threshold: number,
  selection: ISelection | null
): number[] {
  const out: number[] = [];
  const ends = selection
    ? selection.role === 'src'
      ? links.src
      : links.dst
    : null;
  for (let i = 0; i < links.value.length; i++) {
    if (Math.abs(links.value[i]) < threshold) {
      continue;
    }
    if (ends && selection && ends[i] !== selection.node) {
      continue;
    }
    out.push(i);
  }
  return out;
}

/** A box clipped to a grid, or null when it covers the whole grid or is empty. */
/**
 * The centre, on the input's pixel grid, of node `node` of a layer whose nodes sit there
 * as `on` says (node c spans [c·stride + offset, c·stride + offset + extent) per spatial
 * dimension). `grid` is the layer's node grid; its last `on.stride.length` dimensions
 * are the spatial ones. Null when the layer has no pixel offsets.
 */
export function nodeCentre(
  node: number,
  on: Offsets,
  grid: number[]
): number[] | null {
  if (!on || grid.length < on.stride.length) {
    return null;
  }
  const spatial = grid.slice(grid.length - on.stride.length);
  const index: number[] = [];
  let rest = node;
  for (let d = spatial.length - 1; d >= 0; d--) {
    index.unshift(rest % spatial[d]);
    rest = Math.floor(rest / spatial[d]);
  }
  return index.map(
    (c, d) => c * on.stride[d] + on.offset[d] + (on.extent[d] - 1) / 2
  );
}

/**
 * The node of a layer (placed on the input's pixel grid by `on`, its node grid `grid`)
 * whose receptive field is centred nearest to input pixel `pixel`: how a click on the
 * input or target heatmap picks a node of the selected or output layer through the
 * row/column offsets (vnittest's padding correction, here derived from the convolutions'
 * stride, padding, dilation and kernel). Null when the layer has no pixel offsets or
 * its grid has non-spatial leading dimensions (channel nodes).
 */
export function nodeAtPixel(
  pixel: number[],
  on: Offsets,
  grid: number[]
): number | null {
  if (!on || grid.length !== on.stride.length || pixel.length !== grid.length) {
    return null;
  }
  let node = 0;
  for (let d = 0; d < grid.length; d++) {
    const centre0 = on.offset[d] + (on.extent[d] - 1) / 2;
    const c = Math.round((pixel[d] - centre0) / on.stride[d]);
    node = node * grid[d] + Math.max(0, Math.min(grid[d] - 1, c));
  }
  return node;
}

/**
 * Map node `node` of layer `from` to the node of layer `to` that reads the same place of
 * the input (both placed on the input grid by their offsets); null without offsets.
 */
export function mapNode(
  node: number,
  from: FlowLayer | undefined,
  to: FlowLayer | undefined
): number | null {
  if (!from || !to) {
    return null;
  }
  const centre = nodeCentre(node, from.offsets_on_input, from.grid);
  return centre === null
    ? null
    : nodeAtPixel(centre, to.offsets_on_input, to.grid);
}

export function clipBox(box: Box, grid: number[]): Box {
  if (!box) {
    return null;
  }
  const dims = grid.length === 1 ? [grid[0]] : grid.slice(-2);
  const out: number[] = [];
  let whole = true;
  dims.forEach((size, d) => {
    const lo = Math.max(0, Math.min(size, Math.floor(box[2 * d] ?? 0)));
    const hi = Math.max(lo, Math.min(size, Math.floor(box[2 * d + 1] ?? size)));
    out.push(lo, hi);
    whole = whole && lo === 0 && hi === size;
  });
  return whole ? null : out;
}

export class FlowModel {
  constructor(
    private readonly _kernel: IFlowKernel,
    readonly source: FlowSource
  ) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The kernel's flow id (null until open). */
  flowId: string | null = null;
  layers: FlowLayer[] = [];
  /** Each layer's node gradients (as opened, in the flow's kind). */
  nodeGrads: (Float32Array | null)[] = [];
  /** Each layer's values summed per node (its representation; null from older kernels). */
  nodeValues: (Float32Array | null)[] = [];
  links: ILinks | null = null;
  /** Transition `layer` → `layer + 1`. */
  layer = 0;
  topK = 2000;
  threshold = 0;
  selection: ISelection | null = null;
  srcRegion: Box = null;
  dstRegion: Box = null;
  kind: FlowKind = 'gradient';
  nodes: NodeKind = 'spatial';
  /** Row/column offsets of target nodes on the source grid (manual override kept). */
  offsets: { stride: number[]; offset: number[] } | null = null;
  offsetsOverridden = false;
  busy = false;
  error: string | null = null;
  /** How many kernel round trips `flow_links` took (the view shows none for a threshold). */
  linkRequests = 0;

  get transitions(): number {
    return Math.max(0, this.layers.length - 1);
  }

  /** Open (or reopen with other nodes) the flow and fetch the first links. */
  async open(): Promise<void> {
    await this._run(async () => {
      if (this.flowId) {
        this._kernel.close(this.flowId);
        this.flowId = null;
      }
      const args: RequestArgs<'flow_open'> = { ...this.source };
      if (!('display' in this.source)) {
        args.nodes = this.nodes;
        args.kind = this.kind;
      }
      const { result, buffers } = await this._kernel.open(args);
      this.flowId = result.flow;
      this.kind = result.kind;
      this.layers = result.layers;
      this.nodeGrads = result.layers.map((_, i) => toFloats(buffers[i]));
      const n = result.layers.length;
      this.nodeValues = result.layers.map((_, i) => toFloats(buffers[n + i]));
      if (this.layers.length > 0) {
        this.nodes = (this.layers[0].node_kind as NodeKind) ?? this.nodes;
      }
      this.layer = Math.min(this.layer, Math.max(0, this.transitions - 1));
      this.selection = null;
      await this._fetch();
    });
  }

  /** Pick a transition; fetches its links. */
  async setLayer(layer: number): Promise<void> {
    if (layer === this.layer && this.links) {
      return;
    }
    this.layer = layer;
    this.selection = null;
    this.srcRegion = this.dstRegion = null;
    this.offsetsOverridden = false;
    await this._run(() => this._fetch());
  }

  async setTopK(topK: number): Promise<void> {
    this.topK = Math.max(1, Math.floor(topK));
    await this._run(() => this._fetch());
  }

  async setKind(kind: FlowKind): Promise<void> {
    this.kind = kind;
    await this._run(() => this._fetch());
  }

  async setNodes(nodes: NodeKind): Promise<void> {
    this.nodes = nodes;
    await this.open();
  }

  /** Regions apply in the kernel before the top-k. */
  async setRegions(src: Box, dst: Box): Promise<void> {
    const grids = this.grids();
    this.srcRegion = clipBox(src, grids[0]);
    this.dstRegion = clipBox(dst, grids[1]);
    await this._run(() => this._fetch());
  }

  /** Local: filters the links already here. */
  setThreshold(threshold: number): void {
    this.threshold = Math.max(0, threshold);
    this._changed.emit();
  }

  /** Local: a node of the source or target layer (null: all links). */
  select(selection: ISelection | null): void {
    this.selection = selection;
    this._changed.emit();
  }

  setOffsets(stride: number[], offset: number[]): void {
    this.offsets = { stride, offset };
    this.offsetsOverridden = true;
    this._changed.emit();
  }

  /** Source and target node grids of the current transition. */
  grids(): [number[], number[]] {
    const a = this.layers[this.layer]?.grid ?? [];
    const b = this.layers[this.layer + 1]?.grid ?? [];
    return [a, b];
  }

  visible(): number[] {
    return this.links
      ? visibleLinks(this.links, this.threshold, this.selection)
      : [];
  }

  /** The largest |value| among the links held (the threshold slider's top). */
  maxAbs(): number {
    let m = 0;
    if (this.links) {
      for (const v of this.links.value) {
        m = Math.max(m, Math.abs(v));
      }
    }
    return m;
  }

  dispose(): void {
    if (this.flowId) {
      this._kernel.close(this.flowId);
      this.flowId = null;
    }
    Signal.clearData(this);
  }

  private async _fetch(): Promise<void> {
    if (!this.flowId || this.transitions === 0) {
      this.links = null;
      return;
    }
    this.linkRequests++;
    const { result, buffers } = await this._kernel.links({
      flow: this.flowId,
      layer: this.layer,
      top_k: this.topK,
      src_region: this.srcRegion,
      dst_region: this.dstRegion,
      kind: this.kind
    });
    const target = result.offsets.target_on_source;
    this.links = {
      layer: result.layer,
      kind: result.kind,
      src: toInts(buffers[0]),
      dst: toInts(buffers[1]),
      value: toFloats(buffers[2]) ?? new Float32Array(0),
      srcGrads: toFloats(buffers[3]),
      dstGrads: toFloats(buffers[4]),
      totalLinks: result.total_links,
      targetOnSource: target
    };
    if (!this.offsetsOverridden) {
      this.offsets = target
        ? { stride: target.stride, offset: target.offset }
        : null;
    }
  }

  /** Stop what the kernel computes for this view (Stop beside "Computing…"). */
  stop(): boolean {
    return this._kernel.interrupt?.() ?? false;
  }

  private async _run(work: () => Promise<void>): Promise<void> {
    this.busy = true;
    this.error = null;
    this._changed.emit();
    try {
      await work();
    } catch (reason) {
      this.error = (reason as Error).message ?? String(reason);
    } finally {
      this.busy = false;
      this._changed.emit();
    }
  }

  private _changed = new Signal<this, void>(this);
}
