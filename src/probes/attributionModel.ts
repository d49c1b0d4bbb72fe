/**
 * An open attribution: its record, how it is shown (a heatmap of the map, or a token
 * strip), and its refresh when the probe re-runs (the same attribution of the new run).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { HeatmapModel, IHeatmapConnection } from '../heatmap/model';
import { IOverlayImage } from '../heatmap/PatchOverlay';
import { IPatchLayout, patchLayout } from '../heatmap/patches';
import {
  IAttributeOptions,
  IRunCompleted,
  KernelRunError,
  ProbeSession,
  pyString
} from './session';

/** The map's path in an attribution record. */
export const MAP_PATH = ['locals', 'map'];

/**
 * Per-token scores of one batch row of a token map: a 1-D map as it is, an N×D map
 * summed over D (embedding dimensions). Null for other shapes (shown as a heatmap).
 */
export function tokenScores(
  values: Float32Array,
  rowShape: number[]
): Float32Array | null {
  if (rowShape.length === 1) {
    return values;
  }
  if (rowShape.length !== 2) {
    return null;
  }
  const [n, d] = rowShape;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let j = 0; j < d; j++) {
      sum += values[i * d + j];
    }
    out[i] = sum;
  }
  return out;
}

/** Whether a map of `shape` (batch first) shows as a token strip. */
export function isTokenMap(shape: number[]): boolean {
  // B×N (one score per token) or B×N×D with D large (embeddings); images are B×C×H×W
  return shape.length === 2 || (shape.length === 3 && shape[2] > 4);
}

/**
 * How a map of `shape` (batch first) lies on a ViT's square patch grid: a token map by
 * the overlay's rule (at most 4 prefix tokens, then side × side patches), an image map
 * (B×C×H×W, 1 or 3 channels, H = W) cut into `patch` × `patch` patches. Null when it
 * does not.
 */
export function overlayLayout(
  shape: number[],
  patch: number
): IPatchLayout | null {
  if (isTokenMap(shape)) {
    return patchLayout(shape[1]);
  }
  if (!isImageMap(shape)) {
    return null;
  }
  const side = shape[2] / patch;
  return Number.isInteger(patch) &&
    patch > 0 &&
    Number.isInteger(side) &&
    side > 1
    ? { prefix: 0, side }
    : null;
}

/** Whether a map of `shape` is an image's (B×C×H×W, 1 or 3 channels, square). */
export function isImageMap(shape: number[]): boolean {
  return (
    shape.length === 4 &&
    (shape[1] === 1 || shape[1] === 3) &&
    shape[2] === shape[3]
  );
}

/**
 * The sum of one batch row of an image map (C×H×W, row-major) over the channels and
 * over each of the side × side patches: one score per patch, row by row.
 */
export function patchScores(
  values: Float32Array,
  rowShape: number[],
  side: number
): Float32Array {
  const [channels, h, w] = rowShape;
  const ph = h / side;
  const pw = w / side;
  const out = new Float32Array(side * side);
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < h; y++) {
      const row = Math.floor(y / ph) * side;
      for (let x = 0; x < w; x++) {
        out[row + Math.floor(x / pw)] += values[(c * h + y) * w + x];
      }
    }
  }
  return out;
}

/** Python for the image an attribution is drawn over (probe_runs.overlay_image). */
export function overlayImageExpression(record: number): string {
  return (
    `__import__(${pyString('nopdb_lab.jupyter.probe_runs')}, fromlist=["_"])` +
    `.overlay_image(${record})`
  );
}

/** The map on the input image's patches: one score per patch. */
export interface IAttributionOverlay {
  image: IOverlayImage;
  scores: Float32Array;
  side: number;
  /** Pixels per patch side (image maps); null for a token map. */
  patch: number | null;
  /** Prefix tokens left out (token maps). */
  prefix: number;
}

export class AttributionModel {
  constructor(
    readonly session: ProbeSession,
    readonly connection: IHeatmapConnection,
    readonly probe: string,
    readonly options: IAttributeOptions,
    record: number,
    readonly shape: number[],
    /**
     * Recompute it for each new run (false for an attribution made in Python and opened
     * from the capture browser: its settings, `at=` included, are not the form's).
     */
    readonly follows = true
  ) {
    this._record = record;
    this.heatmap = new HeatmapModel({
      bridge: connection,
      captureId: record,
      path: MAP_PATH,
      expression: `nopdb_lab.store[${record}].attribution.map`,
      shape,
      signed: options.method !== 'saliency' && options.method !== 'gradcam'
    });
    if (follows) {
      session.runCompleted.connect(this._onRun, this);
    }
  }

