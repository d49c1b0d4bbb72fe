/**
 * An open attribution: its record, how it is shown (a heatmap of the map, or a token
 * strip), and its refresh when the probe re-runs (the same attribution of the new run).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { HeatmapModel, IHeatmapConnection } from '../heatmap/model';
import {
  IAttributeOptions,
  IRunCompleted,
  KernelRunError,
  ProbeSession
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

export class AttributionModel {
  constructor(
    readonly session: ProbeSession,
    readonly connection: IHeatmapConnection,
    readonly probe: string,
    readonly options: IAttributeOptions,
    record: number,
    readonly shape: number[]
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
    session.runCompleted.connect(this._onRun, this);
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
      const done = await this.session.attribute(this.probe, this.options);
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
  private readonly _stateChanged = new Signal<this, void>(this);
}
