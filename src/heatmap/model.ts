/**
 * The heatmap viewer's state and its requests to the kernel, apart from the views: which
 * slice is asked for (rows, columns, every other dimension fixed, averaged or spread into
 * a grid), how it is coloured, labels and an image overlay. Views listen to the signal
 * of what they draw, so a hover does not repaint the map and a colormap change does not
 * ask the kernel again.
 */
import { ISignal, Signal } from '@lumino/signaling';
import type * as React from 'react';

import { ProtocolClient } from '../kernel/client';
import { PathStep, RequestArgs } from '../kernel/protocol';
import {
  ColormapName,
  COLORMAPS,
  lookupTable,
  Normalisation,
  normalise,
  paint,
  Scale
} from './colormap';
import { IOverlayImage } from './PatchOverlay';
import { patchLayout } from './patches';
import { DimMode, gridPosition, heatmapRequest } from './request';

/** What the model needs of a kernel connection (a KernelBridge, or a fake in tests). */
export interface IHeatmapConnection {
  readonly client: Pick<ProtocolClient, 'request'> | null;
  /** Interrupt the requests the kernel is serving now (a KernelBridge has it). */
  interruptRequests?(): boolean;
}

/** What the viewer shows: one value of one capture. */
export interface IHeatmapSource {
  bridge: IHeatmapConnection;
  captureId: number;
  path: PathStep[];
  expression: string;
  shape: number[];
  /** Signed data opens with the diverging colormap. */
  signed: boolean;
  /** Paint the value (default), its gradient, |gradient| or gradient × value. */
  of?: HeatmapOf;
  /**
   * A probe input as it is now (pending edits included): sliced by the `probe_heatmap`
   * op instead of `heatmap` on `captureId`/`path`.
   */
  live?: { probe: string; input: string };
  /**
   * Names of the rows and/or columns known when the view opens (the sink grid's layers
   * and heads); a labels expression applied later replaces them.
   */
  axisLabels?: { rows?: string[]; cols?: string[] };
}

/** Mouse handling that replaces pan on the single map (the probe's edit mode). */
export interface ICellTool {
  down(r: number, c: number, event: React.MouseEvent): void;
  move(r: number, c: number): void;
  up(): void;
}

/** What a heatmap paints of a value path (the `heatmap` request's `of`). */
export type HeatmapOf = 'value' | 'grad' | 'abs_grad' | 'grad_x_value';

/** One slice as the kernel sent it. */
export interface ISlice {
  grid: number[] | null;
  rows: number;
  cols: number;
  rowStep: number;
  colStep: number;
  reduce: string | null;
  values: Float32Array;
  nan: number;
  inf: number;
}

/** The slice painted with the current colours: one pixel array per map of a grid. */
export interface IPainted {
  pixels: Uint8ClampedArray[];
  range: { low: number; high: number };
  table: Uint8ClampedArray;
}

/**
 * The cell under the mouse: map `g` of a grid (0 for one map), row, column; `detail`
 * when it is a cell of the zoomed region; `fy`/`fx` where in the map the mouse is
 * (fractions of its height and width), to find the source cell under a pooled cell.
 */
export interface IHover {
  g: number;
  r: number;
  c: number;
  detail?: boolean;
  fy?: number;
  fx?: number;
}

/** The zoomed part of a pooled map, sliced again at full resolution (or pooled less). */
export interface IDetail extends ISlice {
  /** First source row and column, and how many source rows and columns it covers. */
  row0: number;
  col0: number;
  rowSpan: number;
  colSpan: number;
  /** Painted with the whole map's colour range, so colours agree. */
  pixels: Uint8ClampedArray;
}

/** The visible part of the single map, as fractions of its height and width. */
export interface IVisible {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** One source cell's exact value (under a pooled cell). */
interface IExact {
  r: number;
  c: number;
  value: number;
}

export interface IZoom {
  k: number;
  x: number;
  y: number;
}

/** Largest side of a single map the kernel sends (it pools bigger ones). */
export const MAX_SIZE = 512;
/** Largest side of each small map of a grid. */
export const GRID_MAX_SIZE = 128;
/** How long the view stays still before the zoomed region or an exact value is asked. */
export const DETAIL_DELAY_MS = 150;

/** The viewer's state; setters ask the kernel again only when the slice changes. */
export class HeatmapModel {
  constructor(source: IHeatmapSource) {
    this._source = source;
    const ndim = source.shape.length;
    this._rowsDim = ndim - 2;
    this._colsDim = ndim - 1;
    this._index = source.shape.map(() => 0);
    this._modes = source.shape.map(() => 'index');
    this._colormap = source.signed ? 'RdBu' : 'viridis';
  }

