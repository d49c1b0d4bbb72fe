/**
 * The edit mode of the heatmap viewer on a probe input: click a cell to toggle it
 * between 0 and Z, drag to paint a box to the baseline, Undo/Reset, Re-run, a
 * "Δ vs run N" view, and Attribute… with progress and cancel. The state and requests
 * live here; ProbeToolbar is a thin view. The map itself is a HeatmapModel on the
 * probe's live input (`probe_heatmap`), so the viewer shows what Re-run will use.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { HeatmapModel, ICellTool } from '../heatmap/model';
import {
  IAttributeOptions,
  IAttributed,
  IProbeInfo,
  IRunCompleted,
  KernelRunError,
  ProbeSession
} from './session';

export type Busy = 'edit' | 'rerun' | 'attribute' | null;

/** Cells (row * cols + column) of the box spanned by two cells of a cols-wide map. */
export function boxCells(
  a: { r: number; c: number },
  b: { r: number; c: number },
  cols: number
): Set<number> {
  const cells = new Set<number>();
  for (let r = Math.min(a.r, b.r); r <= Math.max(a.r, b.r); r++) {
    for (let c = Math.min(a.c, b.c); c <= Math.max(a.c, b.c); c++) {
      cells.add(r * cols + c);
    }
  }
  return cells;
}

/**
 * The cells of the current slice among full `indices` (k × ndim): those whose fixed
 * dimensions equal `index`; null when a cell of the map is not one element.
 */
export function sliceMarks(
  indices: number[][],
  index: readonly number[],
  rowsDim: number,
  colsDim: number,
  cols: number
): Set<number> {
  const marks = new Set<number>();
  for (const full of indices) {
    if (
      full.every((i, d) => d === rowsDim || d === colsDim || i === index[d])
    ) {
      marks.add(full[rowsDim] * cols + full[colsDim]);
    }
  }
  return marks;
}

export class ProbeEditModel implements ICellTool {
  constructor(
    readonly session: ProbeSession,
    readonly probe: string,
    readonly input: string,
    readonly heatmap: HeatmapModel
  ) {
    heatmap.setCellTool(this);
    heatmap.paintedChanged.connect(this._onRepainted, this);
    session.runCompleted.connect(this._onRunCompleted, this);
  }

  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  /**
   * A re-run finished and the map and its Δ marks were updated for it: (ms from the
   * Re-run click, the run).
   */
  get repainted(): ISignal<this, { ms: number; run: number }> {
    return this._repainted;
  }

  get z(): number {
    return this._z;
  }
  get baseline(): number {
    return this._baseline;
  }
  get info(): IProbeInfo | null {
    return this._info;
  }
  get busy(): Busy {
    return this._busy;
  }
  get error(): string | null {
    return this._error;
  }
  /** The last failure was the stop button (the kernel survives). */
  get interrupted(): boolean {
    return this._interrupted;
  }
  /** Kernel actions waiting behind the running one (clicks made while it ran). */
  get queued(): number {
    return this._queued;
  }
  /** A re-run waits in the queue (it will include every edit queued before it). */
  get rerunQueued(): boolean {
    return this._rerunsQueued > 0;
  }
  get progress(): { done: number; total: number } | null {
    return this._progress;
  }
  /** The run the Δ view compares the newest run with, or null when it is off. */
  get deltaAgainst(): number | null {
    return this._deltaAgainst;
  }
  /** Elements the Δ view marks in all (not only this slice). */
  get deltaCount(): number | null {
    return this._deltaCount;
  }
  get editing(): boolean {
    return this._editing;
  }
  get pending(): number {
    return this._info?.inputs.find(i => i.name === this.input)?.pending ?? 0;
  }
  /** The newest re-run shown on the map, and when its Re-run was clicked. */
  get lastRepaint(): { run: number; clickedAt: number } | null {
    return this._lastRepaint;
  }
  get newestRun(): number | null {
    const runs = this._info?.runs ?? [];
    return runs.length ? runs[runs.length - 1].number : null;
  }

  setZ(z: number): void {
    if (Number.isFinite(z) && z !== this._z) {
      this._z = z;
      this._stateChanged.emit();
    }
  }

  setBaseline(value: number): void {
    if (Number.isFinite(value) && value !== this._baseline) {
      this._baseline = value;
      this._stateChanged.emit();
    }
  }

  /** Edit mode on: clicks edit; off: the map pans as usual. */
  setEditing(editing: boolean): void {
    this._editing = editing;
    this.heatmap.setCellTool(editing ? this : null);
    this._stateChanged.emit();
  }

