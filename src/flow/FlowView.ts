/**
 * The gradient-flow view (vnittest's controls, drawn on canvas): a layer strip (‖g‖ per
 * layer), the controls (transition, node, log threshold, top-k, regions, offsets, node
 * kind, gradient/contribution), the Sankey of the selected transition (link width ∝ |F|,
 * red positive, blue negative, nodes at stable positions coloured by their gradient) and
 * four linked heatmaps (source layer with the selected node circled, target layer with the
 * connected nodes circled, input and target of the network). Clicking a heatmap cell or a
 * Sankey node selects it (a target node swaps the roles); dragging a box on the source or
 * target heatmap sets its region (applied in the kernel before the top-k). Threshold and
 * selection repaint from the links held, without a kernel round trip.
 */
import { Widget } from '@lumino/widgets';

import { lookupTable, normalise, paint } from '../heatmap/colormap';
import { Box, FlowKind, FlowModel, mapNode, NodeKind } from './model';

const TABLE = lookupTable('RdBu');
const HEAT_PX = 180;
/** Threshold slider: 0 is "no threshold", 1..STEPS span 10⁻⁴·max … max (log). */
const STEPS = 100;
const DECADES = 4;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, v);
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Rows and columns a node grid is drawn as (a 1-D grid is one row). */
export function gridShape(grid: number[]): [number, number] {
  if (grid.length === 0) {
    return [1, 1];
  }
  if (grid.length === 1) {
    return [1, grid[0]];
  }
  const rows = grid.slice(0, -1).reduce((a, b) => a * b, 1);
  return [rows, grid[grid.length - 1]];
}

/** The threshold a slider step stands for. */
export function thresholdAt(step: number, maxAbs: number): number {
  if (step <= 0 || maxAbs <= 0) {
    return 0;
  }
  return maxAbs * Math.pow(10, -DECADES + (DECADES * step) / STEPS);
}

interface IHeat {
  canvas: HTMLCanvasElement;
  title: HTMLElement;
  /** Which layer it draws. */
  layer: () => number;
  grads: () => Float32Array | null;
  /** The layer's values (its representation), for heatmaps that can show either. */
  values?: () => Float32Array | null;
  /** What the heatmap shows: the gradient or, where it can, the values. */
  shows: 'gradient' | 'value';
  circles: () => number[];
  /** Region role, for drags. */
  region: 'src' | 'dst' | null;
  click: (node: number) => void;
}

export class FlowWidget extends Widget {
  constructor(readonly model: FlowModel) {
    super();
    this.addClass('jp-NopdbLab-flow');
    this.node.tabIndex = 0;
    this._build();
    model.changed.connect(this._schedule, this);
  }

  /** Milliseconds the last full repaint took (the benchmark reads it). */
  get lastPaintMs(): number {
    return this._lastPaintMs;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.dispose();
    super.dispose();
  }

  /** Repaint now (tests and benchmarks call it through the DOM node). */
  repaint(): void {
    const t0 = performance.now();
    this._syncControls();
    this._drawStrip();
    this._drawSankey();
    for (const heat of this._heats) {
      this._drawHeat(heat);
    }
    this._lastPaintMs = performance.now() - t0;
    this.node.dataset.paintMs = this._lastPaintMs.toFixed(2);
    const links = this.model.links;
    requestAnimationFrame(() => {
      // the benchmark times user action → the frame after the canvases were painted
      this.node.dataset.paintedAt = String(performance.now());
      this.node.dataset.paintedLinks = String(links?.value.length ?? 0);
      this.node.dataset.paints = String(++this._paints);
    });
    this.node.dataset.links = String(this._shown);
    this.node.dataset.state = this.model.busy
      ? 'busy'
      : this.model.error
        ? 'error'
        : 'ready';
  }

  private _schedule(): void {
    this.repaint();
  }

