/**
 * nopdb-lab's JupyterLab plugin: a capture browser in the right sidebar that follows the
 * active notebook, with one kernel bridge per open notebook.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { CodeEditorWrapper, IEditorServices } from '@jupyterlab/codeeditor';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry
} from '@jupyterlab/codemirror';
import {
  INotebookModel,
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import {
  clearIcon,
  SidePanel,
  tableRowsIcon,
  ToolbarButton
} from '@jupyterlab/ui-components';

import {
  BreakpointTarget,
  breakpointExtension,
  GutterTargets
} from './breakpoints/gutter';
import { BreakpointModel, BreakpointPlace } from './breakpoints/model';
import { BrowserModel, IBrowserActions } from './captures/browserModel';
import {
  BreakpointsView,
  IBreakpointActions
} from './breakpoints/BreakpointsPanel';
import { AttentionToggle } from './captures/AttentionToggle';
import { BrowserHeader } from './captures/BrowserHeader';
import { CaptureDetailsView } from './captures/CaptureDetails';
import { CaptureListView } from './captures/CaptureListView';
import { HeatmapWidget } from './heatmap/HeatmapView';
import { probeIcon } from './ui/icons';
import { KernelBridge } from './kernel/bridge';
import { DEFAULT_INSTALL_COMMAND, fetchServerInfo } from './kernel/serverInfo';
import { createSourceView, revealLine } from './sources/sourceView';

/** Command ids. */
export namespace CommandIDs {
  export const openBrowser = 'nopdb-lab:open-capture-browser';
  export const clearCaptures = 'nopdb-lab:clear-captures';
  export const openByName = 'nopdb-lab:open-source-by-name';
  export const toggleBreakpoint = 'nopdb-lab:toggle-breakpoint';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:plugin',
  description:
    'A non-stopping debugger for ML models: capture browser and kernel bridge.',
  autoStart: true,
  requires: [INotebookTracker, IEditorServices, IEditorExtensionRegistry],
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    editorServices: IEditorServices,
    editorExtensions: IEditorExtensionRegistry,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    let installCommand = DEFAULT_INSTALL_COMMAND;
    fetchServerInfo()
      .then(info => {
        installCommand = info.install_command;
      })
      .catch(error =>
        console.warn(
          `nopdb-lab: server extension not reachable (${error}); using the default install command`
        )
      );

    const bridges = new Map<NotebookPanel, KernelBridge>();
    /** The notebook panel a bridge serves. */
    const panelOf = (bridge: KernelBridge): NotebookPanel | undefined =>
      [...bridges].find(([, b]) => b === bridge)?.[0];
    const breakpointModels = new Map<KernelBridge, BreakpointModel>();
    const sharedBreakpoints = new Map<
      INotebookModel,
      { model: BreakpointModel; bridges: Set<KernelBridge> }
    >();
    const gutterTargets = new GutterTargets();
    editorExtensions.addExtension({
      name: 'nopdb-lab:breakpoints',
      factory: ({ model }) =>
        EditorExtensionRegistry.createImmutableExtension(
          breakpointExtension(gutterTargets, model)
        )
    });
    let heatmapCount = 0;
    /** Source views by notebook (their breakpoints belong to it) and file. */
    const sources = new Map<
      KernelBridge,
      Map<string, MainAreaWidget<CodeEditorWrapper>>
    >();

    /** Open a file read-only at a line, with the notebook's breakpoint gutter. */
    const openSource = async (
      bridge: KernelBridge,
      file: string,
      line: number
    ): Promise<void> => {
      const views = sources.get(bridge) ?? new Map();
      sources.set(bridge, views);
      const open = views.get(file);
      if (open && !open.isDisposed) {
        app.shell.activateById(open.id);
        revealLine(open.content, line);
        return;
      }
      const client = bridge.client;
      if (!client) {
        throw new Error("the notebook's kernel is not connected");
      }
      const response = await client.request('source', { file });
      const notebook = panelOf(bridge);
      if (response.result.cell && notebook) {
        // code of a cell: show the cell itself, where its gutter and breakpoints are
        const text = response.result.text;
        // the kernel's copy is the cell as IPython ran it: with a final newline
        const cell = notebook.content.widgets.find(c => {
          const source = c.model.sharedModel.getSource();
          return source === text || `${source}\n` === text;
        });
        if (cell) {
          revealCell(notebook, cell.model.id, line);
          return;
        }
      }
      const breakpoints = breakpointModels.get(bridge);
      const widget = createSourceView(
        editorServices,
        file,
        response.result.text,
        line,
        model => {
          if (breakpoints) {
            gutterTargets.addSource(
              model,
              new BreakpointTarget(breakpoints, { file })
            );
          }
        }
      );
      if (notebook) {
        widget.title.caption = `${file}\nBreakpoints here apply to the kernel of ${notebook.context.path}`;
      }
      views.set(file, widget);
      widget.disposed.connect(() => views.delete(file));
      app.shell.add(widget, 'main', { mode: 'split-right' });
      app.shell.activateById(widget.id);
      requestAnimationFrame(() => revealLine(widget.content, line));
    };

