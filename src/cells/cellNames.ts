/**
 * Notebook cells by the names a user knows (`Cell 3 [4]`) instead of ipykernel's
 * temporary file names (`/tmp/ipykernel_123/1929098357.py`).
 *
 * ipykernel compiles each cell to a file named after the murmur2 hash of the cell's
 * text (`ipykernel.compiler.get_file_name`), so the front end, which holds every cell's
 * text, can tell which cell a file is by hashing the cells the same way. The cell is
 * looked up by id when a name is asked for, so the name follows the cell when it moves.
 * A cell edited after it ran no longer hashes to its file: the hashes of the texts each
 * cell was run with are remembered, and such a cell is named with "(edited)".
 */
import { ISignal, Signal } from '@lumino/signaling';

/** The seed ipykernel hashes cells with (`get_tmp_hash_seed`). */
export const IPYKERNEL_HASH_SEED = 0xc70f6907;

/** murmur2 (32-bit, x86) of the UTF-8 bytes of `text`, as ipykernel computes it. */
export function murmur2x86(text: string, seed: number): number {
  const data = new TextEncoder().encode(text);
  const m = 0x5bd1e995;
  const length = data.length;
  let h = (seed ^ length) >>> 0;
  const roundedEnd = length & 0xfffffffc;
  for (let i = 0; i < roundedEnd; i += 4) {
    let k =
      data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, m) >>> 0;
    k = (k ^ (k >>> 24)) >>> 0;
    k = Math.imul(k, m) >>> 0;
    h = Math.imul(h, m) >>> 0;
    h = (h ^ k) >>> 0;
  }
  const rest = length & 3;
  let k = 0;
  if (rest === 3) {
    k = data[roundedEnd + 2] << 16;
  }
  if (rest >= 2) {
    k |= data[roundedEnd + 1] << 8;
  }
  if (rest >= 1) {
    k |= data[roundedEnd];
    h = (h ^ k) >>> 0;
    h = Math.imul(h, m) >>> 0;
  }
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, m) >>> 0;
  h = (h ^ (h >>> 15)) >>> 0;
  return h;
}

/** The hash in an ipykernel cell file name (`…/ipykernel_<pid>/<hash>.py`), else null. */
export function cellFileHash(file: string): number | null {
  const match = /[\\/]ipykernel_\d+[\\/](\d+)\.py$/.exec(file);
  return match ? Number(match[1]) : null;
}

/** The part of a notebook cell the names need (a cell model). */
export interface ICellLike {
  readonly id: string;
  readonly type: string;
  readonly sharedModel: { getSource(): string };
  /** Code cells: the prompt number, null before a run. */
  readonly executionCount?: number | null;
}

/** A cell's list of cells and the signal that it changed (a notebook model). */
export interface ICellsLike {
  readonly cells: {
    readonly length: number;
    get(index: number): ICellLike;
    readonly changed: ISignal<any, any>;
  };
}

/** Where a cell file's code is in the notebook. */
export interface ICellPlace {
  cellId: string;
  /** 1-based position in the notebook now. */
  number: number;
  /** The prompt number, if the cell ran. */
  executionCount: number | null;
  /** Whether the cell's text changed since it ran as this file. */
  edited: boolean;
}

/** Names of a notebook's cell files; `changed` fires when cells move or are added. */
export class CellNames {
  constructor(private readonly _notebook: ICellsLike) {
    _notebook.cells.changed.connect(this._onCellsChanged, this);
  }

  /** Cells were added, removed or moved: names may read differently now. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Remember the text a cell runs with (call when a cell is scheduled to run). */
  noteRun(cell: ICellLike): void {
    this._history.set(this._hash(cell.sharedModel.getSource()), cell.id);
  }

  /** The cell `file` is the code of, or null when it is not one of this notebook's. */
  locate(file: string): ICellPlace | null {
    const hash = cellFileHash(file);
    if (hash === null) {
      return null;
    }
    const cells = this._notebook.cells;
    let historic: string | undefined = this._history.get(hash);
    for (let i = 0; i < cells.length; i++) {
      const cell = cells.get(i);
      if (cell.type !== 'code') {
        continue;
      }
      if (this._hash(cell.sharedModel.getSource()) === hash) {
        this._history.set(hash, cell.id);
        return this._place(cell, i, false);
      }
    }
    if (historic !== undefined) {
      for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.id === historic) {
          return this._place(cell, i, true);
        }
      }
      historic = undefined;
    }
    return null;
  }

  /** `Cell 3 [4]` for a cell file, else the file's base name. */
  fileLabel(file: string): string {
    const place = this.locate(file);
    if (!place) {
      return basenameOf(file);
    }
    const count =
      place.executionCount !== null && !place.edited
        ? ` [${place.executionCount}]`
        : '';
    return `Cell ${place.number}${count}${place.edited ? ' (edited)' : ''}`;
  }

  /** `Cell 3 [4], line 2` for a cell file, else `file.py:2`. */
  label(file: string, line: number): string {
    return this.locate(file)
      ? `${this.fileLabel(file)}, line ${line}`
      : `${basenameOf(file)}:${line}`;
  }

  dispose(): void {
    Signal.clearData(this);
  }

  private _place(cell: ICellLike, index: number, edited: boolean): ICellPlace {
    return {
      cellId: cell.id,
      number: index + 1,
      executionCount: cell.executionCount ?? null,
      edited
    };
  }

  private _hash(source: string): number {
    let hash = this._cache.get(source);
    if (hash === undefined) {
      hash = murmur2x86(source, IPYKERNEL_HASH_SEED);
      if (this._cache.size > 2000) {
        this._cache.clear();
      }
      this._cache.set(source, hash);
    }
    return hash;
  }

  private _onCellsChanged(): void {
    this._changed.emit();
  }

  private readonly _history = new Map<number, string>();
  private readonly _cache = new Map<string, number>();
  private readonly _changed = new Signal<this, void>(this);
}

/** The file name without folders (no cell known for it). */
export function basenameOf(file: string): string {
  const parts = file.split(/[\\/]/);
  return parts[parts.length - 1] || file;
}

/** A namer for files when no notebook is known: base names. */
export const plainNames = {
  label: (file: string, line: number): string => `${basenameOf(file)}:${line}`,
  fileLabel: (file: string): string => basenameOf(file)
};
