/**
 * The kernel-connections plugin: one KernelBridge per open notebook panel, made when the
 * panel opens and disposed when it closes.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { IKernelConnections } from '../tokens';
import { KernelBridge } from './bridge';
import { DEFAULT_INSTALL_COMMAND, fetchServerInfo } from './serverInfo';

/** The bridges of the open notebook panels. */
export class KernelConnections implements IKernelConnections {
  constructor(private readonly _tracker: INotebookTracker) {
    fetchServerInfo()
      .then(info => {
        this._installCommand = info.install_command;
      })
      .catch(error =>
        console.warn(
          `nopdb-lab: server extension not reachable (${error}); using the default install command`
        )
      );
    _tracker.widgetAdded.connect((_, panel) => this._add(panel));
  }

  get added(): ISignal<this, IKernelConnections.IEntry> {
    return this._added;
  }

  get removed(): ISignal<this, IKernelConnections.IEntry> {
    return this._removed;
  }

  get current(): KernelBridge | null {
    const panel = this._tracker.currentWidget;
    return panel ? (this._bridges.get(panel) ?? null) : null;
  }

  get(panel: NotebookPanel): KernelBridge | undefined {
    return this._bridges.get(panel);
  }

  panelOf(bridge: KernelBridge): NotebookPanel | undefined {
    return [...this._bridges].find(([, b]) => b === bridge)?.[0];
  }

  entries(): IterableIterator<[NotebookPanel, KernelBridge]> {
    return this._bridges.entries();
  }

  private _add(panel: NotebookPanel): void {
    const bridge = new KernelBridge(panel.sessionContext, {
      installCommand: () => this._installCommand
    });
    this._bridges.set(panel, bridge);
    panel.disposed.connect(() => {
      this._removed.emit({ panel, bridge });
      this._bridges.delete(panel);
      bridge.dispose();
    });
    this._added.emit({ panel, bridge });
  }

  private _installCommand = DEFAULT_INSTALL_COMMAND;
  private readonly _bridges = new Map<NotebookPanel, KernelBridge>();
  private readonly _added = new Signal<this, IKernelConnections.IEntry>(this);
  private readonly _removed = new Signal<this, IKernelConnections.IEntry>(this);
}

/** JupyterLab's commands that interrupt the current notebook's kernel (stop button, menu). */
export const INTERRUPT_COMMANDS = new Set([
  'notebook:interrupt-kernel',
  'kernelmenu:interrupt'
]);

export const kernelPlugin: JupyterFrontEndPlugin<IKernelConnections> = {
  id: 'nopdb-lab:kernel',
  description: 'The nopdb-lab kernel connection of each notebook.',
  autoStart: true,
  requires: [INotebookTracker],
  provides: IKernelConnections,
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const connections = new KernelConnections(tracker);
    // the stop button interrupts the kernel's main thread; the requests it serves in a
    // subshell are interrupted from the main shell
    app.commands.commandExecuted.connect((_, { id }) => {
      if (INTERRUPT_COMMANDS.has(id)) {
        connections.current?.interruptRequests();
      }
    });
    return connections;
  }
};