  /**
   * Start from saved settings (an output of `nopdb_lab.show`): rows, columns, the index
   * of other dimensions, which dimensions form the grid, colours. Asks nothing of the
   * kernel (`fetch` does); settings that do not fit the shape are ignored.
   */
  configure(settings: {
    rowsDim?: number;
    colsDim?: number;
    index?: Record<string, number>;
    gridDims?: number[];
    colormap?: ColormapName;
    reduce?: 'max' | 'mean';
  }): void {
    const ndim = this._source.shape.length;
    const fits = (d: number | undefined): d is number =>
      d !== undefined && Number.isInteger(d) && d >= 0 && d < ndim;
    if (
      fits(settings.rowsDim) &&
      fits(settings.colsDim) &&
      settings.rowsDim !== settings.colsDim
    ) {
      this._rowsDim = settings.rowsDim;
      this._colsDim = settings.colsDim;
    }
    for (const [dim, i] of Object.entries(settings.index ?? {})) {
      const d = Number(dim);
      if (
        fits(d) &&
        Number.isInteger(i) &&
        i >= 0 &&
        i < this._source.shape[d]
      ) {
        this._index[d] = i;
      }
    }
    for (const d of settings.gridDims ?? []) {
      if (fits(d) && d !== this._rowsDim && d !== this._colsDim) {
        this._modes[d] = 'grid';
      }
    }
    if (settings.colormap && settings.colormap in COLORMAPS) {
      this._colormap = settings.colormap;
    }
    if (settings.reduce === 'max' || settings.reduce === 'mean') {
      this._reduce = settings.reduce;
    }
  }

  /** In a cell's output the wheel scrolls the notebook; Ctrl/⌘ + wheel zooms. */
  wheelZoomNeedsModifier = false;

  /** What is shown; `retarget` points the viewer at another capture (a new run). */
  get source(): IHeatmapSource {
    return this._source;
  }

  /**
   * Show another value of the same shape (a probe's newer run or attribution), keeping
   * the slice settings, and fetch it.
   */
  retarget(change: Partial<IHeatmapSource>): Promise<void> {
    this._source = { ...this._source, ...change };
    this._stateChanged.emit();
    return this.fetch();
  }

  /** Cells outlined on the single map (row * cols + column of the slice): a Δ view. */
  get marks(): ReadonlySet<number> {
    return this._marks;
  }

  setMarks(marks: Set<number>): void {
    this._marks = marks;
    this._stateChanged.emit();
  }

  /** The mouse tool of the single map, or null to pan. */
  get cellTool(): ICellTool | null {
    return this._cellTool;
  }

  setCellTool(tool: ICellTool | null): void {
    this._cellTool = tool;
    this._stateChanged.emit();
  }

  /**
   * The full index of cell (r, c) of the single map, or null where a cell is not one
   * element (pooled, averaged or a grid of maps).
   */
  fullIndex(r: number, c: number): number[] | null {
    const slice = this._slice;
    if (
      !slice ||
      slice.grid ||
      slice.rowStep !== 1 ||
      slice.colStep !== 1 ||
      this._modes.some(
        (m, d) => m !== 'index' && d !== this._rowsDim && d !== this._colsDim
      )
    ) {
      return null;
    }
    return this._index.map((i, d) =>
      d === this._rowsDim ? r : d === this._colsDim ? c : i
    );
  }

  /** Controls changed (dimensions, modes, colours, labels, overlay, errors). */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  /** A new slice arrived or the colours changed: the maps must be repainted. */
  get paintedChanged(): ISignal<this, IPainted | null> {
    return this._paintedChanged;
  }

  /** The hovered cell changed (cheap: only the read-out re-renders). */
  get hoverChanged(): ISignal<this, IHover | null> {
    return this._hoverChanged;
  }

  /** The zoom or pan changed. */
  get zoomChanged(): ISignal<this, IZoom> {
    return this._zoomChanged;
  }

