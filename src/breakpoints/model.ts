/**
 * One notebook's breakpoints: kept in the notebook's metadata (so they come back when it
 * is reopened), moved with their lines when cells are edited, and mirrored into the
 * kernel through the comm (again after every restart), with the kernel's state of each.
 */
import { INotebookModel } from '@jupyterlab/notebook';
import { UUID } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { ProtocolClient } from '../kernel/client';
import { BridgeState } from '../kernel/bridge';
import {
  IBreakpointSpec,
  IBreakpointState,
  ProtocolEvent
} from '../kernel/protocol';
import { mapLine, TextDelta } from './lineMapping';

/** The notebook metadata key. */
export const METADATA_KEY = 'nopdb-lab';

/** The fields a user edits (what the breakpoint editor shows), as the kernel takes them. */
export interface IBreakpointOptions extends Pick<
  IBreakpointSpec,
  'enabled' | 'condition' | 'evals' | 'exec' | 'keep_locals' | 'max_hits'
> {
  /** A capture id whose `self` the breakpoint is limited to (not saved: ids are per kernel). */
  instance: number | null;
  /** Names of locals whose gradients each hit keeps (empty: none). */
  grads: string[];
}

/** Where a breakpoint is: a line of a notebook cell (by cell id) or of a file. */
export type BreakpointPlace = { cell: string } | { file: string };

/** One breakpoint of the notebook. */
export interface IBreakpoint extends IBreakpointOptions {
  id: string;
  line: number;
  cell?: string;
  file?: string;
}

/** What the model needs from a kernel connection (a `KernelBridge`). */
export interface IBreakpointConnection {
  readonly state: BridgeState;
  readonly client: ProtocolClient | null;
  readonly stateChanged: ISignal<unknown, BridgeState>;
}

export const DEFAULT_OPTIONS: IBreakpointOptions = {
  enabled: true,
  condition: '',
  evals: [],
  exec: '',
  keep_locals: true,
  max_hits: null,
  instance: null,
  grads: []
};

/** How long edits of a cell wait before its breakpoints are sent to the kernel again. */
const PUSH_DELAY_MS = 200;

/**
 * Whether a breakpoint carries code the kernel would run: a condition, evaluated
 * expressions or exec code. Names, line numbers, `keep_locals`, `max_hits` are not code.
 */
export function carriesCode(bp: IBreakpointOptions): boolean {
  return (
    bp.condition.trim() !== '' ||
    bp.evals.some(e => e.trim() !== '') ||
    bp.exec.trim() !== ''
  );
}

/** The notebook's cells as far as trust goes (`ICellModel` has `type` and `trusted`). */
interface ITrustCell {
  readonly type: string;
  readonly trusted: boolean;
}

/**
 * Whether JupyterLab trusts the notebook: it has code cells and every one is trusted.
 * Jupyter's trust is per code cell (the server marks each code cell of a notebook whose
 * signature it knows; the `notebook:trust` command marks every cell), as JupyterLab's
 * trust indicator counts it. A notebook without code cells is not trusted here: its
 * markdown cells' `trusted` comes from the file itself, which anyone can write.
 */
export function notebookTrusted(cells: Iterable<ITrustCell>): boolean {
  let codeCells = 0;
  for (const cell of cells) {
    if (cell.type !== 'code') {
      continue;
    }
    codeCells++;
    if (!cell.trusted) {
      return false;
    }
  }
  return codeCells > 0;
}

/** Why a breakpoint loaded from an untrusted notebook does not run its code. */
export const UNTRUSTED_MESSAGE =
  'from an untrusted notebook: trust it or enable this breakpoint';

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A saved breakpoint from metadata, or null when it is malformed. */
function fromSaved(value: unknown): IBreakpoint | null {
  if (typeof value !== 'object' || value === null) {
    return null;
  }
  const v = value as Record<string, unknown>;
  const where =
    typeof v.cell === 'string'
      ? { cell: v.cell }
      : typeof v.file === 'string'
        ? { file: v.file }
        : null;
  if (
    typeof v.id !== 'string' ||
    !where ||
    typeof v.line !== 'number' ||
    !Number.isInteger(v.line)
  ) {
    return null;
  }
  const evals = Array.isArray(v.evals)
    ? v.evals.filter((e): e is string => typeof e === 'string')
    : [];
  return {
    ...DEFAULT_OPTIONS,
    id: v.id,
    line: v.line,
    ...where,
    enabled: typeof v.enabled === 'boolean' ? v.enabled : true,
    condition: typeof v.condition === 'string' ? v.condition : '',
    evals,
    exec: typeof v.exec === 'string' ? v.exec : '',
    keep_locals: typeof v.keep_locals === 'boolean' ? v.keep_locals : true,
    max_hits:
      typeof v.max_hits === 'number' && v.max_hits >= 1 ? v.max_hits : null,
    grads: Array.isArray(v.grads)
      ? v.grads.filter((g): g is string => typeof g === 'string')
      : []
  };
}