  private _build(): void {
    const m = this.model;
    (this.node as any).nopdbFlow = this; // for Galata and the benchmark
    this._strip = el('canvas', {
      class: 'jp-NopdbLab-flowStrip',
      height: '36'
    });
    this._strip.title =
      '‖node gradient‖₂ per layer; click a layer to show its transition';
    this._strip.addEventListener('click', e => {
      const n = m.layers.length;
      if (n < 2) {
        return;
      }
      const i = Math.floor((e.offsetX / this._strip.clientWidth) * n);
      void m.setLayer(Math.max(0, Math.min(m.transitions - 1, i)));
    });

    const controls = el('div', { class: 'jp-NopdbLab-flowControls' });
    const label = (text: string, input: HTMLElement) => {
      const l = el('label', {}, text + ' ');
      l.appendChild(input);
      controls.appendChild(l);
      return input;
    };
    this._layerSelect = label(
      'Layer',
      el('select', { 'aria-label': 'Layer' })
    ) as HTMLSelectElement;
    this._layerSelect.addEventListener(
      'change',
      () => void m.setLayer(Number(this._layerSelect.value))
    );
    this._nodeSlider = label(
      'Node',
      el('input', {
        type: 'range',
        min: '-1',
        value: '-1',
        'aria-label': 'Node'
      })
    ) as HTMLInputElement;
    this._nodeText = el('span', { class: 'jp-NopdbLab-flowValue' });
    controls.appendChild(this._nodeText);
    this._nodeSlider.addEventListener('input', () => {
      const v = Number(this._nodeSlider.value);
      m.select(v < 0 ? null : { role: m.selection?.role ?? 'src', node: v });
    });
    this._thresholdSlider = label(
      'Threshold',
      el('input', {
        type: 'range',
        min: '0',
        max: String(STEPS),
        value: '0',
        'aria-label': 'Threshold'
      })
    ) as HTMLInputElement;
    this._thresholdText = el('span', { class: 'jp-NopdbLab-flowValue' });
    controls.appendChild(this._thresholdText);
    this._thresholdSlider.addEventListener('input', () =>
      m.setThreshold(
        thresholdAt(Number(this._thresholdSlider.value), m.maxAbs())
      )
    );
    this._topK = label(
      'Top-k',
      el('input', {
        type: 'number',
        min: '1',
        max: '200000',
        value: '2000',
        'aria-label': 'Top-k'
      })
    ) as HTMLInputElement;
    this._topK.addEventListener(
      'change',
      () => void m.setTopK(Number(this._topK.value))
    );
    this._nodesSelect = label(
      'Nodes',
      el('select', { 'aria-label': 'Nodes' })
    ) as HTMLSelectElement;
    for (const k of ['spatial', 'channel', 'token', 'feature', 'element']) {
      this._nodesSelect.appendChild(el('option', { value: k }, k));
    }
    this._nodesSelect.addEventListener(
      'change',
      () => void m.setNodes(this._nodesSelect.value as NodeKind)
    );
    this._kindSelect = label(
      'Flow',
      el('select', { 'aria-label': 'Flow kind' })
    ) as HTMLSelectElement;
    for (const k of ['gradient', 'contribution']) {
      this._kindSelect.appendChild(el('option', { value: k }, k));
    }
    this._kindSelect.addEventListener(
      'change',
      () => void m.setKind(this._kindSelect.value as FlowKind)
    );

    const regions = el('div', { class: 'jp-NopdbLab-flowControls' });
    const box = (role: string) => {
      const inputs = ['y min', 'y max', 'x min', 'x max'].map(name => {
        const input = el('input', {
          type: 'number',
          min: '0',
          class: 'jp-NopdbLab-flowBox',
          'aria-label': `${role} ${name}`,
          placeholder: name
        }) as HTMLInputElement;
        return input;
      });
      const l = el(
        'span',
        { class: 'jp-NopdbLab-flowRegion' },
        `${role} region `
      );
      inputs.forEach(i => l.appendChild(i));
      regions.appendChild(l);
      return inputs;
    };
    this._srcBox = box('Selected layer');
    this._dstBox = box('Output layer');
    const apply = el(
      'button',
      { class: 'jp-mod-styled jp-mod-accept' },
      'Apply regions'
    );
    apply.addEventListener(
      'click',
      () =>
        void m.setRegions(
          this._readBox(this._srcBox),
          this._readBox(this._dstBox)
        )
    );
    const reset = el('button', { class: 'jp-mod-styled' }, 'Reset');
    reset.addEventListener('click', () => void m.setRegions(null, null));
    regions.appendChild(apply);
    regions.appendChild(reset);
    const offs = el(
      'span',
      { class: 'jp-NopdbLab-flowRegion' },
      'Offsets (row, col) '
    );
    this._offsetInputs = ['row offset', 'col offset'].map(name => {
      const input = el('input', {
        type: 'number',
        class: 'jp-NopdbLab-flowBox',
        'aria-label': name
      }) as HTMLInputElement;
      input.title =
        'Where output node (0, 0) sits on the selected layer (derived from the convolutions; edit to override)';
      input.addEventListener('change', () => {
        const stride = m.offsets?.stride ?? [1, 1];
        m.setOffsets(
          stride,
          this._offsetInputs.map(i => Number(i.value) || 0)
        );
      });
      offs.appendChild(input);
      return input;
    });
    regions.appendChild(offs);

    this._status = el('div', { class: 'jp-NopdbLab-flowStatus' });
    this._stop = el('button', {
      class: 'jp-mod-styled jp-mod-warn jp-NopdbLab-flowStop',
      title: 'Interrupt the computation in the kernel'
    });
    this._stop.textContent = 'Stop';
    this._stop.addEventListener('click', () => this.model.stop());
    const body = el('div', { class: 'jp-NopdbLab-flowBody' });
    this._sankey = el('canvas', { class: 'jp-NopdbLab-flowSankey' });
    this._sankey.addEventListener('click', e => this._sankeyClick(e));
    body.appendChild(this._sankey);
    const heats = el('div', { class: 'jp-NopdbLab-flowHeats' });
    body.appendChild(heats);
    const heat = (
      name: string,
      layer: () => number,
      grads: () => Float32Array | null,
      circles: () => number[],
      region: 'src' | 'dst' | null,
      click: (node: number) => void,
      values?: () => Float32Array | null
    ) => {
      const box = el('div', {
        class: 'jp-NopdbLab-flowHeat',
        'data-heat': name
      });
      const title = el('div', { class: 'jp-NopdbLab-flowHeatTitle' });
      const canvas = el('canvas', {
        width: String(HEAT_PX),
        height: String(HEAT_PX)
      });
      box.appendChild(title);
      const h: IHeat = {
        canvas,
        title,
        layer,
        grads,
        values,
        shows: 'gradient',
        circles,
        region,
        click
      };
      if (values) {
        // vnittest's input and target representations beside their gradients
        const show = el('select', {
          class: 'jp-NopdbLab-flowShows',
          'aria-label': `${name === 'input' ? 'Input' : 'Target'} shows`
        }) as HTMLSelectElement;
        for (const k of ['gradient', 'value']) {
          show.appendChild(el('option', { value: k }, k));
        }
        show.addEventListener('change', () => {
          h.shows = show.value as IHeat['shows'];
          this._drawHeat(h);
        });
        box.appendChild(show);
      }
      box.appendChild(canvas);
      heats.appendChild(box);
      this._wireHeat(h);
      this._heats.push(h);
    };
    // the selected node, circled where it reads the input (or lands on the target)
    const selectedOn = (layer: number): number[] => {
      const sel = m.selection;
      if (!sel) {
        return [];
      }
      const from = sel.role === 'src' ? m.layer : m.layer + 1;
      if (from === layer) {
        return [sel.node];
      }
      const mapped = mapNode(sel.node, m.layers[from], m.layers[layer]);
      return mapped === null ? [] : [mapped];
    };
    const linkEnds = (role: 'src' | 'dst') => () => {
      const links = m.links;
      if (!links) {
        return [];
      }
      const ends = role === 'src' ? links.src : links.dst;
      return Array.from(new Set(m.visible().map(i => ends[i])));
    };
    heat(
      'selected',
      () => m.layer,
      () => m.links?.srcGrads ?? m.nodeGrads[m.layer] ?? null,
      () =>
        m.selection?.role === 'src'
          ? [m.selection.node]
          : m.selection
            ? linkEnds('src')()
            : [],
      'src',
      node => m.select({ role: 'src', node })
    );
    heat(
      'output',
      () => m.layer + 1,
      () => m.links?.dstGrads ?? m.nodeGrads[m.layer + 1] ?? null,
      () =>
        m.selection?.role === 'dst'
          ? [m.selection.node]
          : m.selection
            ? linkEnds('dst')()
            : [],
      'dst',
      node => m.select({ role: 'dst', node })
    );
    heat(
      'input',
      () => 0,
      () => m.nodeGrads[0] ?? null,
      () => selectedOn(0),
      null,
      node => {
        // through the offsets: the selected layer's node that reads this input pixel
        const mapped = mapNode(node, m.layers[0], m.layers[m.layer]);
        if (mapped !== null) {
          m.select({ role: 'src', node: mapped });
        } else {
          void m.setLayer(0).then(() => m.select({ role: 'src', node }));
        }
      },
      () => m.nodeValues[0] ?? null
    );
    heat(
      'target',
      () => m.layers.length - 1,
      () => m.nodeGrads[m.layers.length - 1] ?? null,
      () => selectedOn(m.layers.length - 1),
      null,
      node => {
        // through the offsets: the output layer's node at this target node's place
        const mapped = mapNode(
          node,
          m.layers[m.layers.length - 1],
          m.layers[m.layer + 1]
        );
        if (mapped !== null) {
          m.select({ role: 'dst', node: mapped });
        } else {
          void m
            .setLayer(m.transitions - 1)
            .then(() => m.select({ role: 'dst', node }));
        }
      },
      () => m.nodeValues[m.layers.length - 1] ?? null
    );

    this.node.appendChild(this._strip);
    this.node.appendChild(controls);
    this.node.appendChild(regions);
    this.node.appendChild(this._status);
    this.node.appendChild(this._stop);
    this.node.appendChild(body);
  }

