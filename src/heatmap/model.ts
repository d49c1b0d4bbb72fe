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

/** The cell under the mouse: map `g` of a grid (0 for one map), row, column. */
export interface IHover {
  g: number;
  r: number;
  c: number;
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
        hover.c === this._hover.c);
    if (!same) {
      this._hover = hover;
      this._hoverChanged.emit(hover);
    }
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
    try {
      const live = this._source.live;
      const { id, path, ...sliceArgs } = this.requestArgs();
      const { result, buffers } = live
        ? await client.request('probe_heatmap', {
            ...sliceArgs,
            probe: live.probe,
            input: live.input
          })
        : await client.request('heatmap', { ...sliceArgs, id, path });
      if (ticket !== this._requested) {
        return; // a newer request is on its way
      }
      const view = buffers[0];
      this._slice = {
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
      this._error = null;
      this._coloursChanged();
    } catch (err) {
      if (ticket === this._requested) {
        this._error = (err as Error).message;
        this._stateChanged.emit();
      }
    }
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
    const labels = this._labels;
    return labels && labels.length === this.source.shape[this._rowsDim]
      ? labels
      : null;
  }

  /** Labels of the columns, when their length matches the columns dimension. */
  get colLabels(): string[] | null {
    const labels = this._labels;
    return labels && labels.length === this.source.shape[this._colsDim]
      ? labels
      : null;
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
    if (!slice || !hover) {
      return 'Hover the map to read a value.';
    }
    const value =
      slice.values[(hover.g * slice.rows + hover.r) * slice.cols + hover.c];
    if (value === undefined) {
      return 'Hover the map to read a value.';
    }
    const sourceIndex = (i: number, step: number) =>
      step > 1 ? `${i * step}–${i * step + step - 1}` : `${i}`;
    const name = (names: string[] | null, i: number, step: number) =>
      names && step === 1 ? ` ${JSON.stringify(names[i])}` : '';
    return (
      `${slice.grid ? `${this.gridLabel(hover.g)}, ` : ''}` +
      `row ${sourceIndex(hover.r, slice.rowStep)}` +
      `${name(this.rowLabels, hover.r, slice.rowStep)}, column ` +
      `${sourceIndex(hover.c, slice.colStep)}` +
      `${name(this.colLabels, hover.c, slice.colStep)}: ${value}`
    );
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
    this._stateChanged.emit();
    this._paintedChanged.emit(this.painted);
  }

  private _setZoom(zoom: IZoom): void {
    this._zoom = zoom;
    this._zoomChanged.emit(zoom);
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
  private _labels: string[] | null = null;
  private _labelsError: string | null = null;
  private _image: IOverlayImage | null = null;
  private _imageError: string | null = null;
  private _query = 0;
  private _opacity = 0.6;
  private _requested = 0;
  private _started = 0;
  private readonly _stateChanged = new Signal<this, void>(this);
  private readonly _paintedChanged = new Signal<this, IPainted | null>(this);
  private readonly _hoverChanged = new Signal<this, IHover | null>(this);
  private readonly _zoomChanged = new Signal<this, IZoom>(this);
}