/** A notebook's breakpoints and the kernel's state of each. */
export class BreakpointModel implements IDisposable {
  /**
   * @param owner names the notebook to the kernel (its path), so that notebooks sharing a
   *   kernel do not replace each other's breakpoints
   */
  constructor(
    readonly notebook: INotebookModel,
    connection: IBreakpointConnection,
    readonly owner: () => string = () => ''
  ) {
    const saved = notebook.getMetadata(METADATA_KEY) as
      { breakpoints?: unknown[] } | undefined;
    const cellIds = new Set(this._cellIds());
    // Opening a notebook must never run code: breakpoints with code saved in a notebook
    // the user has not trusted are loaded disabled (their saved `enabled` is kept for
    // the file) until the notebook is trusted or the user enables each one.
    const trusted = this.trusted;
    for (const item of saved?.breakpoints ?? []) {
      const bp = fromSaved(item);
      if (bp && (bp.file !== undefined || cellIds.has(bp.cell!))) {
        if (!trusted && carriesCode(bp)) {
          this._untrusted.set(bp.id, bp.enabled);
          bp.enabled = false;
        }
        this._breakpoints.push(bp);
      }
    }
    for (const cell of notebook.cells) {
      this._watchCell(cell.sharedModel);
    }
    notebook.cells.changed.connect(this._onCellsChanged, this);
    this._connection = connection;
    connection.stateChanged.connect(this._onConnectionState, this);
    if (connection.state.status === 'ready') {
      this._wasReady = true;
      this._connect();
    }
  }

  /** The kernel connection breakpoints are mirrored through. */
  get connection(): IBreakpointConnection {
    return this._connection;
  }

  /**
   * Mirror through another connection (another view of the notebook, when the view
   * whose connection this was closes); everything is sent through it again.
   */
  setConnection(connection: IBreakpointConnection): void {
    if (connection === this._connection) {
      return;
    }
    this._connection.stateChanged.disconnect(this._onConnectionState, this);
    this._client?.eventReceived.disconnect(this._onEvent, this);
    this._client = null;
    this._connection = connection;
    connection.stateChanged.connect(this._onConnectionState, this);
    this._onConnectionState(connection, connection.state);
  }

  /** Emitted when breakpoints or their kernel states change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Emitted with a message when a breakpoint is dropped (its line or cell was deleted). */
  get notice(): ISignal<this, string> {
    return this._notice;
  }

  /**
   * Whether the kernel runs nopdb-lab (breakpoints can be set). Also true while it
   * reconnects after a restart, so gutters do not vanish and come back.
   */
  get available(): boolean {
    const status = this.connection.state.status;
    return status === 'ready' || (status === 'connecting' && this._wasReady);
  }