  private _readBox(inputs: HTMLInputElement[]): Box {
    if (inputs.every(i => i.value === '')) {
      return null;
    }
    const grid = this.model.grids()[inputs === this._srcBox ? 0 : 1];
    const [rows, cols] = gridShape(grid);
    const vals = inputs.map((i, k) =>
      i.value === '' ? (k % 2 === 0 ? 0 : k < 2 ? rows : cols) : Number(i.value)
    );
    return grid.length === 1 ? [vals[2], vals[3]] : vals;
  }

  private _writeBox(
    inputs: HTMLInputElement[],
    box: Box,
    grid: number[]
  ): void {
    if (!box) {
      inputs.forEach(i => (i.value = ''));
      return;
    }
    const full = grid.length === 1 ? [0, 1, box[0], box[1]] : box;
    inputs.forEach((i, k) => (i.value = String(full[k])));
  }

  private _syncControls(): void {
    const m = this.model;
    const sel = this._layerSelect;
    if (sel.options.length !== m.transitions) {
      sel.replaceChildren(
        ...Array.from({ length: m.transitions }, (_, l) =>
          el(
            'option',
            { value: String(l) },
            `${l}: ${m.layers[l].name} → ${m.layers[l + 1].name}`
          )
        )
      );
    }
    sel.value = String(m.layer);
    const grids = m.grids();
    const role = m.selection?.role ?? 'src';
    const count = m.layers[m.layer + (role === 'dst' ? 1 : 0)]?.nodes ?? 0;
    this._nodeSlider.max = String(Math.max(0, count - 1));
    this._nodeSlider.value = String(m.selection ? m.selection.node : -1);
    this._nodeText.textContent = m.selection
      ? `${m.selection.role === 'src' ? 'selected' : 'output'} layer node ${m.selection.node} (${this._coords(m.selection.node, grids[role === 'src' ? 0 : 1])})`
      : 'all nodes';
    this._thresholdText.textContent =
      m.threshold > 0 ? `|F| ≥ ${m.threshold.toPrecision(3)}` : 'none';
    if (document.activeElement !== this._topK) {
      this._topK.value = String(m.topK);
    }
    this._nodesSelect.value = m.nodes;
    this._nodesSelect.disabled = 'display' in m.source;
    this._kindSelect.value = m.kind;
    if (!this.node.contains(document.activeElement)) {
      this._writeBox(this._srcBox, m.srcRegion, grids[0]);
      this._writeBox(this._dstBox, m.dstRegion, grids[1]);
    }
    if (
      m.offsets &&
      !this._offsetInputs.includes(document.activeElement as HTMLInputElement)
    ) {
      const o = m.offsets.offset;
      this._offsetInputs[0].value = String(o.length > 1 ? o[o.length - 2] : 0);
      this._offsetInputs[1].value = String(o[o.length - 1] ?? 0);
    }
    const links = m.links;
    this._status.classList.toggle('jp-mod-error', Boolean(m.error));
    this._stop.hidden = !m.busy;
    this._status.textContent = m.error
      ? m.error
      : m.busy
        ? 'Computing the flow in the kernel…'
        : links
          ? `${m.visible().length} of ${links.value.length} links shown (top ${m.topK} by |F|` +
            `${links.totalLinks !== null ? ` of ${links.totalLinks} nonzero` : ''}), ${m.kind}` +
            `${m.srcRegion || m.dstRegion ? ', regions applied' : ''}`
          : m.transitions === 0
            ? 'This flow has a single layer: no transition to show.'
            : '';
  }

