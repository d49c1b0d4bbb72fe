/**
 * Capture bundles in the capture browser: save the selected capture or the whole store
 * as a `.nopdb` bundle next to the notebook, open a bundle into the notebook's kernel,
 * and compare two captured tensors of the same shape (A − B as a heatmap).
 *
 * Opening a bundle never runs code: the kernel parses its JSON manifest and maps tensor
 * bytes only (nopdb_lab/bundle.py), so a bundle from a stranger is safe to open.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import {
  downloadIcon,
  fileUploadIcon,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { CommandIDs, PALETTE_CATEGORY } from '../commands';
import { withProgress } from '../captures/longWork';
import { compareIcon } from './icons';
import { ICaptureDetail, ISummary, PathStep } from '../kernel/protocol';
import { ICaptureBrowser, IKernelConnections } from '../tokens';

/** Command ids of this plugin (appended to the nopdb-lab command set). */
export namespace BundleCommandIDs {
  /** Save the selected capture (`{ all: true }`: every capture) as a bundle. */
  export const saveBundle = 'nopdb-lab:save-bundle';
  /** Open a bundle into the current notebook's kernel; args `{ path? }`. */
  export const openBundle = 'nopdb-lab:open-bundle';
  /**
   * Compare two captured tensors; args `{ captureId, path, expression }` picks one side:
   * the first call remembers A, the second compares A with B and opens A − B. With
   * `{ a: {id, path}, b: {id, path} }` both sides at once.
   */
  export const compare = 'nopdb-lab:compare';
}

/** The help text of the open dialog (also the README's promise). */
export const OPEN_HELP =
  'Opening a bundle never runs code: the kernel only reads its JSON description ' +
  "and tensor bytes. A bundle's breakpoint conditions and actions are inert text.";

/** A dialog body with a labelled path input and a help line. */
class PathBody extends Widget {
  constructor(label: string, value: string, help: string) {
    super();
    this.addClass('jp-NopdbLab-bundleDialog');
    const name = document.createElement('label');
    name.textContent = label;
    this._input = document.createElement('input');
    this._input.className = 'jp-mod-styled jp-NopdbLab-bundlePath';
    this._input.value = value;
    this._input.setAttribute('aria-label', label);
    name.appendChild(this._input);
    const note = document.createElement('p');
    note.className = 'jp-NopdbLab-bundleHelp';
    note.textContent = help;
    this.node.append(name, note);
  }

  getValue(): string {
    return this._input.value.trim();
  }

  protected onAfterAttach(): void {
    this._input.focus();
    const stem = this._input.value.lastIndexOf('.');
    this._input.setSelectionRange(
      0,
      stem > 0 ? stem : this._input.value.length
    );
  }

  private readonly _input: HTMLInputElement;
}

interface ISide {
  id: number;
  path: PathStep[];
  expression: string;
}