  /** Probe state from the kernel (inputs' pending edits, runs, undo depth). */
  async refresh(): Promise<void> {
    try {
      this._info = await this.session.info(this.probe);
    } catch (err) {
      this._error = (err as Error).message;
    }
    this._stateChanged.emit();
  }

  // -- ICellTool: click toggles, drag paints a box ------------------------------------
  down(r: number, c: number): void {
    // no check of `busy`: an edit clicked while the kernel works is queued, not dropped
    this._dragFrom = { r, c };
    this._dragTo = { r, c };
  }

  move(r: number, c: number): void {
    const from = this._dragFrom;
    const slice = this.heatmap.slice;
    if (!from || !slice) {
      return;
    }
    const to = this._dragTo;
    if (to && to.r === r && to.c === c) {
      return;
    }
    this._dragTo = { r, c };
    this.heatmap.setMarks(boxCells(from, { r, c }, slice.cols));
  }

  up(): void {
    const from = this._dragFrom;
    const to = this._dragTo;
    this._dragFrom = this._dragTo = null;
    if (!from || !to) {
      return;
    }
    if (from.r === to.r && from.c === to.c) {
      void this.toggle(from.r, from.c);
    } else {
      void this.paint(from, to);
    }
  }

  /** Toggle cell (r, c) of the map between 0 and Z. */
  async toggle(r: number, c: number): Promise<void> {
    const slice = this.heatmap.slice;
    const full = this.heatmap.fullIndex(r, c);
    if (!slice || !full) {
      this._fail(
        'Editing needs one element per cell: show the input unpooled, with every ' +
          'other dimension at one index (not averaged, not a grid).'
      );
      return;
    }
    const clicked = slice.values[r * slice.cols + c];
    // 0 or Z is decided when the edit runs, on the map as the edits before it left it:
    // two queued clicks on one cell toggle it there and back
    await this._edit(() => {
      const value = this._valueAt(r, c, full) ?? clicked;
      return { cells: [full], value: value === 0 ? this._z : 0 };
    });
  }

  /** Set the box between two cells to the baseline. */
  async paint(
    a: { r: number; c: number },
    b: { r: number; c: number }
  ): Promise<void> {
    const first = this.heatmap.fullIndex(a.r, a.c);
    if (!first) {
      this._fail(
        'Painting needs one element per cell: show the input unpooled, with every ' +
          'other dimension at one index.'
      );
      return;
    }
    const rowsDim = this.heatmap.rowsDim;
    const colsDim = this.heatmap.colsDim;
    const start = first.map((i, d) =>
      d === rowsDim
        ? Math.min(a.r, b.r)
        : d === colsDim
          ? Math.min(a.c, b.c)
          : i
    );
    const stop = first.map((i, d) =>
      d === rowsDim
        ? Math.max(a.r, b.r) + 1
        : d === colsDim
          ? Math.max(a.c, b.c) + 1
          : i + 1
    );
    const value = this._baseline;
    await this._edit(() => ({ region: { start, stop }, value }));
  }

  async undo(): Promise<void> {
    await this._do('edit', () => this.session.undo(this.probe));
  }

  async reset(): Promise<void> {
    await this._do('edit', () => this.session.reset(this.probe));
  }

  /** Re-run the probe (silent execute); every view on the probe refreshes. */
  async rerun(): Promise<void> {
    if (this._rerunsQueued) {
      return; // the waiting re-run already takes every edit queued before this click
    }
    this._clickedAt = performance.now();
    this._rerunsQueued++;
    await this._do('rerun', () => {
      this._rerunsQueued--;
      return this.session.rerun(this.probe);
    });
  }

  /** Show which elements of the newest run differ from run `against` (null: off). */
  async setDeltaAgainst(against: number | null): Promise<void> {
    this._deltaAgainst = against;
    await this._updateDelta();
  }

  /** Attribute the newest run; resolves with the record, or null when it failed. */
  async attribute(options: IAttributeOptions): Promise<IAttributed | null> {
    this._progress = { done: 0, total: 0 };
    let out: IAttributed | null = null;
    await this._do('attribute', async () => {
      out = await this.session.attribute(
        this.probe,
        { input: this.input, ...options },
        (done, total) => {
          this._progress = { done, total };
          this._stateChanged.emit();
        }
      );
    });
    this._progress = null;
    this._stateChanged.emit();
    return out;
  }

  /** Cancel: the notebook's stop button (interrupts whatever the kernel runs). */
  async cancel(): Promise<void> {
    await this.session.interrupt();
  }

  dispose(): void {
    this.heatmap.setCellTool(null);
    this.heatmap.paintedChanged.disconnect(this._onRepainted, this);
    this.session.runCompleted.disconnect(this._onRunCompleted, this);
    Signal.clearData(this);
  }

