/**
 * What the capture browser shows: the bridge of the notebook it follows and the selected
 * capture, and the browser's requests to the kernel (views make none). Widgets re-render
 * on `changed`.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { BridgeState, KernelBridge } from '../kernel/bridge';
import { ProtocolClient } from '../kernel/client';
import { ICaptureDetail, IChild, PathStep } from '../kernel/protocol';
import { CellNames } from '../cells/cellNames';
import { FileNamer, namerOf } from '../cells/registry';

/** The followed notebook's bridge and the selection. */
export class BrowserModel {
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

  /** How files are named: the followed notebook's cells by their names. */
  get names(): FileNamer {
    return namerOf(this._names);
  }

  /** The followed notebook's cell names, if any. */
  get cellNames(): CellNames | null {
    return this._names;
  }

  /** Name the followed notebook's cell files (re-renders when its cells move). */
  setCellNames(names: CellNames | null): void {
    if (names === this._names) {
      return;
    }
    this._names?.changed.disconnect(this._emit, this);
    this._names = names;
    names?.changed.connect(this._emit, this);
    this._emit();
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

  /** The details of a capture of the followed notebook. */
  async detail(id: number): Promise<ICaptureDetail> {
    return (await this._client().request('get', { id })).result;
  }

  /** The items of a container value, summarised by the kernel. */
  async children(id: number, path: PathStep[]): Promise<IChild[]> {
    const response = await this._client().request('value', { id, path });
    return response.result.children ?? [];
  }

  /** Delete a capture from the kernel's store (and unselect it). */
  async deleteCapture(id: number): Promise<void> {
    if (this._selectedId === id) {
      this.select(null);
    }
    await this._client().request('delete', { id });
  }

  /** Delete every capture of the followed notebook. */
  async clear(): Promise<void> {
    await this._client().request('clear', {});
  }

  /**
   * Stack a value across every capture of the same function (the layers) into a new
   * capture, with attention rollout when the values are attention maps, and select it.
   */
  async stackAcross(id: number, path: PathStep[]): Promise<number> {
    const response = await this._client().request('stack', { id, path });
    this.select(response.result.id);
    return response.result.id;
  }

  private _client(): ProtocolClient {
    const client = this._bridge?.client;
    if (!client) {
      throw new Error("the notebook's kernel is not connected");
    }
    return client;
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

  private _names: CellNames | null = null;
  private _bridge: KernelBridge | null = null;
  private _label = '';
  private _selectedId: number | null = null;
  private readonly _changed = new Signal<this, void>(this);
}