  private _coords(node: number, grid: number[]): string {
    const out: number[] = [];
    let rest = node;
    for (let d = grid.length - 1; d >= 0; d--) {
      out.unshift(rest % grid[d]);
      rest = Math.floor(rest / grid[d]);
    }
    return out.join(', ');
  }

  private _fit(
    canvas: HTMLCanvasElement,
    width: number,
    height: number
  ): CanvasRenderingContext2D {
    const ratio = window.devicePixelRatio || 1;
    if (
      canvas.width !== Math.round(width * ratio) ||
      canvas.height !== Math.round(height * ratio)
    ) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const ctx = canvas.getContext('2d')!;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return ctx;
  }

  private _drawStrip(): void {
    const m = this.model;
    const width =
      Math.max(200, this._strip.parentElement?.clientWidth ?? 400) - 16;
    const ctx = this._fit(this._strip, width, 36);
    const n = m.layers.length;
    if (n === 0) {
      return;
    }
    const norms = m.layers.map(l => l.grad_norm ?? 0);
    const top = Math.max(...norms, 1e-30);
    const w = width / n;
    ctx.font = '10px sans-serif';
    m.layers.forEach((layer, i) => {
      const h = (22 * norms[i]) / top;
      const current = i === m.layer || i === m.layer + 1;
      ctx.fillStyle = current ? '#d6604d' : '#92c5de';
      ctx.fillRect(i * w + 2, 24 - h, w - 4, h);
      ctx.fillStyle = this._inkColor();
      ctx.fillText(layer.name, i * w + 2, 34, w - 4);
    });
  }

