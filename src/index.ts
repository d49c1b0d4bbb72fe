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
  MainAreaWidget,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { CodeEditorWrapper, IEditorServices } from '@jupyterlab/codeeditor';
import {
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

import { BrowserModel, IBrowserActions } from './browserModel';
import { AttentionToggle } from './components/AttentionToggle';
import { BrowserHeader } from './components/BrowserHeader';
import { CaptureDetailsView } from './components/CaptureDetails';
import { CaptureListView } from './components/CaptureList';
import { HeatmapWidget } from './heatmap/HeatmapView';
import { probeIcon } from './icons';
import { KernelBridge } from './kernelBridge';
import { DEFAULT_INSTALL_COMMAND, fetchServerInfo } from './serverInfo';
import { createSourceView, revealLine } from './sourceView';

/** Command ids. */
export namespace CommandIDs {
  export const openBrowser = 'nopdb-lab:open-capture-browser';
  export const clearCaptures = 'nopdb-lab:clear-captures';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:plugin',
  description:
    'A non-stopping debugger for ML models: capture browser and kernel bridge.',
  autoStart: true,
  requires: [INotebookTracker, IEditorServices],
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    editorServices: IEditorServices,
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
    let heatmapCount = 0;
    const sources = new Map<string, MainAreaWidget<CodeEditorWrapper>>();

    const actions: IBrowserActions = {
      openSource: (bridge, file, line) => {
        const open = sources.get(file);
        if (open && !open.isDisposed) {
          app.shell.activateById(open.id);
          revealLine(open.content, line);
          return;
        }
        const client = bridge.client;
        if (!client) {
          return;
        }
        client
          .request('source', { file })
          .then(response => {
            const widget = createSourceView(
              editorServices,
              file,
              response.result.text,
              line
            );
            sources.set(file, widget);
            widget.disposed.connect(() => sources.delete(file));
            app.shell.add(widget, 'main', { mode: 'split-right' });
            app.shell.activateById(widget.id);
            requestAnimationFrame(() => revealLine(widget.content, line));
          })
          .catch(error =>
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

    tracker.widgetAdded.connect((_, panel) => {
      const bridge = new KernelBridge(panel.sessionContext, {
        installCommand: () => installCommand
      });
      bridges.set(panel, bridge);
      panel.disposed.connect(() => {
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