  get rowsDim(): number {
    return this._rowsDim;
  }
  get colsDim(): number {
    return this._colsDim;
  }
  get index(): readonly number[] {
    return this._index;
  }
  get modes(): readonly DimMode[] {
    return this._modes;
  }
  get colormap(): ColormapName {
    return this._colormap;
  }
  get scale(): Scale {
    return this._scale;
  }
  get normalisation(): Normalisation {
    return this._normalisation;
  }
  get reduce(): 'max' | 'mean' {
    return this._reduce;
  }
  get slice(): ISlice | null {
    return this._slice;
  }
  /** The last request's error, if it failed. */
  get error(): string | null {
    return this._error;
  }
  get hover(): IHover | null {
    return this._hover;
  }
  get zoom(): IZoom {
    return this._zoom;
  }
  get labels(): string[] | null {
    return this._labels;
  }
  get labelsError(): string | null {
    return this._labelsError;
  }
  get image(): IOverlayImage | null {
    return this._image;
  }
  get imageError(): string | null {
    return this._imageError;
  }
  /** The query token the patch overlay shows (clamped to the slice). */
  get query(): number {
    return this._slice
      ? Math.min(this._query, this._slice.rows - 1)
      : this._query;
  }
  get opacity(): number {
    return this._opacity;
  }
  /** When the current request started (performance.now()), for the speed benchmark. */
  get requestStartedAt(): number {
    return this._started;
  }

  setRowsDim(dim: number): void {
    if (dim !== this._rowsDim && dim !== this._colsDim) {
      this._rowsDim = dim;
      this._sliceSettingsChanged();
    }
  }

  setColsDim(dim: number): void {
    if (dim !== this._colsDim && dim !== this._rowsDim) {
      this._colsDim = dim;
      this._sliceSettingsChanged();
    }
  }

  /** Fix dimension `dim` at `value` (its slider). */
  setIndex(dim: number, value: number): void {
    if (this._index[dim] !== value) {
      this._index = this._index.map((v, d) => (d === dim ? value : v));
      this._sliceSettingsChanged();
    }
  }

  /** Show dimension `dim` at one index, averaged or as a grid of maps. */
  setMode(dim: number, mode: DimMode): void {
    if (this._modes[dim] !== mode) {
      this._modes = this._modes.map((m, d) => (d === dim ? mode : m));
      this._sliceSettingsChanged();
    }
  }

  /** How the kernel pools maps larger than it sends. */
  setReduce(reduce: 'max' | 'mean'): void {
    if (reduce !== this._reduce) {
      this._reduce = reduce;
      this._sliceSettingsChanged();
    }
  }

  setColormap(colormap: ColormapName): void {
    if (colormap !== this._colormap) {
      this._colormap = colormap;
      this._coloursChanged();
    }
  }

  setScale(scale: Scale): void {
    if (scale !== this._scale) {
      this._scale = scale;
      this._coloursChanged();
    }
  }

  setNormalisation(normalisation: Normalisation): void {
    if (normalisation !== this._normalisation) {
      this._normalisation = normalisation;
      this._coloursChanged();
    }
  }

  setHover(hover: IHover | null): void {
    const same =
      hover === this._hover ||
      (hover &&
        this._hover &&
        hover.g === this._hover.g &&
        hover.r === this._hover.r &&
        hover.c === this._hover.c &&
        hover.detail === this._hover.detail);
    if (!same) {
      this._hover = hover;
      this._hoverChanged.emit(hover);
    }
    this._scheduleExact(hover);
  }

  /** Zoom by `steps` wheel notches (negative: in) keeping the point (px, py) in place. */
  zoomAt(px: number, py: number, deltaY: number): void {
    const z = this._zoom;
    const k = Math.min(64, Math.max(1, z.k * Math.pow(1.2, -deltaY / 100)));
    this._setZoom({
      k,
      x: px - ((px - z.x) * k) / z.k,
      y: py - ((py - z.y) * k) / z.k
    });
  }

  /** Pan by a drag of (dx, dy) pixels. */
  pan(dx: number, dy: number): void {
    this._setZoom({
      ...this._zoom,
      x: this._zoom.x + dx,
      y: this._zoom.y + dy
    });
  }

  resetZoom(): void {
    this._setZoom({ k: 1, x: 0, y: 0 });
  }

