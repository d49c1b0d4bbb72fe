/**
 * The MIME renderer of `application/vnd.nopdb-lab.view+json` (docs/display.md): what
 * `nopdb_lab.show(...)` and `display(flow)` put in a cell's output. It dispatches on each
 * item's `kind`: `"flow"` opens the gradient-flow view inline, talking to the kernel of the
 * notebook the output is in; `"heatmap"` shows the bundle's static PNG until an inline
 * heatmap view exists (the interactive viewer opens from the capture browser).
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IRenderMime, IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { createFlowWidget } from '../flow/plugin';
import { IKernelConnections } from '../tokens';

export const VIEW_MIME = 'application/vnd.nopdb-lab.view+json';

interface IViewItem {
  kind: string;
  token?: string;
  title?: string;
}

class ViewRenderer extends Widget implements IRenderMime.IRenderer {
  constructor(private readonly _connections: IKernelConnections) {
    super();
    this.addClass('jp-NopdbLab-viewOutput');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this._model = model;
    if (this.isAttached) {
      this._render();
    }
  }

  protected onAfterAttach(): void {
    this._render();
  }

  private _bridge() {
    for (const [panel, bridge] of this._connections.entries()) {
      if (panel.node.contains(this.node)) {
        return bridge;
      }
    }
    return this._connections.current;
  }

  private _render(): void {
    const model = this._model;
    if (!model || this._rendered) {
      return;
    }
    this._rendered = true;
    const data = model.data[VIEW_MIME] as {
      items?: IViewItem[];
      notes?: string[];
    };
    const png = model.data['image/png'] as string | undefined;
    let picture = false;
    for (const item of data?.items ?? []) {
      if (item.kind === 'flow' && item.token) {
        const bridge = this._bridge();
        if (!bridge) {
          this._note(
            `${item.title ?? 'flow'}: no kernel connection for this output`
          );
          continue;
        }
        const view = createFlowWidget(bridge, { display: item.token });
        Widget.attach(view, this.node);
        this._children.push(view);
      } else if (!picture && png) {
        picture = true; // one PNG holds every heatmap item
        const img = document.createElement('img');
        img.src = `data:image/png;base64,${png}`;
        img.alt = item.title ?? 'nopdb-lab view';
        this.node.appendChild(img);
      } else if (!png) {
        this._note(
          `${item.title ?? item.kind}: this view kind has no picture here`
        );
      }
    }
    for (const note of data?.notes ?? []) {
      this._note(note);
    }
  }

  private _note(text: string): void {
    const div = document.createElement('div');
    div.className = 'jp-NopdbLab-viewNote';
    div.textContent = text;
    this.node.appendChild(div);
  }

  dispose(): void {
    this._children.forEach(c => c.dispose());
    super.dispose();
  }

  private _model: IRenderMime.IMimeModel | null = null;
  private _rendered = false;
  private _children: Widget[] = [];
}

export const renderPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:render',
  description:
    'Renders nopdb-lab views (show(), display(flow)) in cell outputs.',
  autoStart: true,
  requires: [IRenderMimeRegistry, IKernelConnections],
  activate: (
    app: JupyterFrontEnd,
    registry: IRenderMimeRegistry,
    connections: IKernelConnections
  ) => {
    registry.addFactory(
      {
        safe: true,
        mimeTypes: [VIEW_MIME],
        defaultRank: 50,
        createRenderer: () => new ViewRenderer(connections)
      },
      50
    );
  }
};
