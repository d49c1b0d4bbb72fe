/**
 * What the capture browser shows: the bridge of the notebook it follows and the selected
 * capture. Widgets re-render on `changed`.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { IHeatmapSource } from '../heatmap/HeatmapView';
import { BridgeState, KernelBridge } from '../kernel/bridge';
import { PathStep } from '../kernel/protocol';

/** Things the panel asks the application to do. */
export interface IBrowserActions {
  /** Open a file's source, read-only, at a line (the kernel provides the text). */
  openSource(bridge: KernelBridge, file: string, line: number): void;
  /** Insert a new code cell below the active one, holding `code`. */
  insertBelow(code: string): void;
  /** Open a captured tensor or array (2 or more dims) as a heatmap. */
  openHeatmap(source: IHeatmapSource): void;
  /**
   * Stack this value across every capture of the same function (the layers) into a new
   * capture, with attention rollout when the values are attention maps, and select it.
   */
  stackAcross(bridge: KernelBridge, captureId: number, path: PathStep[]): void;
  /** Copy text to the clipboard. */
  copy(text: string): void;
  /** Ask before clearing every capture. */
  confirmClear(count: number): Promise<boolean>;
}

/** The followed notebook's bridge and the selection. */
export class BrowserModel {
  constructor(readonly actions: IBrowserActions) {}

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The bridge of the notebook the panel follows, if any. */
  get bridge(): KernelBridge | null {
    return this._bridge;
  }

  /** A label for the followed notebook. */
  get label(): string {
    return this._label;
  }

  get selectedId(): number | null {
    return this._selectedId;
  }

  /** Follow another notebook (or none). */
  follow(bridge: KernelBridge | null, label = ''): void {
    if (bridge === this._bridge && label === this._label) {
      return;
    }
    if (this._bridge && !this._bridge.isDisposed) {
      this._bridge.stateChanged.disconnect(this._onStateChanged, this);
      this._bridge.captures.changed.disconnect(this._onCapturesChanged, this);
    }
    this._bridge = bridge;
    this._label = label;
    this._selectedId = null;
    if (bridge) {
      bridge.stateChanged.connect(this._onStateChanged, this);
      bridge.captures.changed.connect(this._onCapturesChanged, this);
    }
    this._emit();
  }

  select(id: number | null): void {
    if (id !== this._selectedId) {
      this._selectedId = id;
      this._emit();
    }
  }

  private _onStateChanged(_: KernelBridge, state: BridgeState): void {
    if (state.status !== 'ready') {
      // ids restart with a new kernel process: a kept selection would name another capture
      this._selectedId = null;
    }
    this._emit();
  }

  private _onCapturesChanged(): void {
    // a selected capture that was deleted or evicted stays selected: the details view
    // says it is gone instead of jumping elsewhere
    this._emit();
  }

  private _emit(): void {
    this._changed.emit();
  }

  private _bridge: KernelBridge | null = null;
  private _label = '';
  private _selectedId: number | null = null;
  private readonly _changed = new Signal<this, void>(this);
}