  setQuery(query: number): void {
    if (query !== this._query) {
      this._query = query;
      this._stateChanged.emit();
    }
  }

  setOpacity(opacity: number): void {
    if (opacity !== this._opacity) {
      this._opacity = opacity;
      this._stateChanged.emit();
    }
  }

  /** The `heatmap` request's arguments for the current settings. */
  requestArgs(): RequestArgs<'heatmap'> {
    const request = heatmapRequest(
      this.source.shape,
      this._rowsDim,
      this._colsDim,
      this._index,
      this._modes
    );
    return {
      id: this.source.captureId,
      path: this.source.path,
      rows_dim: this._rowsDim,
      cols_dim: this._colsDim,
      ...request,
      max_size: request.grid_dims.length ? GRID_MAX_SIZE : MAX_SIZE,
      reduce: this._reduce,
      ...(this.source.of && this.source.of !== 'value'
        ? { of: this.source.of }
        : {})
    };
  }

  /**
   * Ask the kernel for the slice of the current settings. An answer to an older request
   * than the newest is dropped (a slider moved on while it travelled).
   */
  async fetch(): Promise<void> {
    const client = this.source.bridge.client;
    if (!client) {
      this._error = 'The kernel is not connected.';
      this._stateChanged.emit();
      return;
    }
    this._started = performance.now();
    const ticket = ++this._requested;
    this._loading = true;
    try {
      const { slice } = await this._sliceRequest(client, {});
      if (ticket !== this._requested) {
        return; // a newer request is on its way
      }
      this._slice = slice;
      this._error = null;
      this._detail = null;
      this._exact = null;
      this._coloursChanged();
      this._scheduleDetail();
    } catch (err) {
      if (ticket === this._requested) {
        this._error = (err as Error).message;
        this._stateChanged.emit();
      }
    } finally {
      if (ticket === this._requested) {
        this._loading = false;
        this._stateChanged.emit();
      }
    }
  }

  /** Whether the newest slice is still being computed in the kernel. */
  get loading(): boolean {
    return this._loading;
  }

  /**
   * Stop the slice being computed (a long one: a mean over many heads of a long prompt):
   * the kernel interrupts the request, which ends with an "interrupted" error here.
   */
  stop(): boolean {
    return this._source.bridge.interruptRequests?.() ?? false;
  }

  /** One `heatmap` (or `probe_heatmap`) request with the current settings and `extra`. */
  private async _sliceRequest(
    client: Pick<ProtocolClient, 'request'>,
    extra: Partial<RequestArgs<'heatmap'>>
  ) {
    const live = this._source.live;
    const { id, path, ...sliceArgs } = { ...this.requestArgs(), ...extra };
    const { result, buffers } = live
      ? await client.request('probe_heatmap', {
          ...sliceArgs,
          probe: live.probe,
          input: live.input
        })
      : await client.request('heatmap', { ...sliceArgs, id, path });
    const view = buffers[0];
    const slice: ISlice = {
      grid: result.grid,
      rows: result.rows,
      cols: result.cols,
      rowStep: result.row_step,
      colStep: result.col_step,
      reduce: result.reduce,
      values: new Float32Array(
        view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)
      ),
      nan: result.nan,
      inf: result.inf
    };
    return { result, slice };
  }

  /** Whether the single map is pooled (so zooming or hovering asks for exact values). */
  get pooled(): boolean {
    const slice = this._slice;
    return Boolean(
      slice && !slice.grid && (slice.rowStep > 1 || slice.colStep > 1)
    );
  }

  /** The zoomed region at full resolution, once it arrived (null at zoom 1). */
  get detail(): IDetail | null {
    return this._detail;
  }

  /** The view says which part of the map is visible (after a zoom, a pan or a resize). */
  setVisible(visible: IVisible): void {
    this._visible = visible;
    this._scheduleDetail();
  }

  /** The source rows and columns the visible part covers: `[row0, row1, col0, col1]`. */
  visibleRegion(): [number, number, number, number] {
    const n = this.source.shape[this._rowsDim];
    const m = this.source.shape[this._colsDim];
    const v = this._visible;
    const clamp = (x: number, size: number) => Math.min(size, Math.max(0, x));
    const row0 = clamp(Math.floor(v.top * n), n - 1);
    const col0 = clamp(Math.floor(v.left * m), m - 1);
    const row1 = Math.max(row0 + 1, clamp(Math.ceil(v.bottom * n), n));
    const col1 = Math.max(col0 + 1, clamp(Math.ceil(v.right * m), m));
    return [row0, row1, col0, col1];
  }

