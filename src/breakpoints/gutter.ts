/**
 * The breakpoint gutter: a CodeMirror 6 extension, registered through JupyterLab's
 * editor extension registry, in code cells of notebooks whose kernel runs nopdb-lab and
 * in read-only source views. A click toggles a breakpoint; each marker shows the
 * breakpoint's state (active, pending, disabled, error) and its hit count.
 */
import { describeHits, totalHits } from './hitCounts';
import { CodeEditor } from '@jupyterlab/codeeditor';
import {
  Compartment,
  Extension,
  RangeSet,
  StateEffect,
  StateField
} from '@codemirror/state';
import {
  EditorView,
  gutter,
  GutterMarker,
  PluginValue,
  ViewPlugin
} from '@codemirror/view';
import { ISignal, Signal } from '@lumino/signaling';

import { IBreakpointState } from '../kernel/protocol';
import {
  BreakpointModel,
  BreakpointPlace,
  IBreakpoint,
  UNTRUSTED_MESSAGE
} from './model';

/** One marker: a breakpoint and what the kernel says about it. */
export interface IMarker {
  line: number;
  status: IBreakpointState['state'] | 'unknown';
  hits: number;
  title: string;
}

/** The marker of a breakpoint, with the hover text that explains its state. */
export function markerOf(
  bp: IBreakpoint,
  state: IBreakpointState | undefined,
  untrusted = false
): IMarker {
  const status = state?.state ?? 'unknown';
  const hits = totalHits(state);
  const parts = [
    `Breakpoint (${status === 'unknown' ? 'not sent to the kernel yet' : status})`
  ];
  if (state?.message) {
    parts.push(state.message);
  }
  if (untrusted) {
    parts.push(`Disabled: ${UNTRUSTED_MESSAGE}`);
  }
  if (bp.condition) {
    parts.push(`if ${bp.condition}`);
  }
  if (untrusted) {
    // the code it would run, so the user can judge it before enabling it
    for (const expression of bp.evals) {
      parts.push(`evaluate ${expression}`);
    }
    if (bp.exec) {
      parts.push(`exec ${bp.exec}`);
    }
  }
  parts.push(describeHits(state), 'Click to remove');
  return { line: bp.line, status, hits, title: parts.join('\n') };
}

/** What a gutter shows and does for one editor (a cell or a source view). */
export class BreakpointTarget {
  constructor(
    readonly model: BreakpointModel,
    readonly place: BreakpointPlace
  ) {}

  get available(): boolean {
    return this.model.available && !this.model.isDisposed;
  }

  get changed(): ISignal<BreakpointModel, void> {
    return this.model.changed;
  }

  markers(): IMarker[] {
    return this.model
      .at(this.place)
      .map(bp =>
        markerOf(bp, this.model.state(bp.id), this.model.isUntrusted(bp.id))
      );
  }

  toggle(line: number): void {
    this.model.toggle(this.place, line);
  }
}

/** Finds the breakpoint target of an editor model (cells and source views register). */
export class GutterTargets {
  /** Emitted when notebooks or source views are registered (editors look again). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Register the breakpoints of a notebook (by its shared model). */
  addNotebook(sharedNotebook: object, model: BreakpointModel): void {
    this._notebooks.set(sharedNotebook, model);
    this._changed.emit();
  }

  /** Register a source view's editor model as showing `file` for `model`'s notebook. */
  addSource(editorModel: CodeEditor.IModel, target: BreakpointTarget): void {
    this._sources.set(editorModel, target);
    this._changed.emit();
  }

  /** The target of an editor model, or null (not a code cell of a known notebook). */
  resolve(editorModel: CodeEditor.IModel): BreakpointTarget | null {
    const source = this._sources.get(editorModel);
    if (source) {
      return source;
    }
    const shared = editorModel.sharedModel as unknown as {
      cell_type?: string;
      id?: string;
      notebook?: object | null;
    };
    if (shared.cell_type !== 'code' || !shared.notebook || !shared.id) {
      return null;
    }
    const model = this._notebooks.get(shared.notebook);
    return model ? new BreakpointTarget(model, { cell: shared.id }) : null;
  }

  private _notebooks = new WeakMap<object, BreakpointModel>();
  private _sources = new WeakMap<CodeEditor.IModel, BreakpointTarget>();
  private readonly _changed = new Signal<this, void>(this);
}