    /** Activate a notebook and put the cursor on a line of one of its cells. */
    const revealCell = (panel: NotebookPanel, cellId: string, line: number) => {
      const notebook = panel.content;
      const index = notebook.widgets.findIndex(
        cell => cell.model.id === cellId
      );
      if (index < 0) {
        return;
      }
      app.shell.activateById(panel.id);
      notebook.activeCellIndex = index;
      const cell = notebook.widgets[index];
      void notebook.scrollToCell(cell).then(() => {
        cell.editor?.setCursorPosition({ line: line - 1, column: 0 });
        cell.editor?.focus();
      });
    };

    const actions: IBrowserActions = {
      openSource: (bridge, file, line) => {
        openSource(bridge, file, line).catch(error =>
          Notification.error(`Cannot open ${file}: ${error.message}`)
        );
      },
      insertBelow: code => {
        const panel = tracker.currentWidget;
        if (!panel) {
          return;
        }
        NotebookActions.insertBelow(panel.content);
        panel.content.activeCell?.model.sharedModel.setSource(code);
        app.shell.activateById(panel.id);
      },
      openHeatmap: source => {
        const content = new HeatmapWidget(source);
        const widget = new MainAreaWidget({ content });
        widget.id = `nopdb-lab-heatmap-${++heatmapCount}`;
        widget.title.label = source.expression.replace(
          /^nopdb_lab\.store/,
          'store'
        );
        widget.title.caption = source.expression;
        widget.title.icon = tableRowsIcon;
        widget.title.closable = true;
        app.shell.add(widget, 'main', { mode: 'split-right' });
        app.shell.activateById(widget.id);
      },
      stackAcross: (bridge, captureId, path) => {
        bridge.client
          ?.request('stack', { id: captureId, path })
          .then(response => model.select(response.result.id))
          .catch(error => Notification.error(`Cannot stack: ${error.message}`));
      },
      copy: text => Clipboard.copyToSystem(text),
      confirmClear: async count => {
        const result = await showDialog({
          title: 'Clear all captures?',
          body: `This deletes ${count} capture${count === 1 ? '' : 's'} from the kernel's store.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Clear' })
          ]
        });
        return result.button.accept;
      }
    };

    const model = new BrowserModel(actions);
    const follow = (panel: NotebookPanel | null) => {
      model.follow(
        panel ? (bridges.get(panel) ?? null) : null,
        panel?.context.path ?? ''
      );
    };

    const openByName = async (bridge: KernelBridge, name: string) => {
      const client = bridge.client;
      if (!client) {
        throw new Error("the notebook's kernel is not connected");
      }
      const found = (await client.request('locate', { name })).result;
      await openSource(bridge, found.file, found.line);
    };

    const breakpointActions: IBreakpointActions = {
      breakpointsOf: bridge => breakpointModels.get(bridge) ?? null,
      openByName,
      reveal: (bridge, bp) => {
        if (bp.file !== undefined) {
          actions.openSource(bridge, bp.file, bp.line);
          return;
        }
        const panel = panelOf(bridge);
        if (panel && bp.cell !== undefined) {
          revealCell(panel, bp.cell, bp.line);
        }
      },
      confirmRemoveAll: async count => {
        const result = await showDialog({
          title: 'Remove all breakpoints?',
          body: `This removes ${count} breakpoint${count === 1 ? '' : 's'} from this notebook and its kernel.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Remove all' })
          ]
        });
        return result.button.accept;
      }
    };

    NotebookActions.executionScheduled.connect((_, { notebook, cell }) => {
      // a cell about to run sends its edited breakpoints first, so they apply to this run
      const panel = tracker.find(p => p.content === notebook);
      const bridge = panel ? bridges.get(panel) : undefined;
      if (bridge) {
        breakpointModels.get(bridge)?.flushCell(cell.model.id);
      }
    });

    tracker.widgetAdded.connect((_, panel) => {
      const bridge = new KernelBridge(panel.sessionContext, {
        installCommand: () => installCommand
      });
      bridges.set(panel, bridge);
      void panel.context.ready.then(() => {
        const notebookModel = panel.context.model;
        if (panel.isDisposed || !notebookModel) {
          return;
        }
        // views of one notebook share its breakpoints (one list, one metadata entry)
        let shared = sharedBreakpoints.get(notebookModel);
        if (!shared) {
          const model = new BreakpointModel(
            notebookModel,
            bridge,
            () => panel.context.path
          );
          model.notice.connect((_, message) =>
            Notification.warning(message, { autoClose: 6000 })
          );
          gutterTargets.addNotebook(notebookModel.sharedModel, model);
          shared = { model, bridges: new Set() };
          sharedBreakpoints.set(notebookModel, shared);
        }
        shared.bridges.add(bridge);
        breakpointModels.set(bridge, shared.model);
        breakpointsView.update();
        panel.disposed.connect(() => {
          const entry = sharedBreakpoints.get(notebookModel);
          entry?.bridges.delete(bridge);
          if (!entry) {
            return;
          }
          const [next] = entry.bridges;
          if (!next) {
            entry.model.dispose();
            sharedBreakpoints.delete(notebookModel);
          } else if (entry.model.connection === bridge) {
            entry.model.setConnection(next);
          }
        });
      });
      panel.disposed.connect(() => {
        breakpointModels.delete(bridge);
        for (const view of sources.get(bridge)?.values() ?? []) {
          view.dispose();
        }
        sources.delete(bridge);
        bridges.delete(panel);
        if (model.bridge === bridge) {
          follow(null);
        }
        bridge.dispose();
      });
      panel.context.pathChanged.connect(() => {
        if (model.bridge === bridge) {
          follow(panel);
        }
      });
      if (tracker.currentWidget === panel) {
        follow(panel);
      }
    });
    tracker.currentChanged.connect((_, panel) => follow(panel));

    const sidebar = new SidePanel();
    sidebar.id = 'jp-nopdb-lab-browser';
    sidebar.title.icon = probeIcon;
    sidebar.title.caption = 'nopdb-lab captures';
    sidebar.addClass('jp-NopdbLab-browser');
    sidebar.header.addWidget(new BrowserHeader(model));
    sidebar.toolbar.addItem(
      'clear',
      new ToolbarButton({
        icon: clearIcon,
        label: 'Clear all',
        tooltip: 'Delete every capture of this notebook from the kernel',
        onClick: () => void app.commands.execute(CommandIDs.clearCaptures)
      })
    );
    sidebar.toolbar.addItem('attention', new AttentionToggle(model));
    sidebar.addWidget(new CaptureListView(model));
    sidebar.addWidget(new CaptureDetailsView(model));
    const breakpointsView = new BreakpointsView(model, breakpointActions);
    sidebar.addWidget(breakpointsView);
    app.shell.add(sidebar, 'right', { rank: 600 });
    restorer?.add(sidebar, 'nopdb-lab-capture-browser');

    app.commands.addCommand(CommandIDs.openBrowser, {
      label: 'Show nopdb-lab Captures',
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CommandIDs.clearCaptures, {
      label: 'Clear nopdb-lab Captures',
      isEnabled: () => model.bridge?.state.status === 'ready',
      execute: async () => {
        const bridge = model.bridge;
        if (!bridge?.client) {
          return;
        }
        if (!(await actions.confirmClear(bridge.captures.size))) {
          return;
        }
        try {
          await bridge.client.request('clear', {});
        } catch (error) {
          Notification.error(
            `Clearing captures failed: ${(error as Error).message}`
          );
        }
      }
    });
    /** The breakpoint place and cursor line of the focused cell or source view. */
    const cursorTarget = (): {
      model: BreakpointModel;
      place: BreakpointPlace;
      line: number;
    } | null => {
      const current = app.shell.currentWidget;
      for (const [bridge, views] of sources) {
        for (const [file, view] of views) {
          if (view === current) {
            const model = breakpointModels.get(bridge);
            const line = view.content.editor.getCursorPosition().line + 1;
            return model ? { model, place: { file }, line } : null;
          }
        }
      }
      const panel = tracker.currentWidget;
      const cell = panel?.content.activeCell;
      const bridge = panel ? bridges.get(panel) : undefined;
      const model = bridge ? breakpointModels.get(bridge) : undefined;
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
    palette?.addItem({
      command: CommandIDs.toggleBreakpoint,
      category: 'nopdb-lab'
    });

    app.commands.addCommand(CommandIDs.openByName, {
      label: 'Open Source by Name (nopdb-lab)…',
      isEnabled: () => model.bridge?.state.status === 'ready',
      execute: async () => {
        const bridge = model.bridge;
        if (!bridge) {
          return;
        }
        const answer = await InputDialog.getText({
          title: 'Open source by dotted name',
          placeholder:
            'torch.nn.functional, transformers.models.bert.modeling_bert'
        });
        if (!answer.button.accept || !answer.value?.trim()) {
          return;
        }
        try {
          await openByName(bridge, answer.value.trim());
        } catch (error) {
          Notification.error(
            `Cannot open ${answer.value.trim()}: ${(error as Error).message}`
          );
        }
      }
    });
    palette?.addItem({ command: CommandIDs.openByName, category: 'nopdb-lab' });
    palette?.addItem({
      command: CommandIDs.openBrowser,
      category: 'nopdb-lab'
    });
    palette?.addItem({
      command: CommandIDs.clearCaptures,
      category: 'nopdb-lab'
    });
  }
};

export default plugin;