  private async _edit(
    change: () => {
      cells?: number[][];
      region?: { start: number[]; stop: number[] };
      value: number;
    }
  ): Promise<void> {
    await this._do('edit', () =>
      this.session.edit({ probe: this.probe, input: this.input, ...change() })
    );
  }

  /** The shown value of cell (r, c) if it is still element `full`, else undefined. */
  private _valueAt(r: number, c: number, full: number[]): number | undefined {
    const slice = this.heatmap.slice;
    const now = this.heatmap.fullIndex(r, c);
    if (!slice || !now || now.some((i, d) => i !== full[d])) {
      return undefined;
    }
    return slice.values[r * slice.cols + c];
  }

  /**
   * Queue one kernel action behind those before it (clicks made while a re-run or an
   * edit is in flight run next, in order): busy while it runs, its error shown, the map
   * refreshed.
   */
  private _do(busy: Busy, action: () => Promise<unknown>): Promise<void> {
    this._queued++;
    this._stateChanged.emit();
    const next = this._queue.then(() => {
      this._queued--;
      return this._run(busy, action);
    });
    this._queue = next;
    return next;
  }

  private async _run(
    busy: Busy,
    action: () => Promise<unknown>
  ): Promise<void> {
    this._busy = busy;
    this._error = null;
    this._interrupted = false;
    this._stateChanged.emit();
    try {
      await action();
      await this.refresh();
      if (busy === 'edit') {
        await this._updateDelta();
        await this.heatmap.fetch();
      }
    } catch (err) {
      this._interrupted = err instanceof KernelRunError && err.interrupted;
      this._error = (err as Error).message;
      this.heatmap.setMarks(new Set());
      await this.refresh();
    } finally {
      this._busy = null;
      this._stateChanged.emit();
    }
  }

  private _fail(message: string): void {
    this._error = message;
    this.heatmap.setMarks(new Set());
    this._stateChanged.emit();
  }

  private async _updateDelta(): Promise<void> {
    const against = this._deltaAgainst;
    const slice = this.heatmap.slice;
    if (against === null || !slice) {
      this._deltaCount = null;
      this.heatmap.setMarks(new Set());
      this._stateChanged.emit();
      return;
    }
    try {
      const delta = await this.session.delta({
        probe: this.probe,
        input: this.input,
        against
      });
      this._deltaCount = delta.count;
      this.heatmap.setMarks(
        sliceMarks(
          delta.indices,
          this.heatmap.index,
          this.heatmap.rowsDim,
          this.heatmap.colsDim,
          slice.cols
        )
      );
    } catch (err) {
      this._error = (err as Error).message;
      this._deltaCount = null;
      this.heatmap.setMarks(new Set());
    }
    this._stateChanged.emit();
  }

  private async _onRunCompleted(
    _: ProbeSession,
    run: IRunCompleted
  ): Promise<void> {
    if (run.probe !== this.probe) {
      return;
    }
    this._waitingRepaint = run.run;
    await this.heatmap.fetch();
    await this._updateDelta();
    // the map and its Δ marks now show the new run (the view stamps the frame it paints)
    this._lastRepaint = { run: run.run, clickedAt: this._clickedAt };
    this._repainted.emit({
      ms: performance.now() - this._clickedAt,
      run: run.run
    });
    this._stateChanged.emit();
  }

  private _onRepainted(): void {
    // the slice settings may have changed: the Δ marks follow the new slice
    if (this._waitingRepaint !== null) {
      this._waitingRepaint = null; // a re-run's own repaint: _onRunCompleted goes on
    } else if (this._deltaAgainst !== null && !this._busy) {
      void this._updateDelta();
    }
  }

  private _z = 1;
  private _baseline = 0;
  private _info: IProbeInfo | null = null;
  private _busy: Busy = null;
  private _error: string | null = null;
  private _interrupted = false;
  private _progress: { done: number; total: number } | null = null;
  private _deltaAgainst: number | null = null;
  private _deltaCount: number | null = null;
  private _editing = true;
  private _dragFrom: { r: number; c: number } | null = null;
  private _dragTo: { r: number; c: number } | null = null;
  private _clickedAt = 0;
  private _queue: Promise<void> = Promise.resolve();
  private _queued = 0;
  private _rerunsQueued = 0;
  private _waitingRepaint: number | null = null;
  private _lastRepaint: { run: number; clickedAt: number } | null = null;
  private readonly _stateChanged = new Signal<this, void>(this);
  private readonly _repainted = new Signal<this, { ms: number; run: number }>(
    this
  );
}