class BreakpointMarker extends GutterMarker {
  constructor(readonly marker: IMarker) {
    super();
  }

  eq(other: GutterMarker): boolean {
    if (!(other instanceof BreakpointMarker)) {
      return false;
    }
    const a = this.marker;
    const b = other.marker;
    return a.status === b.status && a.hits === b.hits && a.title === b.title;
  }

  toDOM(): Node {
    const node = document.createElement('div');
    node.className = `jp-NopdbLab-bp jp-NopdbLab-bp-${this.marker.status}`;
    node.title = this.marker.title;
    node.dataset.line = String(this.marker.line);
    node.dataset.status = this.marker.status;
    if (this.marker.hits > 0) {
      const count = document.createElement('span');
      count.className = 'jp-NopdbLab-bpHits';
      count.textContent =
        this.marker.hits > 99 ? '99+' : String(this.marker.hits);
      node.appendChild(count);
    }
    return node;
  }
}

const setMarkers = StateEffect.define<RangeSet<GutterMarker>>();

const markerField = StateField.define<RangeSet<GutterMarker>>({
  create: () => RangeSet.empty,
  update(value, transaction) {
    for (const effect of transaction.effects) {
      if (effect.is(setMarkers)) {
        return effect.value;
      }
    }
    return value.map(transaction.changes);
  }
});

class Spacer extends GutterMarker {
  toDOM(): Node {
    const node = document.createElement('div');
    node.className = 'jp-NopdbLab-bp';
    return node;
  }
}

/** Keeps one editor's gutter in step with its target. */
class GutterController implements PluginValue {
  constructor(
    private readonly _view: EditorView,
    private readonly _targets: GutterTargets,
    private readonly _editorModel: CodeEditor.IModel,
    private readonly _compartment: Compartment
  ) {
    this._targets.changed.connect(this._lookUp, this);
    this._lookUp();
  }

  destroy(): void {
    this._destroyed = true;
    this._targets.changed.disconnect(this._lookUp, this);
    this._target?.changed.disconnect(this._schedule, this);
  }

  private _lookUp(): void {
    if (this._target) {
      return;
    }
    this._target = this._targets.resolve(this._editorModel);
    if (this._target) {
      this._target.changed.connect(this._schedule, this);
      this._schedule();
    }
  }

  /** Dispatch later: signals may arrive while the editor is updating. */
  private _schedule(): void {
    if (this._scheduled) {
      return;
    }
    this._scheduled = true;
    queueMicrotask(() => {
      this._scheduled = false;
      if (!this._destroyed) {
        this._render();
      }
    });
  }

  private _render(): void {
    const target = this._target;
    if (!target) {
      return;
    }
    const effects: StateEffect<unknown>[] = [];
    const shown = target.available;
    if (shown !== this._shown) {
      this._shown = shown;
      effects.push(
        this._compartment.reconfigure(shown ? breakpointGutter(target) : [])
      );
    }
    const doc = this._view.state.doc;
    const markers = shown
      ? target
          .markers()
          .filter(m => m.line >= 1 && m.line <= doc.lines)
          .sort((a, b) => a.line - b.line)
          .map(m => new BreakpointMarker(m).range(doc.line(m.line).from))
      : [];
    effects.push(setMarkers.of(RangeSet.of(markers)));
    this._view.dispatch({ effects });
  }

  private _target: BreakpointTarget | null = null;
  private _shown = false;
  private _scheduled = false;
  private _destroyed = false;
}

function breakpointGutter(target: BreakpointTarget): Extension {
  return gutter({
    class: 'jp-NopdbLab-breakpointGutter',
    markers: view => view.state.field(markerField),
    initialSpacer: () => new Spacer(),
    renderEmptyElements: true,
    domEventHandlers: {
      mousedown(view, block) {
        target.toggle(view.state.doc.lineAt(block.from).number);
        return true;
      }
    }
  });
}

/** The extension for one editor: a gutter that appears once its target is available. */
export function breakpointExtension(
  targets: GutterTargets,
  editorModel: CodeEditor.IModel
): Extension {
  const compartment = new Compartment();
  return [
    markerField,
    compartment.of([]),
    ViewPlugin.define(
      view => new GutterController(view, targets, editorModel, compartment)
    )
  ];
}
