/**
 * The `.nopdb` document type: double-clicking a bundle in the file browser opens a
 * viewer backed by its own Python kernel (started for the file, in the file's folder),
 * which loads the bundle (`bundle_open`: never runs code) and shows the capture
 * browser's list and details. Heatmaps, stacking and compare act on that kernel.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification, SessionContext } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { Contents } from '@jupyterlab/services';
import {
  ABCWidgetFactory,
  TextModelFactory,
  DocumentRegistry,
  DocumentWidget
} from '@jupyterlab/docregistry';
import { SplitPanel, Widget } from '@lumino/widgets';
import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import { PathStep } from '../kernel/protocol';
import { BrowserModel } from '../captures/browserModel';
import { CaptureDetailsView } from '../captures/CaptureDetails';
import { CaptureListView } from '../captures/CaptureListView';
import { IHeatmapOpener } from '../tokens';
import { bundleIcon } from './icons';

const FACTORY = 'nopdb-lab bundle viewer';

/** A status line over the list: starting, loading, loaded or the error. */
class StatusLine extends Widget {
  constructor() {
    super({ node: document.createElement('div') });
    this.addClass('jp-NopdbLab-bundleStatus');
  }
  set(text: string, error = false): void {
    this.node.textContent = text;
    this.toggleClass('jp-mod-error', error);
  }
}

/** The viewer's content: status, capture list and details over the bundle's kernel. */
export class BundleViewer extends SplitPanel {
  constructor(
    app: JupyterFrontEnd,
    context: DocumentRegistry.Context,
    heatmaps: IHeatmapOpener
  ) {
    super({ orientation: 'horizontal' });
    this.addClass('jp-NopdbLab-bundleViewer');
    const path = context.path;
    this._session = new SessionContext({
      sessionManager: app.serviceManager.sessions,
      specsManager: app.serviceManager.kernelspecs,
      path,
      type: 'nopdb-bundle',
      name: PathExt.basename(path),
      kernelPreference: { name: 'python3', shouldStart: true, canStart: true }
    });
    this._bridge = new KernelBridge(this._session, {
      installCommand: () => 'pip install nopdb-lab'
    });
    this.model.follow(this._bridge, path);
    const commands = this._commands(app, heatmaps);
    const status = new StatusLine();
    const list = new CaptureListView(this.model);
    this._status = status;
    const box = new SplitPanel({ orientation: 'vertical' });
    box.addWidget(status);
    box.addWidget(list);
    box.setRelativeSizes([0.06, 0.94]);
    this.addWidget(box);
    this.addWidget(new CaptureDetailsView(this.model, commands));
    this.setRelativeSizes([0.4, 0.6]);
    status.set(`Starting a Python kernel for ${PathExt.basename(path)}…`);
    this._bridge.stateChanged.connect((_, state) => {
      if (state.status === 'ready' && !this._loaded) {
        this._loaded = true;
        void this._load(path);
      } else if (state.status !== 'ready' && state.status !== 'connecting') {
        if (state.status !== 'no-kernel') {
          status.set(state.message, true);
        }
        this._loaded = false;
      }
    });
    void this._session.initialize();
  }

