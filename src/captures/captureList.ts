/**
 * The state of the capture list: every brief the kernel announced, a filter, and the
 * filtered view (newest first) the sidebar renders. Pure data, no widgets.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { CaptureKind, ICaptureBrief } from '../kernel/protocol';

/** What the list shows. Empty fields match everything. */
export interface ICaptureFilter {
  /** Case-insensitive words matched against name, qualname, file and `#id`. */
  text: string;
  kind: CaptureKind | '';
  /** Exact qualified function name. */
  qualname: string;
}

/** A function that has captures, with how many of each kind. */
export interface IFunctionGroup {
  qualname: string;
  calls: number;
  hits: number;
}

export const EMPTY_FILTER: ICaptureFilter = {
  text: '',
  kind: '',
  qualname: ''
};

/** Briefs by id, a filter, and the cached filtered view. */
export class CaptureListModel {
  /** Emitted after any change of captures or filter. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Number of captures held (before filtering). */
  get size(): number {
    return this._byId.size;
  }

  get filter(): ICaptureFilter {
    return this._filter;
  }

  /** The last eviction notice from the kernel, if any. */
  get lastEviction(): string | null {
    return this._lastEviction;
  }

  /** Captures that pass the filter, newest first. */
  get view(): readonly ICaptureBrief[] {
    if (this._view === null) {
      const match = matcher(this._filter);
      const view: ICaptureBrief[] = [];
      for (let i = this._order.length - 1; i >= 0; i--) {
        const brief = this._byId.get(this._order[i]);
        if (brief && match(brief)) {
          view.push(brief);
        }
      }
      this._view = view;
    }
    return this._view;
  }

  /** Every function with captures, by name, with counts per kind. */
  get groups(): readonly IFunctionGroup[] {
    if (this._groups === null) {
      const groups = new Map<string, IFunctionGroup>();
      for (const brief of this._byId.values()) {
        let group = groups.get(brief.qualname);
        if (!group) {
          group = { qualname: brief.qualname, calls: 0, hits: 0 };
          groups.set(brief.qualname, group);
        }
        if (brief.kind === 'hit') {
          group.hits++;
        } else {
          group.calls++;
        }
      }
      this._groups = [...groups.values()].sort((a, b) =>
        a.qualname.localeCompare(b.qualname)
      );
    }
    return this._groups;
  }

  /** Captures that satisfy `predicate` (the filter ignored), newest first, at most `limit`. */
  where(
    predicate: (brief: ICaptureBrief) => boolean,
    limit = Infinity
  ): ICaptureBrief[] {
    const found: ICaptureBrief[] = [];
    for (let i = this._order.length - 1; i >= 0 && found.length < limit; i--) {
      const brief = this._byId.get(this._order[i]);
      if (brief && predicate(brief)) {
        found.push(brief);
      }
    }
    return found;
  }

  /** Every capture, unfiltered (e.g. all calls of a function for a gradient flow). */
  all(): ICaptureBrief[] {
    return [...this._byId.values()];
  }

  get(id: number): ICaptureBrief | undefined {
    return this._byId.get(id);
  }

  /** Replace everything (after connecting or reconnecting). */
  reset(briefs: readonly ICaptureBrief[]): void {
    this._byId.clear();
    this._order = [];
    this._lastEviction = null;
    for (const brief of briefs) {
      this._insert(brief);
    }
    this._invalidate();
  }

  /** Captures the kernel announced. Ids only grow, so appending keeps the order. */
  add(...briefs: ICaptureBrief[]): void {
    for (const brief of briefs) {
      this._insert(brief);
    }
    this._invalidate();
  }

  /** Captures whose rows changed (a gradient arrived); unknown ids are ignored. */
  update(...briefs: ICaptureBrief[]): void {
    let changed = false;
    for (const brief of briefs) {
      if (this._byId.has(brief.id)) {
        this._byId.set(brief.id, brief);
        changed = true;
      }
    }
    if (changed) {
      this._invalidate();
    }
  }

  /** Captures the kernel deleted or evicted. */
  remove(ids: readonly number[], evictionNotice?: string): void {
    const gone = new Set<number>();
    for (const id of ids) {
      if (this._byId.delete(id)) {
        gone.add(id);
      }
    }
    if (gone.size) {
      this._order = this._order.filter(id => !gone.has(id));
    }
    if (evictionNotice !== undefined) {
      this._lastEviction = evictionNotice;
    }
    this._invalidate();
  }

  setFilter(filter: Partial<ICaptureFilter>): void {
    this._filter = { ...this._filter, ...filter };
    this._invalidate();
  }

  private _insert(brief: ICaptureBrief): void {
    if (!this._byId.has(brief.id)) {
      const last = this._order[this._order.length - 1];
      if (last !== undefined && brief.id < last) {
        // out-of-order arrival (a reset raced an event): keep ids sorted
        const at = this._order.findIndex(id => id > brief.id);
        this._order.splice(at, 0, brief.id);
      } else {
        this._order.push(brief.id);
      }
    }
    this._byId.set(brief.id, brief);
  }

  private _invalidate(): void {
    this._view = null;
    this._groups = null;
    this._changed.emit();
  }

  private _byId = new Map<number, ICaptureBrief>();
  private _order: number[] = [];
  private _filter: ICaptureFilter = EMPTY_FILTER;
  private _view: ICaptureBrief[] | null = null;
  private _groups: IFunctionGroup[] | null = null;
  private _lastEviction: string | null = null;
  private readonly _changed = new Signal<this, void>(this);
}

/**
 * A predicate for one filter; every word of the text must match somewhere (`#17` matches
 * exactly capture 17).
 */
export function matcher(
  filter: ICaptureFilter
): (brief: ICaptureBrief) => boolean {
  const words = filter.text.toLowerCase().split(/\s+/).filter(Boolean);
  return brief => {
    if (filter.kind && brief.kind !== filter.kind) {
      return false;
    }
    if (filter.qualname && brief.qualname !== filter.qualname) {
      return false;
    }
    if (!words.length) {
      return true;
    }
    const haystack =
      `${brief.qualname} ${brief.name} ${brief.file}:${brief.line}`.toLowerCase();
    return words.every(word =>
      /^#\d+$/.test(word) ? `#${brief.id}` === word : haystack.includes(word)
    );
  };
}
