/**
 * The breakpoints plugin: the gutter in code cells and source views (an editor extension,
 * so every editor gets it), one breakpoint list per notebook shared by its views, the
 * "Breakpoints" section of the capture browser, and the breakpoint commands (F9).
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
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry
} from '@jupyterlab/codemirror';
import {
  INotebookModel,
  INotebookTracker,
  NotebookActions
} from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { CommandIDs, PALETTE_CATEGORY } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import {
  IBreakpointRegistry,
  ICaptureBrowser,
  IKernelConnections,
  ISourceOpener
} from '../tokens';
import { BreakpointsView } from './BreakpointsPanel';
import { BreakpointTarget, breakpointExtension, GutterTargets } from './gutter';
import { BreakpointModel, BreakpointPlace } from './model';

/** Each bridge's breakpoint list; the views of one notebook share one list. */
class BreakpointRegistry implements IBreakpointRegistry {
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  modelOf(bridge: KernelBridge): BreakpointModel | null {
    return this._models.get(bridge) ?? null;
  }

  /** Give a notebook view's bridge the notebook's list (made for its first view). */
  attach(
    notebook: INotebookModel,
    bridge: KernelBridge,
    create: () => BreakpointModel
  ): void {
    let shared = this._shared.get(notebook);
    if (!shared) {
      shared = { model: create(), bridges: new Set() };
      this._shared.set(notebook, shared);
    }
    shared.bridges.add(bridge);
    this._models.set(bridge, shared.model);
    this._changed.emit();
  }

  /**
   * A view closed: its list moves to another view's connection when it used this one,
   * and is disposed with the notebook's last view.
   */
  detach(notebook: INotebookModel | null, bridge: KernelBridge): void {
    this._models.delete(bridge);
    const entry = notebook ? this._shared.get(notebook) : undefined;
    if (notebook && entry) {
      entry.bridges.delete(bridge);
      const [next] = entry.bridges;
      if (!next) {
        entry.model.dispose();
        this._shared.delete(notebook);
      } else if (entry.model.connection === bridge) {
        entry.model.setConnection(next);
      }
    }
    this._changed.emit();
  }

  private readonly _models = new Map<KernelBridge, BreakpointModel>();
  private readonly _shared = new Map<
    INotebookModel,
    { model: BreakpointModel; bridges: Set<KernelBridge> }
  >();
  private readonly _changed = new Signal<this, void>(this);
}