  readonly model = new BrowserModel();

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._bridge.dispose();
    void this._session.shutdown().finally(() => this._session.dispose());
    super.dispose();
  }

  private async _load(path: string): Promise<void> {
    const client = this._bridge.client;
    if (!client) {
      return;
    }
    this._status.set(`Loading ${PathExt.basename(path)}…`);
    try {
      const response = await client.request('bundle_open', {
        path,
        notebook_dir: PathExt.dirname(path)
      });
      const n = response.result.captures.length;
      this._status.set(
        `${n} capture${n === 1 ? '' : 's'} from ${response.result.bundle} (no code was run)`
      );
      if (n) {
        this.model.select(response.result.captures[0].id);
      }
    } catch (error) {
      this._status.set(
        `Cannot open ${path}: ${(error as Error).message}`,
        true
      );
    }
  }

  /** The capture views' commands, acting on this viewer's kernel. */
  private _commands(
    app: JupyterFrontEnd,
    heatmaps: IHeatmapOpener
  ): CommandRegistry {
    const commands = new CommandRegistry();
    commands.addCommand(CommandIDs.openHeatmap, {
      execute: args =>
        heatmaps.open({
          bridge: this._bridge,
          captureId: args.captureId as number,
          path: args.path as PathStep[],
          expression: args.expression as string,
          shape: args.shape as number[],
          signed: Boolean(args.signed)
        })
    });
    commands.addCommand(CommandIDs.stackAcross, {
      execute: async args => {
        try {
          await this.model.stackAcross(
            args.captureId as number,
            args.path as PathStep[]
          );
        } catch (error) {
          Notification.error(`Cannot stack: ${(error as Error).message}`);
        }
      }
    });
    commands.addCommand(CommandIDs.deleteCapture, {
      execute: async args => {
        try {
          await this.model.deleteCapture(args.captureId as number);
        } catch (error) {
          Notification.error(`Cannot delete: ${(error as Error).message}`);
        }
      }
    });
    let pending: { id: number; path: PathStep[]; expression: string } | null =
      null;
    commands.addCommand('nopdb-lab:compare', {
      execute: async args => {
        const side = {
          id: args.captureId as number,
          path: (args.path as PathStep[]) ?? [],
          expression: (args.expression as string) ?? `#${args.captureId}`
        };
        if (!pending || pending.id === side.id) {
          pending = side;
          Notification.info(
            `A = ${side.expression}. Now choose "Compare with…" on B (same shape).`,
            { autoClose: 8000 }
          );
          return;
        }
        const a = pending;
        pending = null;
        try {
          const client = this._bridge.client;
          if (!client) {
            throw new Error('the kernel is not connected');
          }
          const response = await client.request('compare', {
            a: { id: a.id, path: a.path },
            b: { id: side.id, path: side.path }
          });
          const id = response.result.id;
          this.model.select(id);
          const detail = await this.model.detail(id);
          const diff = detail.locals?.diff;
          heatmaps.open({
            bridge: this._bridge,
            captureId: id,
            path: ['locals', 'diff'],
            expression:
              diff?.expression ?? `nopdb_lab.store[${id}].locals['diff']`,
            shape: diff?.shape ?? [],
            signed: true
          });
        } catch (error) {
          Notification.error(`Cannot compare: ${(error as Error).message}`);
        }
      }
    });
    // everything else (copy, insert cell, open source) is the application's
    for (const id of [
      CommandIDs.copyExpression,
      CommandIDs.insertCell,
      CommandIDs.openSource
    ]) {
      commands.addCommand(id, {
        execute: args => app.commands.execute(id, args)
      });
    }
    return commands;
  }

  private readonly _session: SessionContext;
  private readonly _bridge: KernelBridge;
  private readonly _status: StatusLine;
  private _loaded = false;
}

/** The model name of bundles: the viewer reads them in the kernel, never in the page. */
const NO_CONTENT_MODEL = 'nopdb-bundle-no-content';

/**
 * A document model that is never filled: with `fileFormat` null, JupyterLab's document
 * context asks the contents API for the file's metadata only (`content: false`). A
 * bundle can be gigabytes, and the viewer's kernel opens it lazily from disk; loading it
 * as base64 into the browser would download all of it for nothing.
 */
class NoContentModelFactory extends TextModelFactory {
  get name(): string {
    return NO_CONTENT_MODEL;
  }

  get contentType(): Contents.ContentType {
    return 'file';
  }

  get fileFormat(): Contents.FileFormat {
    return null;
  }
}

class BundleViewerFactory extends ABCWidgetFactory<
  DocumentWidget<BundleViewer>
> {
  constructor(
    options: DocumentRegistry.IWidgetFactoryOptions,
    private readonly _app: JupyterFrontEnd,
    private readonly _heatmaps: IHeatmapOpener
  ) {
    super(options);
  }

  protected createNewWidget(
    context: DocumentRegistry.Context
  ): DocumentWidget<BundleViewer> {
    const content = new BundleViewer(this._app, context, this._heatmaps);
    const widget = new DocumentWidget({ content, context });
    widget.title.icon = bundleIcon;
    return widget;
  }
}

export const bundleViewerPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:bundle-viewer',
  description:
    'Opens .nopdb capture bundles in a kernel-backed capture viewer.',
  autoStart: true,
  requires: [IHeatmapOpener],
  activate: (app: JupyterFrontEnd, heatmaps: IHeatmapOpener) => {
    app.docRegistry.addFileType({
      name: 'nopdb-bundle',
      displayName: 'nopdb-lab capture bundle',
      extensions: ['.nopdb'],
      mimeTypes: ['application/x-nopdb-bundle'],
      fileFormat: null,
      contentType: 'file',
      icon: bundleIcon
    });
    app.docRegistry.addModelFactory(new NoContentModelFactory());
    app.docRegistry.addWidgetFactory(
      new BundleViewerFactory(
        {
          name: FACTORY,
          label: 'Capture Bundle Viewer',
          fileTypes: ['nopdb-bundle'],
          defaultFor: ['nopdb-bundle'],
          readOnly: true,
          modelName: NO_CONTENT_MODEL
        },
        app,
        heatmaps
      )
    );
  }
};