  /** The map as a heatmap (images, anything not a token map). */
  readonly heatmap: HeatmapModel;

  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }
  get record(): number {
    return this._record;
  }
  get refreshing(): boolean {
    return this._refreshing;
  }
  get error(): string | null {
    return this._error;
  }
  get scores(): Float32Array | null {
    return this._scores;
  }
  /** How many times the map was refreshed after a re-run (tests read it). */
  get generation(): number {
    return this._generation;
  }

  /** The map shown on the input image's patches, once asked for. */
  get overlay(): IAttributionOverlay | null {
    return this._overlay;
  }
  get overlayError(): string | null {
    return this._overlayError;
  }

  /**
   * Show the map on the patches of the attributed run's input image (first batch row):
   * a token map's patch tokens, or an image map summed over `patch` × `patch` patches.
   */
  async loadOverlay(patch: number): Promise<void> {
    const layout = overlayLayout(this.shape, patch);
    const client = this.connection.client as any;
    if (!layout || !client) {
      this._overlayError = !client
        ? 'The kernel is not connected.'
        : isTokenMap(this.shape)
          ? `${this.shape[1]} tokens are not a square grid of patches after at most 4 prefix tokens.`
          : `The map (${this.shape.join('×')}) is not a square image that ${patch}-pixel patches tile.`;
      this._overlay = null;
      this._stateChanged.emit();
      return;
    }
    const record = this._record;
    try {
      const [image, tensor] = await Promise.all([
        client.request('image', {
          expression: overlayImageExpression(record)
        }),
        client.request('tensor', {
          id: record,
          path: MAP_PATH,
          index: [0],
          dtype: 'float32'
        })
      ]);
      const view: DataView = tensor.buffers[0];
      const values = new Float32Array(
        view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)
      );
      const rowShape: number[] = tensor.result.shape;
      const count = layout.side * layout.side;
      const scores = isTokenMap(this.shape)
        ? tokenScores(values, rowShape)!.slice(
            layout.prefix,
            layout.prefix + count
          )
        : patchScores(values, rowShape, layout.side);
      const pixels: DataView = image.buffers[0];
      this._overlay = {
        image: {
          width: image.result.width,
          height: image.result.height,
          rgb: new Uint8Array(
            pixels.buffer,
            pixels.byteOffset,
            pixels.byteLength
          )
        },
        scores,
        side: layout.side,
        patch: isTokenMap(this.shape) ? null : patch,
        prefix: layout.prefix
      };
      this._overlayError = null;
    } catch (err) {
      this._overlay = null;
      this._overlayError = `The patch overlay failed: ${(err as Error).message}`;
    }
    this._stateChanged.emit();
  }

  /** Load the token strip's scores (first batch row). */
  async loadScores(): Promise<void> {
    const client = this.connection.client;
    if (!client) {
      this._error = 'The kernel is not connected.';
      this._stateChanged.emit();
      return;
    }
    try {
      const response = await (client as any).request('tensor', {
        id: this._record,
        path: MAP_PATH,
        index: [0],
        dtype: 'float32'
      });
      const view: DataView = response.buffers[0];
      const values = new Float32Array(
        view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)
      );
      this._scores = tokenScores(values, response.result.shape);
      this._error = null;
    } catch (err) {
      this._error = (err as Error).message;
    }
    this._stateChanged.emit();
  }

  dispose(): void {
    this.session.runCompleted.disconnect(this._onRun, this);
    Signal.clearData(this);
  }

  private async _onRun(_: ProbeSession, run: IRunCompleted): Promise<void> {
    if (run.probe !== this.probe) {
      return;
    }
    this._refreshing = true;
    this._error = null;
    this._stateChanged.emit();
    try {
      // the same attribution of the newest run (also when this one was of an older run)
      const done = await this.session.attribute(this.probe, {
        ...this.options,
        run: undefined
      });
      this._record = done.record;
      this._generation++;
      if (isTokenMap(this.shape)) {
        await this.loadScores();
      } else {
        await this.heatmap.retarget({
          captureId: done.record,
          expression: `nopdb_lab.store[${done.record}].attribution.map`
        });
      }
      const overlay = this._overlay;
      if (overlay) {
        await this.loadOverlay(overlay.patch ?? 0);
      }
    } catch (err) {
      this._error =
        err instanceof KernelRunError && err.interrupted
          ? 'Refreshing the attribution was interrupted.'
          : `Refreshing the attribution failed: ${(err as Error).message}`;
    } finally {
      this._refreshing = false;
      this._stateChanged.emit();
    }
  }

  private _record: number;
  private _refreshing = false;
  private _error: string | null = null;
  private _scores: Float32Array | null = null;
  private _generation = 0;
  private _overlay: IAttributionOverlay | null = null;
  private _overlayError: string | null = null;
  private readonly _stateChanged = new Signal<this, void>(this);
}
