/**
 * The capture-browser plugin: the right sidebar that follows the active notebook (its
 * kernel's status, captures, the selected capture's details) and the capture commands.
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
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';
import {
  addIcon,
  clearIcon,
  copyIcon,
  duplicateIcon,
  SidePanel,
  ToolbarButton
} from '@jupyterlab/ui-components';

import { CommandIDs, PALETTE_CATEGORY } from '../commands';
import { PathStep } from '../kernel/protocol';
import { ICaptureBrowser, IKernelConnections } from '../tokens';
import { probeIcon } from '../ui/icons';
import { AttentionToggle } from './AttentionToggle';
import { GradientToggle } from '../gradients/GradientToggle';
import { BrowserHeader } from './BrowserHeader';
import { BrowserModel } from './browserModel';
import { CaptureDetailsView } from './CaptureDetails';
import { CaptureListView } from './CaptureListView';
import { cellNamesOf } from '../cells/registry';
import { addOpenDetailsCommand, shareSidebarHeight } from './detailsInMain';
import { withProgress } from './longWork';

export const capturesPlugin: JupyterFrontEndPlugin<ICaptureBrowser> = {
  id: 'nopdb-lab:captures',
  description:
    'The nopdb-lab capture browser: captures of the active notebook and their values.',
  autoStart: true,
  requires: [INotebookTracker, IKernelConnections],
  optional: [ILayoutRestorer, ICommandPalette],
  provides: ICaptureBrowser,
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    connections: IKernelConnections,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ) => {
    const model = new BrowserModel();
    const follow = (panel: NotebookPanel | null) => {
      model.follow(
        panel ? (connections.get(panel) ?? null) : null,
        panel?.context.path ?? ''
      );
      model.setCellNames(panel ? cellNamesOf(panel) : null);
    };
    connections.added.connect((_, { panel, bridge }) => {
      panel.context.pathChanged.connect(() => {
        if (model.bridge === bridge) {
          follow(panel);
        }
      });
      if (tracker.currentWidget === panel) {
        follow(panel);
      }
    });
    connections.removed.connect((_, { bridge }) => {
      if (model.bridge === bridge) {
        follow(null);
      }
    });
    tracker.currentChanged.connect((_, panel) => follow(panel));

    const sidebar = new SidePanel();
    sidebar.id = 'jp-nopdb-lab-browser';
    sidebar.title.icon = probeIcon;
    sidebar.title.caption = 'nopdb-lab captures';
    sidebar.addClass('jp-NopdbLab-browser');
    sidebar.header.addWidget(new BrowserHeader(model, app.commands));
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
    sidebar.toolbar.addItem('gradients', new GradientToggle(model));
    sidebar.addWidget(new CaptureListView(model));
    sidebar.addWidget(new CaptureDetailsView(model, app.commands));
    app.shell.add(sidebar, 'right', { rank: 600 });
    restorer?.add(sidebar, 'nopdb-lab-capture-browser');
    addOpenDetailsCommand(app, model);
    // after every plugin added its section (the breakpoints are another plugin)
    void Promise.resolve(app.restored).then(() => shareSidebarHeight(sidebar));

    const ready = () => model.bridge?.state.status === 'ready';
    app.commands.addCommand(CommandIDs.openBrowser, {
      label: 'Show nopdb-lab Captures',
      execute: () => app.shell.activateById(sidebar.id)
    });
    app.commands.addCommand(CommandIDs.clearCaptures, {
      label: 'Clear nopdb-lab Captures',
      isEnabled: ready,
      execute: async () => {
        const bridge = model.bridge;
        if (!bridge?.client) {
          return;
        }
        const count = bridge.captures.size;
        const result = await showDialog({
          title: 'Clear all captures?',
          body: `This deletes ${count} capture${count === 1 ? '' : 's'} from the kernel's store.`,
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Clear' })
          ]
        });
        if (!result.button.accept) {
          return;
        }
        try {
          await model.clear();
        } catch (error) {
          Notification.error(
            `Clearing captures failed: ${(error as Error).message}`
          );
        }
      }
    });
    app.commands.addCommand(CommandIDs.deleteCapture, {
      label: args =>
        args.captureId === undefined
          ? 'Delete the Selected Capture'
          : `Delete Capture #${args.captureId}`,
      isEnabled: args =>
        ready() && (args.captureId !== undefined || model.selectedId !== null),
      describedBy: {
        args: {
          type: 'object',
          properties: { captureId: { type: 'number' } }
        }
      },
      execute: async args => {
        const id = (args.captureId as number | undefined) ?? model.selectedId;
        if (id === null) {
          return;
        }
        try {
          await model.deleteCapture(id);
        } catch (error) {
          Notification.error(
            `Cannot delete capture #${id}: ${(error as Error).message}`
          );
        }
      }
    });
    app.commands.addCommand(CommandIDs.stackAcross, {
      label: 'Stack Across Captures (layers)',
      icon: duplicateIcon,
      isEnabled: ready,
      describedBy: {
        args: {
          type: 'object',
          properties: {
            captureId: { type: 'number' },
            path: { type: 'array', items: { type: ['string', 'number'] } }
          },
          required: ['captureId', 'path']
        }
      },
      execute: async args => {
        const bridge = model.bridge;
        try {
          const work = model.stackAcross(
            args.captureId as number,
            args.path as PathStep[]
          );
          await (bridge
            ? withProgress(bridge, 'Stacking across captures', work)
            : work);
        } catch (error) {
          if ((error as { reported?: boolean }).reported) {
            return;
          }
          Notification.error(`Cannot stack: ${(error as Error).message}`);
        }
      }
    });
    app.commands.addCommand(CommandIDs.copyExpression, {
      label: args =>
        args.expression ? `Copy ${args.expression}` : 'Copy Expression',
      icon: copyIcon,
      describedBy: {
        args: {
          type: 'object',
          properties: { expression: { type: 'string' } },
          required: ['expression']
        }
      },
      execute: args => Clipboard.copyToSystem(args.expression as string)
    });
    app.commands.addCommand(CommandIDs.insertCell, {
      label: args =>
        args.code
          ? `Insert ${args.code} in a Cell Below`
          : 'Insert in a Cell Below',
      icon: addIcon,
      isEnabled: () => tracker.currentWidget !== null,
      describedBy: {
        args: {
          type: 'object',
          properties: { code: { type: 'string' } },
          required: ['code']
        }
      },
      execute: args => {
        const panel = tracker.currentWidget;
        if (!panel) {
          return;
        }
        NotebookActions.insertBelow(panel.content);
        panel.content.activeCell?.model.sharedModel.setSource(
          (args.code as string) ?? ''
        );
        app.shell.activateById(panel.id);
      }
    });
    for (const command of [
      CommandIDs.openBrowser,
      CommandIDs.clearCaptures,
      CommandIDs.deleteCapture
    ]) {
      palette?.addItem({ command, category: PALETTE_CATEGORY });
    }
    return { model, sidebar };
  }
};