  private _inkColor(): string {
    if (!this._ink) {
      this._ink = getComputedStyle(this.node).color || '#222';
    }
    return this._ink;
  }

  private _nodeY(i: number, n: number, top: number, height: number): number {
    return top + ((i + 0.5) * height) / Math.max(1, n);
  }

  private _drawSankey(): void {
    const m = this.model;
    // beside the heatmaps when there is room, above them (full width) in a narrow split
    const room = (this._sankey.parentElement?.clientWidth ?? 800) - 16;
    const beside = room - 2 * (HEAT_PX + 24);
    const width = beside >= 360 ? beside : Math.max(240, room);
    const height = 2 * HEAT_PX + 48;
    const ctx = this._fit(this._sankey, width, height);
    this._shown = 0;
    const links = m.links;
    const src = m.layers[m.layer];
    const dst = m.layers[m.layer + 1];
    if (!links || !src || !dst) {
      return;
    }
    const top = 16;
    const inner = height - 24;
    const x0 = 70;
    const x1 = width - 70;
    ctx.font = '11px sans-serif';
    ctx.fillStyle = this._inkColor();
    ctx.fillText(src.name, 4, 11, x0 - 8);
    ctx.textAlign = 'right';
    ctx.fillText(dst.name, width - 4, 11, x0 - 8);
    ctx.textAlign = 'left';
    const visible = m.visible();
    this._shown = visible.length;
    let maxAbs = 0;
    for (const i of visible) {
      maxAbs = Math.max(maxAbs, Math.abs(links.value[i]));
    }
    const maxWidth = Math.max(
      2,
      Math.min(14, inner / Math.max(8, Math.sqrt(src.nodes)))
    );
    ctx.globalAlpha = 0.55;
    // one path per (sign, width step): a few strokes instead of one per link
    const paths = new Map<number, Path2D>();
    const mid = (x0 + x1) / 2;
    for (let k = visible.length - 1; k >= 0; k--) {
      const i = visible[k];
      const v = links.value[i];
      const ys = this._nodeY(links.src[i], src.nodes, top, inner);
      const yd = this._nodeY(links.dst[i], dst.nodes, top, inner);
      const step = Math.max(
        1,
        Math.round((4 * maxWidth * Math.abs(v)) / (maxAbs || 1))
      );
      const key = v >= 0 ? step : -step;
      let path = paths.get(key);
      if (!path) {
        path = new Path2D();
        paths.set(key, path);
      }
      path.moveTo(x0, ys);
      path.bezierCurveTo(mid, ys, mid, yd, x1, yd);
    }
    for (const key of [...paths.keys()].sort(
      (a, b) => Math.abs(a) - Math.abs(b)
    )) {
      ctx.strokeStyle = key >= 0 ? '#b2182b' : '#2166ac';
      ctx.lineWidth = Math.max(0.3, Math.abs(key) / 4);
      ctx.stroke(paths.get(key)!);
    }
    ctx.globalAlpha = 1;
    const column = (
      x: number,
      grads: Float32Array | null,
      n: number,
      role: 'src' | 'dst'
    ) => {
      const h = Math.max(1, inner / Math.max(1, n) - 1);
      if (grads && grads.length === n) {
        let image = this._columns.get(grads);
        if (!image) {
          const { positions } = normalise(grads, n, 1, {
            scale: 'linear',
            normalisation: 'global',
            diverging: true
          });
          image = document.createElement('canvas');
          image.width = 1;
          image.height = n;
          image
            .getContext('2d')!
            .putImageData(new ImageData(paint(positions, TABLE), 1, n), 0, 0);
          this._columns.set(grads, image);
        }
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(image, x - 6, top, 12, inner);
      } else {
        ctx.fillStyle = 'rgb(128,128,128)';
        ctx.fillRect(x - 6, top, 12, inner);
      }
      if (m.selection?.role === role) {
        const y = this._nodeY(m.selection.node, n, top, inner);
        ctx.strokeStyle = '#000';
        ctx.lineWidth = 2;
        ctx.strokeRect(x - 8, y - h / 2 - 2, 16, h + 4);
      }
    };
    column(x0, links.srcGrads, src.nodes, 'src');
    column(x1, links.dstGrads, dst.nodes, 'dst');
  }

