/**
 * The MIME renderer of `application/vnd.nopdb-lab.view+json` (docs/display.md): what
 * `nopdb_lab.show(...)` and `display(flow)` put in a cell's output. It dispatches on each
 * item's `kind`: `"flow"` opens the gradient-flow view inline, talking to the kernel of the
 * notebook the output is in; `"heatmap"` items open the interactive heatmap viewer inline
 * (slicing the value in that kernel) once the notebook's connection is ready and the
 * record is still the one the output was made from; until then, and for good when it is
 * gone (a restarted kernel, an evicted record) or nopdb-lab is not connected, the
 * bundle's static PNG shows, with a line saying why.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IRenderMime, IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { createFlowWidget } from '../flow/plugin';
import { HeatmapWidget } from '../heatmap/HeatmapView';
import { ColormapName } from '../heatmap/colormap';
import { HeatmapModel } from '../heatmap/model';
import { KernelBridge } from '../kernel/bridge';
import { PathStep } from '../kernel/protocol';
import { IKernelConnections } from '../tokens';

export const VIEW_MIME = 'application/vnd.nopdb-lab.view+json';

interface IViewItem {
  kind: string;
  token?: string;
  title?: string;
}

/** A `"heatmap"` item (docs/display.md): where the value is and how it was drawn. */
interface IHeatmapItem extends IViewItem {
  id: number;
  record_kind: string;
  record_time: number | null;
  path: PathStep[];
  expression: string;
  shape: number[];
  signed: boolean;
  rows_dim: number;
  cols_dim: number;
  grid_dims: number[];
  index: Record<string, number>;
  row_labels: string[] | null;
  col_labels: string[] | null;
  cmap: string;
  reduce: 'max' | 'mean';
}

/** Why an item cannot be live in this kernel, or null when its record is the one. */
async function staleReason(
  bridge: KernelBridge,
  item: IHeatmapItem
): Promise<string | null> {
  const client = bridge.client;
  if (!client) {
    return 'nopdb-lab is not connected to this notebook’s kernel';
  }
  try {
    const { result } = await client.request('get', { id: item.id });
    const sameTime =
      item.record_time === null ||
      Math.abs((result.time ?? 0) - item.record_time) < 1e-3;
    if (result.kind !== item.record_kind || !sameTime) {
      return `#${item.id} in this kernel is another record (the kernel restarted)`;
    }
    return null;
  } catch (error) {
    return `#${item.id} is no longer in this kernel (${(error as Error).message})`;
  }
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
    const heatmaps: IHeatmapItem[] = [];
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
      } else if (item.kind === 'heatmap') {
        heatmaps.push(item as IHeatmapItem);
      } else if (!png) {
        this._note(
          `${item.title ?? item.kind}: this view kind has no picture here`
        );
      }
    }
    if (heatmaps.length) {
      // the picture at once (also what a saved notebook shows), the live viewer when
      // the notebook's kernel still holds the values
      this._static = document.createElement('div');
      if (png) {
        const img = document.createElement('img');
        img.src = `data:image/png;base64,${png}`;
        img.alt = heatmaps.map(h => h.title ?? 'heatmap').join(', ');
        this._static.appendChild(img);
      }
      this.node.appendChild(this._static);
      void this._goLive(heatmaps);
    }
    for (const note of data?.notes ?? []) {
      this._note(note);
    }
  }

  /** Replace the static picture by one inline viewer per item, once the kernel is ready. */
  private async _goLive(items: IHeatmapItem[]): Promise<void> {
    const bridge = this._bridge();
    if (!bridge) {
      this._staticNote('no notebook kernel for this output');
      return;
    }
    if (bridge.state.status !== 'ready') {
      const ready = () => {
        if (bridge.state.status === 'ready') {
          bridge.stateChanged.disconnect(ready);
          void this._goLive(items);
        }
      };
      bridge.stateChanged.connect(ready);
      this._disconnect = () => bridge.stateChanged.disconnect(ready);
      return;
    }
    const reasons = await Promise.all(items.map(i => staleReason(bridge, i)));
    const reason = reasons.find(r => r !== null);
    if (this.isDisposed) {
      return;
    }
    if (reason) {
      this._staticNote(
        `Static picture: ${reason}; run the cell again for the interactive view.`
      );
      return;
    }
    this._static?.remove();
    for (const item of items) {
      const heatmap = new HeatmapModel({
        bridge,
        captureId: item.id,
        path: item.path,
        expression: item.title
          ? `${item.title} (${item.expression})`
          : item.expression,
        shape: item.shape,
        signed: item.signed,
        axisLabels: {
          rows: item.row_labels ?? undefined,
          cols: item.col_labels ?? undefined
        }
      });
      heatmap.configure({
        rowsDim: item.rows_dim,
        colsDim: item.cols_dim,
        index: item.index,
        gridDims: item.grid_dims,
        colormap: item.cmap as ColormapName,
        reduce: item.reduce
      });
      const view = new HeatmapWidget(heatmap, { inline: true });
      Widget.attach(view, this.node);
      this._children.push(view);
    }
  }

  private _staticNote(text: string): void {
    const div = document.createElement('div');
    div.className = 'jp-NopdbLab-viewNote';
    div.textContent = text;
    this._static?.appendChild(div);
  }

  private _note(text: string): void {
    const div = document.createElement('div');
    div.className = 'jp-NopdbLab-viewNote';
    div.textContent = text;
    this.node.appendChild(div);
  }

  dispose(): void {
    this._disconnect?.();
    this._children.forEach(c => c.dispose());
    super.dispose();
  }

  private _model: IRenderMime.IMimeModel | null = null;
  private _static: HTMLDivElement | null = null;
  private _disconnect: (() => void) | null = null;
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