  private _scheduleDetail(): void {
    clearTimeout(this._detailTimer);
    const whole = this._zoom.k <= 1 || !this.pooled || this._cellTool !== null;
    if (whole) {
      if (this._detail) {
        this._detail = null;
        ++this._detailTicket;
        this._stateChanged.emit();
        this._paintedChanged.emit(this.painted);
      }
      return;
    }
    this._detailTimer = setTimeout(
      () => void this.fetchDetail(),
      DETAIL_DELAY_MS
    );
  }

  /** Ask for the visible region of the pooled map at full resolution (≤ MAX_SIZE a side). */
  async fetchDetail(): Promise<void> {
    const client = this.source.bridge.client;
    if (!client || !this.pooled) {
      return;
    }
    const [row0, row1, col0, col1] = this.visibleRegion();
    const have = this._detail;
    if (
      have &&
      have.row0 === row0 &&
      have.col0 === col0 &&
      have.rowSpan === row1 - row0 &&
      have.colSpan === col1 - col0
    ) {
      return;
    }
    const ticket = ++this._detailTicket;
    const requested = this._requested;
    try {
      const { result, slice } = await this._sliceRequest(client, {
        region: { row0, row1, col0, col1 },
        max_size: MAX_SIZE
      });
      if (ticket !== this._detailTicket || requested !== this._requested) {
        return; // the view moved on, or the slice changed
      }
      this._detail = {
        ...slice,
        row0: result.row0,
        col0: result.col0,
        rowSpan: row1 - row0,
        colSpan: col1 - col0,
        pixels: this._paintWithMapRange(slice)
      };
      this._stateChanged.emit();
      this._paintedChanged.emit(this.painted);
    } catch (err) {
      if (ticket === this._detailTicket) {
        this._error = `Zoomed region: ${(err as Error).message}`;
        this._stateChanged.emit();
      }
    }
  }

  /** A slice's pixels in the colours of the whole map (same range and scale). */
  private _paintWithMapRange(slice: ISlice): Uint8ClampedArray {
    const range = this.painted?.range;
    const { positions } = normalise(slice.values, slice.rows, slice.cols, {
      scale: this._scale,
      normalisation: this._normalisation,
      diverging: this._colormap === 'RdBu',
      fixed: this._normalisation === 'global' ? range : undefined
    });
    return paint(positions, lookupTable(this._colormap));
  }

  /** The source cell under the mouse on a pooled map, or null. */
  private _hoveredSource(
    hover: IHover | null
  ): { r: number; c: number } | null {
    if (
      !hover ||
      hover.detail ||
      !this.pooled ||
      hover.fy === undefined ||
      hover.fx === undefined
    ) {
      return null;
    }
    const n = this.source.shape[this._rowsDim];
    const m = this.source.shape[this._colsDim];
    return {
      r: Math.min(n - 1, Math.max(0, Math.floor(hover.fy * n))),
      c: Math.min(m - 1, Math.max(0, Math.floor(hover.fx * m)))
    };
  }

  /** Ask for the exact value of the source cell under a pooled cell (after a pause). */
  private _scheduleExact(hover: IHover | null): void {
    clearTimeout(this._exactTimer);
    const cell = this._hoveredSource(hover);
    const client = this.source.bridge.client;
    if (!cell || !client) {
      return;
    }
    if (this._exact && this._exact.r === cell.r && this._exact.c === cell.c) {
      return;
    }
    this._exactTimer = setTimeout(async () => {
      const ticket = ++this._exactTicket;
      const requested = this._requested;
      try {
        const { slice } = await this._sliceRequest(client, {
          region: {
            row0: cell.r,
            row1: cell.r + 1,
            col0: cell.c,
            col1: cell.c + 1
          },
          max_size: 1
        });
        if (ticket === this._exactTicket && requested === this._requested) {
          this._exact = { ...cell, value: slice.values[0] };
          this._hoverChanged.emit(this._hover);
        }
      } catch {
        // the readout keeps the pooled value; a failing slice shows its error elsewhere
      }
    }, DETAIL_DELAY_MS);
  }