  private _sankeyClick(e: MouseEvent): void {
    const m = this.model;
    const src = m.layers[m.layer];
    const dst = m.layers[m.layer + 1];
    if (!src || !dst) {
      return;
    }
    const width = this._sankey.clientWidth;
    const inner = this._sankey.clientHeight - 24;
    const pick = (n: number) =>
      Math.max(0, Math.min(n - 1, Math.floor(((e.offsetY - 16) / inner) * n)));
    if (e.offsetX < 90) {
      m.select({ role: 'src', node: pick(src.nodes) });
    } else if (e.offsetX > width - 90) {
      m.select({ role: 'dst', node: pick(dst.nodes) });
    } else {
      m.select(null);
    }
  }

  private _drawHeat(h: IHeat): void {
    const m = this.model;
    const layer = m.layers[h.layer()];
    if (!layer) {
      h.title.textContent = '';
      return;
    }
    const names: Record<string, string> = {
      selected: 'Selected layer',
      output: 'Output layer',
      input: 'Input',
      target: 'Target'
    };
    const name = names[h.canvas.parentElement?.dataset.heat ?? ''] ?? '';
    const showsValue = h.shows === 'value' && h.values !== undefined;
    const grads = showsValue ? h.values!() : h.grads();
    h.canvas.dataset.shows = showsValue ? 'value' : 'gradient';
    h.title.textContent =
      `${name}${showsValue ? ' values' : ''}: ${layer.name} (${layer.grid.join('×')} ${layer.node_kind})` +
      (grads
        ? ''
        : showsValue
          ? ' — no values from this kernel'
          : ' — no gradient: ' + (layer.grads_missing ?? ''));
    const [rows, cols] = gridShape(layer.grid);
    const cell = Math.max(1, Math.floor(HEAT_PX / Math.max(rows, cols)));
    const width = cols * cell;
    const height = rows * cell;
    const ctx = this._fit(h.canvas, Math.max(width, 1), Math.max(height, 1));
    this._geom.set(h, { rows, cols, cell });
    if (!grads || grads.length !== rows * cols) {
      return;
    }
    let off = this._images.get(grads);
    if (!off) {
      // painted once per gradient array; a threshold or selection only redraws circles
      const { positions } = normalise(grads, rows, cols, {
        scale: 'linear',
        normalisation: 'global',
        diverging: true
      });
      off = document.createElement('canvas');
      off.width = cols;
      off.height = rows;
      off
        .getContext('2d')!
        .putImageData(new ImageData(paint(positions, TABLE), cols, rows), 0, 0);
      this._images.set(grads, off);
    }
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, 0, 0, width, height);
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1.5;
    for (const node of h.circles().slice(0, 512)) {
      const r = Math.floor(node / cols);
      const c = node % cols;
      ctx.beginPath();
      ctx.arc(
        (c + 0.5) * cell,
        (r + 0.5) * cell,
        Math.max(2, cell * 0.4),
        0,
        2 * Math.PI
      );
      ctx.stroke();
    }
    // the region box, and (on the selected layer) where the selected output node reads
    const region =
      h.region === 'src'
        ? m.srcRegion
        : h.region === 'dst'
          ? m.dstRegion
          : null;
    if (region) {
      const b = layer.grid.length === 1 ? [0, 1, region[0], region[1]] : region;
      ctx.strokeStyle = '#ff7f00';
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(
        b[2] * cell,
        b[0] * cell,
        (b[3] - b[2]) * cell,
        (b[1] - b[0]) * cell
      );
      ctx.setLineDash([]);
    }
    if (
      h.region === 'src' &&
      m.selection?.role === 'dst' &&
      m.offsets &&
      layer.grid.length >= 2
    ) {
      const dstGrid = m.grids()[1];
      const [, dcols] = gridShape(dstGrid);
      const y = Math.floor(m.selection.node / dcols);
      const x = m.selection.node % dcols;
      const s = m.offsets.stride;
      const o = m.offsets.offset;
      const ext = m.links?.targetOnSource?.extent ?? [1, 1];
      ctx.strokeStyle = '#ff7f00';
      ctx.strokeRect(
        (x * s[s.length - 1] + o[o.length - 1]) * cell,
        (y * s[s.length - 2] + o[o.length - 2]) * cell,
        ext[ext.length - 1] * cell,
        ext[ext.length - 2] * cell
      );
    }
  }

  private _wireHeat(h: IHeat): void {
    let start: [number, number] | null = null;
    const cellAt = (e: MouseEvent): [number, number] | null => {
      const g = this._geom.get(h);
      if (!g) {
        return null;
      }
      const r = Math.floor(e.offsetY / g.cell);
      const c = Math.floor(e.offsetX / g.cell);
      if (r < 0 || c < 0 || r >= g.rows || c >= g.cols) {
        return null;
      }
      return [r, c];
    };
    h.canvas.addEventListener('mousedown', e => {
      start = cellAt(e);
    });
    h.canvas.addEventListener('mouseup', e => {
      const end = cellAt(e);
      const g = this._geom.get(h);
      if (!start || !end || !g) {
        start = null;
        return;
      }
      if (start[0] === end[0] && start[1] === end[1]) {
        h.click(end[0] * g.cols + end[1]);
      } else if (h.region) {
        // zooming a heatmap writes the box back into the region inputs and applies it
        const box = [
          Math.min(start[0], end[0]),
          Math.max(start[0], end[0]) + 1,
          Math.min(start[1], end[1]),
          Math.max(start[1], end[1]) + 1
        ];
        const layerGrid = this.model.layers[h.layer()].grid;
        const value = layerGrid.length === 1 ? [box[2], box[3]] : box;
        const m = this.model;
        void m.setRegions(
          h.region === 'src' ? value : m.srcRegion,
          h.region === 'dst' ? value : m.dstRegion
        );
      }
      start = null;
    });
  }

  private _strip!: HTMLCanvasElement;
  private _layerSelect!: HTMLSelectElement;
  private _nodeSlider!: HTMLInputElement;
  private _nodeText!: HTMLElement;
  private _thresholdSlider!: HTMLInputElement;
  private _thresholdText!: HTMLElement;
  private _topK!: HTMLInputElement;
  private _nodesSelect!: HTMLSelectElement;
  private _kindSelect!: HTMLSelectElement;
  private _srcBox: HTMLInputElement[] = [];
  private _dstBox: HTMLInputElement[] = [];
  private _offsetInputs: HTMLInputElement[] = [];
  private _status!: HTMLElement;
  private _stop!: HTMLButtonElement;
  private _sankey!: HTMLCanvasElement;
  private _heats: IHeat[] = [];
  private _geom = new Map<
    IHeat,
    { rows: number; cols: number; cell: number }
  >();
  private _shown = 0;
  private _lastPaintMs = 0;
  private _paints = 0;
  private _images = new WeakMap<Float32Array, HTMLCanvasElement>();
  private _ink = '';
  private _columns = new WeakMap<Float32Array, HTMLCanvasElement>();
}
