/**
 * One `CellNames` per open notebook, made on first use, remembering the text each cell
 * is run with (so a cell edited after it ran is still found).
 */
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { CellNames, ICellsLike, plainNames } from './cellNames';

const namesOf = new WeakMap<object, CellNames>();
let listening = false;

/** The cell names of a notebook panel's cells. */
export function cellNamesOf(panel: NotebookPanel): CellNames | null {
  const notebook = panel.content.model;
  if (!notebook) {
    return null;
  }
  if (!listening) {
    listening = true;
    NotebookActions.executionScheduled.connect((_, { notebook: nb, cell }) => {
      const model = nb.model;
      if (model) {
        namesOf.get(model)?.noteRun(cell.model);
      }
    });
  }
  let names = namesOf.get(notebook);
  if (!names) {
    names = new CellNames(notebook as unknown as ICellsLike);
    namesOf.set(notebook, names);
    panel.disposed.connect(() => names?.dispose());
  }
  return names;
}

/** What views name files with: a notebook's cell names, or base names. */
export type FileNamer = Pick<CellNames, 'label' | 'fileLabel'>;

export function namerOf(names: CellNames | null): FileNamer {
  return names ?? plainNames;
}
