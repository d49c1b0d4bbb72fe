/**
 * The source-opener plugin: files the kernel runs, shown read-only at a line (a cell's
 * code opens the cell itself), one view per notebook and file.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  Notification
} from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ISignal, Signal } from '@lumino/signaling';

import { CommandIDs, PALETTE_CATEGORY } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import { IKernelConnections, ISourceOpener } from '../tokens';
import { createSourceView, revealLine } from './sourceView';

class SourceOpener implements ISourceOpener {
  constructor(
    private readonly _app: JupyterFrontEnd,
    private readonly _editorServices: IEditorServices,
    private readonly _connections: IKernelConnections
  ) {
    _connections.removed.connect((_, { bridge }) => {
      for (const view of this._views.get(bridge)?.values() ?? []) {
        view.dispose();
      }
      this._views.delete(bridge);
    });
  }

  get viewCreated(): ISignal<this, ISourceOpener.IViewCreated> {
    return this._viewCreated;
  }

  async open(bridge: KernelBridge, file: string, line: number): Promise<void> {
    const app = this._app;
    const views = this._views.get(bridge) ?? new Map();
    this._views.set(bridge, views);
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
    const notebook = this._connections.panelOf(bridge);
    if (response.result.cell && notebook) {
      // code of a cell: show the cell itself, where its gutter and breakpoints are
      const text = response.result.text;
      // the kernel's copy is the cell as IPython ran it: with a final newline
      const cell = notebook.content.widgets.find(c => {
        const source = c.model.sharedModel.getSource();
        return source === text || `${source}\n` === text;
      });
      if (cell) {
        this.revealCell(notebook, cell.model.id, line);
        return;
      }
    }
    const widget = createSourceView(
      this._editorServices,
      file,
      response.result.text,
      line,
      model => this._viewCreated.emit({ bridge, file, model })
    );
    if (notebook) {
      widget.title.caption = `${file}\nBreakpoints here apply to the kernel of ${notebook.context.path}`;
    }
    views.set(file, widget);
    widget.disposed.connect(() => views.delete(file));
    app.shell.add(widget, 'main', { mode: 'split-right' });
    app.shell.activateById(widget.id);
    requestAnimationFrame(() => revealLine(widget.content, line));
  }

  revealCell(panel: NotebookPanel, cellId: string, line: number): void {
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
    if (index < 0) {
      return;
    }
    this._app.shell.activateById(panel.id);
    notebook.activeCellIndex = index;
    const cell = notebook.widgets[index];
    void notebook.scrollToCell(cell).then(() => {
      cell.editor?.setCursorPosition({ line: line - 1, column: 0 });
      cell.editor?.focus();
    });
  }

  sourceOf(widget: unknown): { bridge: KernelBridge; file: string } | null {
    for (const [bridge, views] of this._views) {
      for (const [file, view] of views) {
        if (view === widget) {
          return { bridge, file };
        }
      }
    }
    return null;
  }

  private readonly _views = new Map<
    KernelBridge,
    Map<string, ISourceOpener.SourceView>
  >();
  private readonly _viewCreated = new Signal<this, ISourceOpener.IViewCreated>(
    this
  );
}

export const sourcesPlugin: JupyterFrontEndPlugin<ISourceOpener> = {
  id: 'nopdb-lab:sources',
  description: 'Opens kernel-side source files read-only, at a line.',
  autoStart: true,
  requires: [IEditorServices, IKernelConnections],
  optional: [ICommandPalette],
  provides: ISourceOpener,
  activate: (
    app: JupyterFrontEnd,
    editorServices: IEditorServices,
    connections: IKernelConnections,
    palette: ICommandPalette | null
  ) => {
    const opener = new SourceOpener(app, editorServices, connections);
    const currentBridge = (): KernelBridge => {
      const bridge = connections.current;
      if (!bridge) {
        throw new Error('no notebook is open');
      }
      return bridge;
    };

    app.commands.addCommand(CommandIDs.openSource, {
      label: args =>
        args.file ? `Open ${args.file}:${args.line ?? 1}` : 'Open Source File',
      caption:
        'Open a file the kernel runs, read-only, with the breakpoint gutter',
      describedBy: {
        args: {
          type: 'object',
          properties: {
            file: { type: 'string' },
            line: { type: 'number' }
          },
          required: ['file']
        }
      },
      execute: async args => {
        const file = args.file as string;
        try {
          await opener.open(currentBridge(), file, (args.line as number) ?? 1);
        } catch (error) {
          Notification.error(
            `Cannot open ${file}: ${(error as Error).message}`
          );
        }
      }
    });

    app.commands.addCommand(CommandIDs.openByName, {
      label: 'Open Source by Name (nopdb-lab)…',
      isEnabled: () => connections.current?.state.status === 'ready',
      describedBy: {
        args: {
          type: 'object',
          properties: { name: { type: 'string' } }
        }
      },
      execute: async args => {
        const bridge = currentBridge();
        /** Locate a dotted name in the kernel and open it; rejects with the kernel's message. */
        const openName = async (name: string) => {
          const client = bridge.client;
          if (!client) {
            throw new Error("the notebook's kernel is not connected");
          }
          const found = (await client.request('locate', { name })).result;
          await opener.open(bridge, found.file, found.line);
        };
        if (typeof args.name === 'string') {
          // from a view: the caller shows the error beside its input
          return openName(args.name);
        }
        const answer = await InputDialog.getText({
          title: 'Open source by dotted name',
          placeholder:
            'torch.nn.functional, transformers.models.bert.modeling_bert'
        });
        const name = answer.value?.trim();
        if (!answer.button.accept || !name) {
          return;
        }
        try {
          await openName(name);
        } catch (error) {
          Notification.error(
            `Cannot open ${name}: ${(error as Error).message}`
          );
        }
      }
    });
    palette?.addItem({
      command: CommandIDs.openByName,
      category: PALETTE_CATEGORY
    });
    return opener;
  }
};