  /** Name rows and/or columns with the list a Python expression evaluates to (empty: none). */
  async applyLabels(expression: string): Promise<void> {
    if (!expression.trim()) {
      this._labels = null;
      this._labelsError = null;
    } else {
      try {
        const client = this._client();
        const response = await client.request('labels', { expression });
        this._labels = response.result.labels;
        this._labelsError = null;
      } catch (err) {
        this._labelsError = (err as Error).message;
      }
    }
    this._stateChanged.emit();
  }

  /** Overlay the image a Python expression evaluates to (empty: none). */
  async applyImage(expression: string): Promise<void> {
    if (!expression.trim()) {
      this._image = null;
      this._imageError = null;
    } else {
      try {
        const client = this._client();
        const response = await client.request('image', { expression });
        const view = response.buffers[0];
        this._image = {
          width: response.result.width,
          height: response.result.height,
          rgb: new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
        };
        this._imageError = null;
      } catch (err) {
        this._imageError = (err as Error).message;
      }
    }
    this._stateChanged.emit();
  }

  /** The slice painted with the current colours (all maps of a grid share one range). */
  get painted(): IPainted | null {
    const slice = this._slice;
    if (!slice) {
      return null;
    }
    if (!this._painted) {
      const maps = (slice.grid ?? [1]).reduce((a, b) => a * b, 1);
      const { positions, range } = normalise(
        slice.values,
        maps * slice.rows,
        slice.cols,
        {
          scale: this._scale,
          normalisation: this._normalisation,
          diverging: this._colormap === 'RdBu'
        }
      );
      const table = lookupTable(this._colormap);
      const size = slice.rows * slice.cols;
      const pixels = Array.from({ length: maps }, (_, g) =>
        paint(positions.subarray(g * size, (g + 1) * size), table)
      );
      this._painted = { pixels, range, table };
    }
    return this._painted;
  }

  /** Labels of the rows, when the labels' length matches the rows dimension. */
  get rowLabels(): string[] | null {
    return this._axisLabels(this._rowsDim);
  }

  /** Labels of the columns, when their length matches the columns dimension. */
  get colLabels(): string[] | null {
    return this._axisLabels(this._colsDim);
  }

  /** An applied labels expression's list, else the source's own names of `dim`. */
  private _axisLabels(dim: number): string[] | null {
    const size = this.source.shape[dim];
    const labels = this._labels;
    if (labels) {
      return labels.length === size ? labels : null;
    }
    const own = this.source.axisLabels;
    const ndim = this.source.shape.length;
    const named =
      dim === ndim - 2 ? own?.rows : dim === ndim - 1 ? own?.cols : undefined;
    return named && named.length === size ? named : null;
  }

  /** Why applied labels name neither axis, if they do not. */
  get labelMismatch(): string | null {
    const labels = this._labels;
    if (!labels || this.rowLabels || this.colLabels) {
      return null;
    }
    const shape = this.source.shape;
    return (
      `${labels.length} labels, but rows have ${shape[this._rowsDim]} and columns ` +
      `${shape[this._colsDim]}`
    );
  }

  /** The dimensions spread into the grid of small maps. */
  get gridDims(): number[] {
    return this.requestArgs().grid_dims ?? [];
  }

  /** How many maps the slice holds (1 unless it is a grid). */
  get mapCount(): number {
    return (this._slice?.grid ?? [1]).reduce((a, b) => a * b, 1);
  }

  /** "dim 0 = 1, dim 1 = 3": which map of the grid `g` is. */
  gridLabel(g: number): string {
    const dims = this.gridDims;
    return gridPosition(g, this._slice?.grid ?? [1])
      .map((i, k) => `dim ${dims[k]} = ${i}`)
      .join(', ');
  }

  /** The patch layout for the image overlay, when the slice is a square unpooled map. */
  get patchLayout(): ReturnType<typeof patchLayout> | null {
    const slice = this._slice;
    return slice &&
      !slice.grid &&
      slice.rows === slice.cols &&
      slice.rowStep === 1
      ? patchLayout(slice.rows)
      : null;
  }