function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export const bundlesPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:bundles',
  description:
    'Save and open nopdb-lab capture bundles (.nopdb) and compare two captures.',
  autoStart: true,
  requires: [ICaptureBrowser, IKernelConnections],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    browser: ICaptureBrowser,
    connections: IKernelConnections,
    palette: ICommandPalette | null
  ) => {
    const model = browser.model;
    const ready = () => model.bridge?.state.status === 'ready';
    /** The followed notebook's path and directory, relative to the server root. */
    const notebook = () => {
      const bridge = model.bridge;
      const panel = bridge ? connections.panelOf(bridge) : undefined;
      const path = panel?.context.path ?? model.label;
      return { path, dir: PathExt.dirname(path) };
    };
    const client = () => {
      const c = model.bridge?.client;
      if (!c) {
        throw new Error("the notebook's kernel is not connected");
      }
      return c;
    };

    app.commands.addCommand(BundleCommandIDs.saveBundle, {
      label: args =>
        args.all ? 'Save All Captures as Bundle…' : 'Save Selection as Bundle…',
      icon: args => (args.all ? downloadIcon : undefined),
      isEnabled: args =>
        ready() &&
        (args.all
          ? (model.bridge?.captures.size ?? 0) > 0
          : model.selectedId !== null),
      describedBy: {
        args: { type: 'object', properties: { all: { type: 'boolean' } } }
      },
      execute: async args => {
        const all = Boolean(args.all);
        const ids =
          all || model.selectedId === null ? undefined : [model.selectedId];
        const nb = notebook();
        const stem =
          PathExt.basename(nb.path, PathExt.extname(nb.path)) || 'captures';
        const body = new PathBody(
          'Bundle path (relative to the server root)',
          PathExt.join(nb.dir, `${stem}.nopdb`),
          all
            ? `Saves all ${model.bridge?.captures.size ?? 0} captures of this notebook.`
            : `Saves capture #${model.selectedId}.`
        );
        const result = await showDialog({
          title: all
            ? 'Save all captures as a bundle'
            : 'Save the selected capture',
          body,
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Save' })]
        });
        if (!result.button.accept || !result.value) {
          return;
        }
        const path = result.value;
        try {
          await withProgress(
            model.bridge!,
            `Saving ${path}`,
            client().request('bundle_save', {
              path,
              notebook_dir: nb.dir,
              ...(ids ? { ids } : {})
            }),
            {
              announce: ({ result: r }) =>
                `Saved ${r.count} capture${r.count === 1 ? '' : 's'} to ${r.path} (${formatBytes(r.nbytes)})`
            }
          );
        } catch (error) {
          if (!(error as { reported?: boolean }).reported) {
            Notification.error(
              `Cannot save the bundle: ${(error as Error).message}`,
              { autoClose: false }
            );
          }
        }
      }
    });

    app.commands.addCommand(BundleCommandIDs.openBundle, {
      label: 'Open Capture Bundle…',
      icon: fileUploadIcon,
      isEnabled: ready,
      describedBy: {
        args: { type: 'object', properties: { path: { type: 'string' } } }
      },
      execute: async args => {
        const nb = notebook();
        let path = args.path as string | undefined;
        if (!path) {
          const result = await showDialog({
            title: 'Open a capture bundle into this kernel',
            body: new PathBody(
              'Bundle path (relative to the server root)',
              PathExt.join(
                nb.dir,
                `${PathExt.basename(nb.path, PathExt.extname(nb.path))}.nopdb`
              ),
              OPEN_HELP
            ),
            buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Open' })]
          });
          if (!result.button.accept || !result.value) {
            return;
          }
          path = result.value;
        }
        const progress = Notification.emit(`Opening ${path}…`, 'in-progress', {
          autoClose: false
        });
        try {
          const response = await client().request('bundle_open', {
            path,
            notebook_dir: nb.dir
          });
          const { bundle, captures } = response.result;
          Notification.update({
            id: progress,
            message: `Opened ${captures.length} capture${captures.length === 1 ? '' : 's'} from ${bundle}`,
            type: 'success',
            autoClose: 5000
          });
          if (captures.length) {
            model.select(captures[0].id);
          }
        } catch (error) {
          Notification.update({
            id: progress,
            message: `Cannot open the bundle: ${(error as Error).message}`,
            type: 'error',
            autoClose: false
          });
        }
      }
    });

    let pending: ISide | null = null;
    const openDifference = async (a: ISide, b: ISide) => {
      const response = await client().request('compare', {
        a: { id: a.id, path: a.path },
        b: { id: b.id, path: b.path }
      });
      const id = response.result.id;
      model.select(id);
      const detail: ICaptureDetail = await model.detail(id);
      const diff = detail.locals?.diff as ISummary | undefined;
      void app.commands.execute(CommandIDs.openHeatmap, {
        captureId: id,
        path: ['locals', 'diff'],
        expression: diff?.expression ?? `nopdb_lab.store[${id}].locals['diff']`,
        shape: diff?.shape ?? [],
        signed: true
      });
    };
    app.commands.addCommand(BundleCommandIDs.compare, {
      label: args =>
        pending && args.expression
          ? `Compare ${pending.expression} − ${args.expression}`
          : args.expression
            ? `Compare ${args.expression} with…`
            : 'Compare Two Captures',
      icon: compareIcon,
      isEnabled: ready,
      describedBy: {
        args: {
          type: 'object',
          properties: {
            captureId: { type: 'number' },
            path: { type: 'array', items: { type: ['string', 'number'] } },
            expression: { type: 'string' }
          }
        }
      },
      execute: async args => {
        try {
          const side: ISide = {
            id: args.captureId as number,
            path: (args.path as PathStep[]) ?? [],
            expression: (args.expression as string) ?? `#${args.captureId}`
          };
          if (
            !pending ||
            (pending.id === side.id &&
              JSON.stringify(pending.path) === JSON.stringify(side.path))
          ) {
            pending = side;
            Notification.info(
              `A = ${side.expression}. Now choose "Compare with…" on B (same shape).`,
              { autoClose: 8000 }
            );
            return;
          }
          const a = pending;
          pending = null;
          await openDifference(a, side);
        } catch (error) {
          Notification.error(`Cannot compare: ${(error as Error).message}`);
        }
      }
    });
    // a new kernel or notebook: a remembered A names a capture that may be gone
    model.changed.connect(() => {
      if (pending && !model.bridge?.captures.get(pending.id)) {
        pending = null;
      }
    });

    browser.sidebar.toolbar.addItem(
      'save-bundle',
      new ToolbarButton({
        icon: downloadIcon,
        // icon only (the tooltip names it): the toolbar fits the default sidebar width
        tooltip: 'Save bundle: all captures of this notebook as a .nopdb file',
        onClick: () =>
          void app.commands.execute(BundleCommandIDs.saveBundle, { all: true })
      })
    );
    browser.sidebar.toolbar.addItem(
      'open-bundle',
      new ToolbarButton({
        icon: fileUploadIcon,
        tooltip:
          "Open bundle: a .nopdb file into this notebook's kernel (never runs code)",
        onClick: () => void app.commands.execute(BundleCommandIDs.openBundle)
      })
    );
    for (const [command, args] of [
      [BundleCommandIDs.saveBundle, {}],
      [BundleCommandIDs.saveBundle, { all: true }],
      [BundleCommandIDs.openBundle, {}]
    ] as const) {
      palette?.addItem({ command, args, category: PALETTE_CATEGORY });
    }
  }
};