  get breakpoints(): readonly IBreakpoint[] {
    return this._breakpoints;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether JupyterLab trusts the notebook (see {@link notebookTrusted}). */
  get trusted(): boolean {
    return notebookTrusted(this.notebook.cells);
  }

  /**
   * Whether a breakpoint came with code from an untrusted notebook and is held disabled
   * until the notebook is trusted or the user enables it.
   */
  isUntrusted(id: string): boolean {
    return this._untrusted.has(id);
  }

  /**
   * After the user's Trust command: if the notebook is trusted now, release the
   * breakpoints held for trust, each as the notebook saved it (enabled or not).
   *
   * Only the Trust command releases them, not any cell turning trusted: JupyterLab also
   * marks a cell trusted when the user runs it (its outputs are then the user's), just
   * before the cell reaches the kernel, so releasing then would run a hidden exec of a
   * breakpoint in an innocent-looking cell.
   */
  releaseIfTrusted(): boolean {
    if (this._untrusted.size === 0 || !this.trusted) {
      return false;
    }
    const held = [...this._untrusted];
    this._untrusted.clear();
    for (const [id, enabled] of held) {
      const bp = this._find(id);
      if (bp) {
        bp.enabled = enabled;
        this._push(id, true);
      }
    }
    this._changedBreakpoints();
    return true;
  }

  /** The kernel's state of a breakpoint (undefined until the kernel answered). */
  state(id: string): IBreakpointState | undefined {
    return this._states.get(id);
  }

  /** Breakpoints at a place (a cell or a file). */
  at(place: BreakpointPlace): IBreakpoint[] {
    return this._breakpoints.filter(bp =>
      'cell' in place ? bp.cell === place.cell : bp.file === place.file
    );
  }

  /** 1-based position of a cell in the notebook (0 when it is gone). */
  cellNumber(cellId: string): number {
    return this._cellIds().indexOf(cellId) + 1;
  }

  /** Add a breakpoint at a line, or remove the one there. Returns the added one. */
  toggle(place: BreakpointPlace, line: number): IBreakpoint | null {
    const existing = this.at(place).find(bp => bp.line === line);
    if (existing) {
      this.remove(existing.id);
      return null;
    }
    const bp: IBreakpoint = {
      ...DEFAULT_OPTIONS,
      id: `bp-${UUID.uuid4()}`,
      line,
      ...place
    };
    this._breakpoints.push(bp);
    this._changedBreakpoints();
    this._push(bp.id, true);
    return bp;
  }

  /** Change a breakpoint's options (or line); sent to the kernel at once. */
  update(id: string, patch: Partial<IBreakpointOptions & { line: number }>) {
    const bp = this._find(id);
    if (!bp) {
      return;
    }
    Object.assign(bp, patch);
    if (patch.enabled === true) {
      this._untrusted.delete(id); // the user enabled it: its code is theirs now
    } else if (this._untrusted.has(id) && patch.enabled === false) {
      this._untrusted.set(id, false); // saved as disabled from now on
    }
    this._changedBreakpoints();
    this._push(id, true);
  }

  remove(id: string): void {
    const index = this._breakpoints.findIndex(bp => bp.id === id);
    if (index === -1) {
      return;
    }
    this._breakpoints.splice(index, 1);
    this._states.delete(id);
    this._untrusted.delete(id);
    clearTimeout(this._timers.get(id));
    this._timers.delete(id);
    this._changedBreakpoints();
    this.connection.client
      ?.request('breakpoint_remove', { id })
      .catch(error => this._fail(id, error));
  }

  removeAll(): void {
    for (const bp of [...this._breakpoints]) {
      this.remove(bp.id);
    }
  }

  /** Send a cell's pending edits now (it is about to run). */
  flushCell(cellId: string): void {
    for (const bp of this.at({ cell: cellId })) {
      if (this._timers.has(bp.id)) {
        this._push(bp.id, true);
      }
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    for (const timer of this._timers.values()) {
      clearTimeout(timer);
    }
    this._client?.eventReceived.disconnect(this._onEvent, this);
    Signal.clearData(this);
  }

  // -- the kernel ---------------------------------------------------------------------
  private _onConnectionState(_: unknown, state: BridgeState): void {
    if (state.status === 'ready') {
      this._wasReady = true;
      this._connect();
    } else {
      if (state.status !== 'connecting') {
        this._wasReady = false;
      }
      this._client?.eventReceived.disconnect(this._onEvent, this);
      this._client = null;
      this._states.clear();
      this._changed.emit();
    }
  }

  /** A (new) kernel process: send every breakpoint again. */
  private _connect(): void {
    const client = this.connection.client;
    if (!client || client === this._client) {
      return;
    }
    this._client?.eventReceived.disconnect(this._onEvent, this);
    this._client = client;
    client.eventReceived.connect(this._onEvent, this);
    for (const bp of this._breakpoints) {
      bp.instance = null; // capture ids belong to the kernel process that made them
    }
    this._states.clear();
    const specs = this._breakpoints.map(bp => this._spec(bp));
    client
      .request('breakpoint_sync', { breakpoints: specs, owner: this.owner() })
      .then(response => {
        for (const state of response.result.breakpoints) {
          if (this._find(state.id)) {
            this._states.set(state.id, state);
          }
        }
        this._changed.emit();
      })
      .catch(error =>
        console.warn('nopdb-lab: syncing breakpoints failed', error)
      );
    this._changed.emit();
  }

  private _onEvent(_: ProtocolClient, event: ProtocolEvent): void {
    if (event.event !== 'breakpoints_changed') {
      return;
    }
    for (const state of event.breakpoints) {
      if (this._find(state.id)) {
        this._states.set(state.id, state);
      }
    }
    this._changed.emit();
  }

  /**
   * What the kernel is sent for a breakpoint: every message to the kernel (set and sync,
   * after restarts and view changes too) is built here, so a breakpoint held for trust
   * always goes disabled; the kernel runs what the front end sends, this is the gate.
   */
  private _spec(bp: IBreakpoint): IBreakpointSpec {
    const { cell, file, ...fields } = bp; // id, line and the options
    const where =
      cell !== undefined ? { source: this._cellSource(cell) ?? '' } : { file };
    const enabled = this._untrusted.has(bp.id) ? false : fields.enabled;
    return { ...fields, enabled, ...where, owner: this.owner() };
  }

  /** Send a breakpoint to the kernel now, or after the edit pause. */
  private _push(id: string, now: boolean): void {
    clearTimeout(this._timers.get(id));
    this._timers.delete(id);
    if (!now) {
      this._timers.set(
        id,
        setTimeout(() => this._push(id, true), PUSH_DELAY_MS)
      );
      return;
    }
    const bp = this._find(id);
    const client = this.connection.client;
    if (!bp || !client || !this.available) {
      return;
    }
    client
      .request('breakpoint_set', { breakpoint: this._spec(bp) })
      .then(response => {
        if (this._find(id)) {
          this._states.set(id, response.result);
          this._changed.emit();
        }
      })
      .catch(error => this._fail(id, error));
  }

  private _fail(id: string, error: Error): void {
    const bp = this._find(id);
    if (!bp) {
      return;
    }
    this._states.set(id, {
      id,
      state: 'error',
      message: error.message,
      field: '',
      hits: 0,
      total_hits: this._states.get(id)?.total_hits ?? 0,
      file: bp.file ?? null,
      line: bp.line,
      function: null
    });
    this._changed.emit();
  }

  // -- cells ----------------------------------------------------------------------------
  private _cellIds(): string[] {
    const ids: string[] = [];
    for (const cell of this.notebook.cells) {
      ids.push(cell.id);
    }
    return ids;
  }

  private _cellSource(cellId: string): string | null {
    for (const cell of this.notebook.cells) {
      if (cell.id === cellId) {
        return cell.sharedModel.getSource();
      }
    }
    return null;
  }

  private _watchCell(cell: ISourceCell): void {
    if (this._watched.has(cell)) {
      return;
    }
    this._watched.add(cell);
    this._sources.set(cell.id, cell.getSource());
    cell.changed.connect(this._onCellChanged, this);
  }

  private _onCellChanged(cell: ISourceCell, change: ICellChange): void {
    const oldText = this._sources.get(cell.id) ?? '';
    const newText = cell.getSource();
    this._sources.set(cell.id, newText);
    if (!change.sourceChange) {
      return;
    }
    const affected = this.at({ cell: cell.id });
    if (affected.length === 0) {
      return;
    }
    for (const bp of affected) {
      const line = mapLine(oldText, newText, change.sourceChange, bp.line);
      if (line === null) {
        this._notice.emit(
          `Removed the breakpoint at cell ${this.cellNumber(cell.id)}, line ${bp.line}: its line was deleted.`
        );
        this.remove(bp.id);
        continue;
      }
      bp.line = line;
      this._push(bp.id, false);
    }
    this._changedBreakpoints();
  }

  private _onCellsChanged(): void {
    for (const cell of this.notebook.cells) {
      this._watchCell(cell.sharedModel);
    }
    const ids = new Set(this._cellIds());
    const orphans = this._breakpoints.filter(
      bp => bp.cell !== undefined && !ids.has(bp.cell)
    );
    if (orphans.length > 0) {
      this._notice.emit(
        `Removed ${orphans.length} breakpoint${orphans.length === 1 ? '' : 's'} of a deleted cell.`
      );
      for (const bp of orphans) {
        this.remove(bp.id);
      }
    }
    this._changed.emit(); // cell numbers may have changed
  }

  // -- saving ---------------------------------------------------------------------------
  private _changedBreakpoints(): void {
    const saved = this._breakpoints.map(bp => {
      const copy: Partial<IBreakpoint> = { ...bp };
      delete copy.instance; // capture ids mean nothing in another kernel session
      if (this._untrusted.has(bp.id)) {
        copy.enabled = this._untrusted.get(bp.id); // held for trust, not by the user
      }
      return copy;
    });
    const current = this.notebook.getMetadata(METADATA_KEY) as
      { breakpoints?: unknown[] } | undefined;
    if (!sameValue(current?.breakpoints ?? [], saved)) {
      if (saved.length === 0) {
        this.notebook.deleteMetadata(METADATA_KEY);
      } else {
        this.notebook.setMetadata(METADATA_KEY, { breakpoints: saved });
      }
    }
    this._changed.emit();
  }

  private _find(id: string): IBreakpoint | undefined {
    return this._breakpoints.find(bp => bp.id === id);
  }

  private _breakpoints: IBreakpoint[] = [];
  private _states = new Map<string, IBreakpointState>();
  /** Breakpoints held disabled for trust, with the `enabled` the notebook saved. */
  private _untrusted = new Map<string, boolean>();
  private _timers = new Map<string, ReturnType<typeof setTimeout>>();
  private _sources = new Map<string, string>();
  private _watched = new WeakSet<ISourceCell>();
  private _connection: IBreakpointConnection;
  private _client: ProtocolClient | null = null;
  private _wasReady = false;
  private _isDisposed = false;
  private readonly _changed = new Signal<this, void>(this);
  private readonly _notice = new Signal<this, string>(this);
}

/** The parts of a shared cell the model uses. */
interface ISourceCell {
  readonly id: string;
  getSource(): string;
  readonly changed: ISignal<any, ICellChange>;
}

interface ICellChange {
  sourceChange?: TextDelta | null;
}