  /** The read-out of the hovered cell, or the hint to hover. */
  get hoverText(): string {
    const slice = this._slice;
    const hover = this._hover;
    const hint = 'Hover the map to read a value.';
    if (!slice || !hover) {
      return hint;
    }
    const span = (i: number, step: number, first: number) =>
      step > 1
        ? `${first + i * step}–${first + i * step + step - 1}`
        : `${first + i}`;
    const name = (names: string[] | null, i: number) =>
      names && names[i] !== undefined ? ` ${JSON.stringify(names[i])}` : '';
    const cell = (r: number, c: number) =>
      `row ${r}${name(this.rowLabels, r)}, column ${c}${name(this.colLabels, c)}`;
    const detail = this._detail;
    if (hover.detail && detail) {
      const value = detail.values[hover.r * detail.cols + hover.c];
      if (value === undefined) {
        return hint;
      }
      if (detail.rowStep === 1 && detail.colStep === 1) {
        return `${cell(detail.row0 + hover.r, detail.col0 + hover.c)}: ${value}`;
      }
      return (
        `rows ${span(hover.r, detail.rowStep, detail.row0)}, columns ` +
        `${span(hover.c, detail.colStep, detail.col0)} (${detail.reduce}, zoom in ` +
        `further for single cells): ${value}`
      );
    }
    const value =
      slice.values[(hover.g * slice.rows + hover.r) * slice.cols + hover.c];
    if (value === undefined) {
      return hint;
    }
    const grid = slice.grid ? `${this.gridLabel(hover.g)}, ` : '';
    if (slice.rowStep === 1 && slice.colStep === 1) {
      return `${grid}${cell(hover.r, hover.c)}: ${value}`;
    }
    const pooled =
      `${slice.reduce} of rows ${span(hover.r, slice.rowStep, 0)}, columns ` +
      `${span(hover.c, slice.colStep, 0)}: ${value}`;
    const source = this._hoveredSource(hover);
    const exact = this._exact;
    if (source && exact && exact.r === source.r && exact.c === source.c) {
      return `${cell(exact.r, exact.c)}: ${exact.value} · ${pooled}`;
    }
    return `${grid}${pooled}`;
  }

  private _client(): Pick<ProtocolClient, 'request'> {
    const client = this.source.bridge.client;
    if (!client) {
      throw new Error('The kernel is not connected.');
    }
    return client;
  }

  private _sliceSettingsChanged(): void {
    this._stateChanged.emit();
    void this.fetch();
  }

  private _coloursChanged(): void {
    this._painted = null;
    if (this._detail) {
      this._detail = {
        ...this._detail,
        pixels: this._paintWithMapRange(this._detail)
      };
    }
    this._stateChanged.emit();
    this._paintedChanged.emit(this.painted);
  }

  private _setZoom(zoom: IZoom): void {
    this._zoom = zoom;
    this._zoomChanged.emit(zoom);
    if (zoom.k <= 1) {
      this._scheduleDetail();
    }
  }

  private _source: IHeatmapSource;
  private _marks: Set<number> = new Set();
  private _cellTool: ICellTool | null = null;
  private _rowsDim: number;
  private _colsDim: number;
  private _index: number[];
  private _modes: DimMode[];
  private _colormap: ColormapName;
  private _scale: Scale = 'linear';
  private _normalisation: Normalisation = 'global';
  private _reduce: 'max' | 'mean' = 'max';
  private _slice: ISlice | null = null;
  private _painted: IPainted | null = null;
  private _error: string | null = null;
  private _hover: IHover | null = null;
  private _zoom: IZoom = { k: 1, x: 0, y: 0 };
  private _visible: IVisible = { top: 0, bottom: 1, left: 0, right: 1 };
  private _detail: IDetail | null = null;
  private _detailTicket = 0;
  private _detailTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _exact: IExact | null = null;
  private _exactTicket = 0;
  private _exactTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _labels: string[] | null = null;
  private _labelsError: string | null = null;
  private _image: IOverlayImage | null = null;
  private _imageError: string | null = null;
  private _query = 0;
  private _opacity = 0.6;
  private _requested = 0;
  private _started = 0;
  private _loading = false;
  private readonly _stateChanged = new Signal<this, void>(this);
  private readonly _paintedChanged = new Signal<this, IPainted | null>(this);
  private readonly _hoverChanged = new Signal<this, IHover | null>(this);
  private readonly _zoomChanged = new Signal<this, IZoom>(this);
}