export const breakpointsPlugin: JupyterFrontEndPlugin<IBreakpointRegistry> = {
  id: 'nopdb-lab:breakpoints',
  description:
    'Breakpoints that do not stop: gutters, the Breakpoints section, F9.',
  autoStart: true,
  requires: [
    INotebookTracker,
    IEditorExtensionRegistry,
    IKernelConnections,
    ISourceOpener,
    ICaptureBrowser
  ],
  optional: [ICommandPalette],
  provides: IBreakpointRegistry,
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    editorExtensions: IEditorExtensionRegistry,
    connections: IKernelConnections,
    sources: ISourceOpener,
    browser: ICaptureBrowser,
    palette: ICommandPalette | null
  ) => {
    const registry = new BreakpointRegistry();
    // Breakpoints with code from an untrusted notebook are held disabled until the user
    // runs JupyterLab's Trust command on it (model.ts, README "Security").
    app.commands.commandExecuted.connect((_, executed) => {
      if (executed.id !== 'notebook:trust') {
        return;
      }
      const panel = tracker.currentWidget; // the notebook the command acts on
      const notebook = panel?.context.model;
      if (!panel || !notebook) {
        return;
      }
      void Promise.resolve(executed.result)
        .then(() => {
          const bridge = connections.get(panel);
          if (bridge) {
            registry.modelOf(bridge)?.releaseIfTrusted();
          }
        })
        .catch(() => undefined); // a cancelled dialog: nothing to release
    });
    const gutterTargets = new GutterTargets();
    editorExtensions.addExtension({
      name: 'nopdb-lab:breakpoints',
      factory: ({ model }) =>
        EditorExtensionRegistry.createImmutableExtension(
          breakpointExtension(gutterTargets, model)
        )
    });
    sources.viewCreated.connect((_, { bridge, file, model }) => {
      const breakpoints = registry.modelOf(bridge);
      if (breakpoints) {
        gutterTargets.addSource(
          model,
          new BreakpointTarget(breakpoints, { file })
        );
      }
    });

    connections.added.connect((_, { panel, bridge }) => {
      void panel.context.ready.then(() => {
        const notebookModel = panel.context.model;
        if (panel.isDisposed || !notebookModel) {
          return;
        }
        registry.attach(notebookModel, bridge, () => {
          const model = new BreakpointModel(
            notebookModel,
            bridge,
            () => panel.context.path
          );
          model.notice.connect((_, message) =>
            Notification.warning(message, { autoClose: 6000 })
          );
          gutterTargets.addNotebook(notebookModel.sharedModel, model);
          return model;
        });
        panel.disposed.connect(() => registry.detach(notebookModel, bridge));
      });
    });
    connections.removed.connect((_, { bridge }) =>
      registry.detach(null, bridge)
    );

    NotebookActions.executionScheduled.connect((_, { notebook, cell }) => {
      // a cell about to run sends its edited breakpoints first, so they apply to this run
      const panel = tracker.find(p => p.content === notebook);
      const bridge = panel ? connections.get(panel) : undefined;
      if (bridge) {
        registry.modelOf(bridge)?.flushCell(cell.model.id);
      }
    });

    const view = new BreakpointsView(browser.model, {
      breakpointsOf: bridge => registry.modelOf(bridge),
      commands: app.commands
    });
    registry.changed.connect(() => view.update());
    browser.sidebar.addWidget(view);

    /** The breakpoints of the notebook the capture browser follows. */
    const followed = (): BreakpointModel | null => {
      const bridge = browser.model.bridge;
      return bridge ? registry.modelOf(bridge) : null;
    };

    /** The breakpoint place and cursor line of the focused cell or source view. */
    const cursorTarget = (): {
      model: BreakpointModel;
      place: BreakpointPlace;
      line: number;
    } | null => {
      const current = app.shell.currentWidget;
      const source = sources.sourceOf(current);
      if (source) {
        const model = registry.modelOf(source.bridge);
        const view = current as ISourceOpener.SourceView;
        const line = view.content.editor.getCursorPosition().line + 1;
        return model ? { model, place: { file: source.file }, line } : null;
      }
      const panel = tracker.currentWidget;
      const cell = panel?.content.activeCell;
      const bridge = panel ? connections.get(panel) : undefined;
      const model = bridge ? registry.modelOf(bridge) : null;
      if (!cell || cell.model.type !== 'code' || !cell.editor || !model) {
        return null;
      }
      const line = cell.editor.getCursorPosition().line + 1;
      return { model, place: { cell: cell.model.id }, line };
    };
    app.commands.addCommand(CommandIDs.toggleBreakpoint, {
      label: 'Toggle Breakpoint at the Cursor (nopdb-lab)',
      isEnabled: () => cursorTarget()?.model.available ?? false,
      execute: () => {
        const target = cursorTarget();
        if (target?.model.available) {
          target.model.toggle(target.place, target.line);
        }
      }
    });
    app.commands.addCommand(CommandIDs.revealBreakpoint, {
      label: 'Show Where the Breakpoint Is',
      describedBy: {
        args: {
          type: 'object',
          properties: { id: { type: 'string' } },
          required: ['id']
        }
      },
      execute: async args => {
        const bridge = browser.model.bridge;
        const bp = followed()?.breakpoints.find(b => b.id === args.id);
        if (!bridge || !bp) {
          return;
        }
        if (bp.file !== undefined) {
          return app.commands.execute(CommandIDs.openSource, {
            file: bp.file,
            line: bp.line
          });
        }
        const panel = connections.panelOf(bridge);
        if (panel && bp.cell !== undefined) {
          sources.revealCell(panel, bp.cell, bp.line);
        }
      }
    });
    app.commands.addCommand(CommandIDs.removeAllBreakpoints, {
      label: 'Remove All Breakpoints (nopdb-lab)',
      isEnabled: () => (followed()?.breakpoints.length ?? 0) > 0,
      execute: async () => {
        const model = followed();
        const count = model?.breakpoints.length ?? 0;
        if (!model || !count) {
          return;
        }
        const result = await showDialog({
          title: 'Remove all breakpoints?',
          body: `This removes ${count} breakpoint${count === 1 ? '' : 's'} from this notebook and its kernel.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Remove all' })
          ]
        });
        if (result.button.accept) {
          model.removeAll();
        }
      }
    });
    for (const command of [
      CommandIDs.toggleBreakpoint,
      CommandIDs.removeAllBreakpoints
    ]) {
      palette?.addItem({ command, category: PALETTE_CATEGORY });
    }
    return registry;
  }
};
