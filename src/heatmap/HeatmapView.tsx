/**
 * The heatmap viewer: any 2-D slice of a captured tensor or array, drawn on a canvas.
 * Pick the row and column dimensions; every other dimension is fixed by a slider,
 * averaged (e.g. the mean over heads), or spread into a grid of small maps (every head).
 * Colormap, linear/log scale, whole-map or per-row normalisation, colour bar, exact hover
 * value, zoom (wheel) and pan (drag), PNG export. The kernel slices and pools large maps;
 * the payload is binary.
 */
import * as React from 'react';
import { ReactWidget } from '@jupyterlab/ui-components';

import { formatNumber } from '../ui/format';
import { SHOW_AFTER_MS } from '../captures/longWork';
import { ExpressionInput } from '../ui/ExpressionInput';
import { useSignal } from '../ui/useSignal';
import {
  ColormapName,
  COLORMAPS,
  Normalisation,
  paint,
  Scale
} from './colormap';
import { HeatmapModel } from './model';
import { PatchOverlay } from './PatchOverlay';
import { DimMode } from './request';

/** A labelled select; options are `[value, text, disabled?]`. */
function Choice(props: {
  label: string;
  aria: string;
  value: string;
  options: [string, string, boolean?][];
  onChange: (value: string) => void;
}): React.ReactElement {
  return (
    <label>
      {props.label}{' '}
      <select
        className="jp-mod-styled"
        aria-label={props.aria}
        value={props.value}
        onChange={e => props.onChange(e.target.value)}
      >
        {props.options.map(([value, text, disabled]) => (
          <option key={value} value={value} disabled={disabled}>
            {text}
          </option>
        ))}
      </select>
    </label>
  );
}

const VIEW_PX = 560;
const GRID_PX = 150;

/** One map painted on a canvas (pixels are cells; CSS scales it). */
function MapCanvas(props: {
  pixels: Uint8ClampedArray;
  rows: number;
  cols: number;
  style: React.CSSProperties;
  label?: string;
  /** How many cells the Δ view marks (a data attribute for tests). */
  marks?: number;
  /** The cell under the mouse, and where in the map it is (fractions of its size). */
  onHover: (r: number, c: number, fy: number, fx: number) => void;
  onLeave: () => void;
  onMouseDown?: (event: React.MouseEvent) => void;
  onMouseUp?: () => void;
  onDrag?: (event: React.MouseEvent) => boolean;
}): React.ReactElement {
  const ref = React.useRef<HTMLCanvasElement>(null);
  React.useEffect(() => {
    const canvas = ref.current;
    if (!canvas) {
      return;
    }
    canvas.width = props.cols;
    canvas.height = props.rows;
    canvas
      .getContext('2d')!
      .putImageData(new ImageData(props.pixels, props.cols, props.rows), 0, 0);
  }, [props.pixels, props.rows, props.cols]);
  return (
    <canvas
      ref={ref}
      className="jp-NopdbLab-heatmapCanvas"
      aria-label={props.label}
      data-marks={props.marks || undefined}
      style={props.style}
      onMouseMove={event => {
        if (props.onDrag?.(event)) {
          return;
        }
        const box = event.currentTarget.getBoundingClientRect();
        const fx = (event.clientX - box.left) / box.width;
        const fy = (event.clientY - box.top) / box.height;
        const c = Math.floor(fx * props.cols);
        const r = Math.floor(fy * props.rows);
        if (r >= 0 && r < props.rows && c >= 0 && c < props.cols) {
          props.onHover(r, c, fy, fx);
        }
      }}
      onMouseLeave={props.onLeave}
      onMouseDown={props.onMouseDown}
      onMouseUp={props.onMouseUp}
    />
  );
}

/** The cell of a map under the mouse, or null outside it. */
function cellAt(
  event: React.MouseEvent,
  rows: number,
  cols: number
): { r: number; c: number } | null {
  const box = event.currentTarget.getBoundingClientRect();
  const c = Math.floor(((event.clientX - box.left) / box.width) * cols);
  const r = Math.floor(((event.clientY - box.top) / box.height) * rows);
  return r >= 0 && r < rows && c >= 0 && c < cols ? { r, c } : null;
}

/** The Δ view: marked cells in magenta, the others faded, so what changed stands out. */
function withMarks(
  pixels: Uint8ClampedArray,
  marks: ReadonlySet<number>
): Uint8ClampedArray {
  const out = new Uint8ClampedArray(pixels);
  for (let i = 0; i < out.length / 4; i++) {
    if (marks.has(i)) {
      out.set([255, 0, 255, 255], i * 4);
    } else {
      out[i * 4 + 3] = 70;
    }
  }
  return out;
}

const MAX_AXIS_LABELS = 64;

/** Token names beside (rows) and above (columns) a map, when few enough to read. */
function AxisLabels(props: {
  rows: string[] | null;
  cols: string[] | null;
  children: React.ReactNode;
}): React.ReactElement {
  const rows =
    props.rows && props.rows.length <= MAX_AXIS_LABELS ? props.rows : null;
  const cols =
    props.cols && props.cols.length <= MAX_AXIS_LABELS ? props.cols : null;
  if (!rows && !cols) {
    return <>{props.children}</>;
  }
  return (
    <div className="jp-NopdbLab-axes">
      <div />
      <div className="jp-NopdbLab-axisCols" aria-label="Column labels">
        {(cols ?? []).map((text, i) => (
          <span key={i} title={text}>
            {text}
          </span>
        ))}
      </div>
      <div className="jp-NopdbLab-axisRows" aria-label="Row labels">
        {(rows ?? []).map((text, i) => (
          <span key={i} title={text}>
            {text}
          </span>
        ))}
      </div>
      <div>{props.children}</div>
    </div>
  );
}

/** Dimensions, colours, pooling, zoom reset and PNG export. */
function Controls({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.stateChanged);
  const shape = model.source.shape;
  const dims = shape.map((_, d) => d);
  const label = (dim: number) => `dim ${dim} (${shape[dim]})`;
  return (
    <div className="jp-NopdbLab-heatmapControls">
      <code className="jp-NopdbLab-heatmapExpression">
        {model.source.expression}
      </code>
      <Choice
        label="rows"
        aria="Rows dimension"
        value={String(model.rowsDim)}
        options={dims.map(d => [String(d), label(d), d === model.colsDim])}
        onChange={v => model.setRowsDim(Number(v))}
      />
      <Choice
        label="columns"
        aria="Columns dimension"
        value={String(model.colsDim)}
        options={dims.map(d => [String(d), label(d), d === model.rowsDim])}
        onChange={v => model.setColsDim(Number(v))}
      />
      <Choice
        label="colormap"
        aria="Colormap"
        value={model.colormap}
        options={Object.keys(COLORMAPS).map(name => [name, name])}
        onChange={v => model.setColormap(v as ColormapName)}
      />
      <Choice
        label="scale"
        aria="Scale"
        value={model.scale}
        options={[
          ['linear', 'linear'],
          ['log', 'log']
        ]}
        onChange={v => model.setScale(v as Scale)}
      />
      <Choice
        label="normalise"
        aria="Normalisation"
        value={model.normalisation}
        options={[
          ['global', 'whole map'],
          ['row', 'each row']
        ]}
        onChange={v => model.setNormalisation(v as Normalisation)}
      />
      <Choice
        label="pooling"
        aria="Pooling"
        value={model.reduce}
        options={[
          ['max', 'max'],
          ['mean', 'mean']
        ]}
        onChange={v => model.setReduce(v as 'max' | 'mean')}
      />
      <button className="jp-mod-styled" onClick={() => model.resetZoom()}>
        Reset zoom
      </button>
      <button
        className="jp-mod-styled jp-mod-accept"
        onClick={() => exportPng(model)}
      >
        Export PNG
      </button>
    </div>
  );
}

/** One control per other dimension: its mode, and its slider in `index` mode. */
function DimSliders({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.stateChanged);
  const shape = model.source.shape;
  return (
    <div className="jp-NopdbLab-heatmapSliders">
      {shape.map((size, dim) =>
        dim === model.rowsDim || dim === model.colsDim ? null : (
          <div key={dim} className="jp-NopdbLab-heatmapDim">
            <Choice
              label={`dim ${dim} (${size})`}
              aria={`Show dim ${dim}`}
              value={model.modes[dim]}
              options={[
                ['index', 'one index'],
                ['mean', 'mean'],
                ['grid', 'grid']
              ]}
              onChange={v => model.setMode(dim, v as DimMode)}
            />
            {model.modes[dim] === 'index' ? (
              <label>
                {model.index[dim]}
                <input
                  type="range"
                  aria-label={`Index of dim ${dim}`}
                  min={0}
                  max={size - 1}
                  value={model.index[dim]}
                  onChange={e => model.setIndex(dim, Number(e.target.value))}
                />
              </label>
            ) : null}
          </div>
        )
      )}
    </div>
  );
}

/** The labels and image-overlay expressions. */
function Expressions({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.stateChanged);
  const labelsError = model.labelsError ?? model.labelMismatch;
  return (
    <>
      <div className="jp-NopdbLab-heatmapLabels">
        <ExpressionInput
          prefix="labels"
          ariaLabel="Labels expression"
          placeholder="Python, e.g. tokenizer.convert_ids_to_tokens(ids[0])"
          button="Apply"
          onSubmit={value => void model.applyLabels(value)}
        />
        {labelsError ? (
          <span className="jp-NopdbLab-error">{labelsError}</span>
        ) : null}
      </div>
      <div className="jp-NopdbLab-heatmapLabels">
        <ExpressionInput
          prefix="image"
          ariaLabel="Image expression"
          placeholder="Python: the input image (tensor C×H×W, array or PIL)"
          button="Overlay"
          onSubmit={value => void model.applyImage(value)}
        />
        {model.image ? (
          <label>
            opacity
            <input
              type="range"
              aria-label="Overlay opacity"
              min={0}
              max={1}
              step={0.05}
              value={model.opacity}
              onChange={e => model.setOpacity(Number(e.target.value))}
            />
          </label>
        ) : null}
        {model.imageError ? (
          <span className="jp-NopdbLab-error">{model.imageError}</span>
        ) : null}
      </div>
    </>
  );
}

/** How long the slice has been computing, with Stop, once it takes a while. */
function Computing({
  model
}: {
  model: HeatmapModel;
}): React.ReactElement | null {
  useSignal(model.stateChanged);
  const [, tick] = React.useState(0);
  const loading = model.loading;
  React.useEffect(() => {
    if (!loading) {
      return;
    }
    const timer = setInterval(() => tick(n => n + 1), 500);
    return () => clearInterval(timer);
  }, [loading]);
  const elapsed = performance.now() - model.requestStartedAt;
  if (!loading || elapsed < SHOW_AFTER_MS) {
    return null;
  }
  return (
    <div className="jp-NopdbLab-heatmapComputing" role="status">
      Computing the slice in the kernel… {Math.floor(elapsed / 1000)} s{' '}
      <button
        className="jp-mod-styled jp-mod-warn"
        title="Interrupt this request in the kernel (the notebook's stop button does it too)"
        onClick={() => model.stop()}
      >
        Stop
      </button>
    </div>
  );
}

/** The request's error, or what the slice is (grid, pooling, NaN/Inf, zoom). */
function Status({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.stateChanged);
  useSignal(model.zoomChanged);
  const slice = model.slice;
  const grid = slice?.grid ?? null;
  const zoom = model.zoom;
  const detail = model.detail;
  return (
    <>
      {model.error ? (
        <div className="jp-NopdbLab-error">{model.error}</div>
      ) : null}
      {slice ? (
        <div className="jp-NopdbLab-heatmapStatus">
          {grid ? `${grid.join(' × ')} = ${model.mapCount} maps of ` : ''}
          {slice.rows}×{slice.cols}
          {slice.reduce
            ? ` (${slice.reduce}-pooled from ${slice.rows * slice.rowStep}×` +
              `${slice.cols * slice.colStep} over ${slice.rowStep}×${slice.colStep} blocks)`
            : ''}
          {slice.nan ? ` · ${slice.nan} NaN (grey)` : ''}
          {slice.inf ? ` · ${slice.inf} ±Inf (grey)` : ''}
          {zoom.k > 1 && !grid ? ` · zoom ${zoom.k.toFixed(1)}×` : ''}
          {detail && !grid
            ? ` · rows ${detail.row0}–${detail.row0 + detail.rowSpan - 1}, columns ` +
              `${detail.col0}–${detail.col0 + detail.colSpan - 1} ` +
              (detail.rowStep === 1 && detail.colStep === 1
                ? 'at full resolution'
                : `${detail.reduce}-pooled over ${detail.rowStep}×${detail.colStep}`)
            : ''}
        </div>
      ) : null}
    </>
  );
}

/** CSS size of a map whose longest side is `px`, keeping its aspect ratio. */
function fit(model: HeatmapModel, px: string): React.CSSProperties {
  const slice = model.slice;
  const longest = Math.max(slice?.rows ?? 1, slice?.cols ?? 1);
  return {
    width: `calc(${px} * ${(slice?.cols ?? 0) / longest})`,
    aspectRatio: `${slice?.cols ?? 1} / ${slice?.rows ?? 1}`
  };
}

/** The maps: one zoomable map with axis labels, or a grid of small maps. */
function Maps({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.paintedChanged);
  useSignal(model.zoomChanged);
  useSignal(model.stateChanged);
  const drag = React.useRef<{ x: number; y: number } | null>(null);
  const zoomed = React.useRef<HTMLDivElement>(null);
  const slice = model.slice;
  const painted = model.painted;
  const grid = slice?.grid ?? null;
  const zoom = model.zoom;
  const viewport = React.useRef<HTMLDivElement>(null);
  // the wheel zooms (a native listener: React's is passive, so the page would scroll too)
  React.useEffect(() => {
    const element = viewport.current;
    if (!element) {
      return;
    }
    const onWheel = (event: WheelEvent) => {
      if (model.wheelZoomNeedsModifier && !event.ctrlKey && !event.metaKey) {
        return; // in a cell's output the wheel scrolls the notebook
      }
      event.preventDefault();
      // relative to the map's untransformed corner (the zoom's origin), so the point
      // under the mouse stays put wherever the map sits in the viewport (layout offsets:
      // transforms do not change them, and the DOM may not show the newest zoom yet)
      const box = element.getBoundingClientRect();
      const map = zoomed.current;
      const origin = {
        x: box.left + element.clientLeft + (map?.offsetLeft ?? 0),
        y: box.top + element.clientTop + (map?.offsetTop ?? 0)
      };
      model.zoomAt(
        event.clientX - origin.x,
        event.clientY - origin.y,
        event.deltaY
      );
    };
    element.addEventListener('wheel', onWheel, { passive: false });
    return () => element.removeEventListener('wheel', onWheel);
  }, [model, Boolean(slice && !grid)]);
  // after each zoom, pan or new slice: tell the model which part of the map is in view
  React.useEffect(() => {
    const map = zoomed.current;
    const frame = viewport.current;
    if (!map || !frame) {
      return;
    }
    const m = map.getBoundingClientRect();
    const v = frame.getBoundingClientRect();
    if (!m.width || !m.height) {
      return;
    }
    const frac = (x: number) => Math.min(1, Math.max(0, x));
    model.setVisible({
      top: frac((v.top - m.top) / m.height),
      bottom: frac((v.bottom - m.top) / m.height),
      left: frac((v.left - m.left) / m.width),
      right: frac((v.right - m.left) / m.width)
    });
  }, [zoom.k, zoom.x, zoom.y, slice]);
  if (slice && painted && grid) {
    return (
      <div
        className="jp-NopdbLab-heatmapGrid"
        style={{
          gridTemplateColumns: `repeat(${grid.length === 2 ? grid[1] : 'auto-fill'}, ${
            grid.length === 2
              ? 'max-content'
              : `minmax(${GRID_PX}px, max-content)`
          })`
        }}
      >
        {painted.pixels.map((pixels, g) => (
          <figure key={g} className="jp-NopdbLab-heatmapTile">
            <MapCanvas
              pixels={pixels}
              rows={slice.rows}
              cols={slice.cols}
              label={model.gridLabel(g)}
              style={fit(model, `${GRID_PX}px`)}
              onHover={(r, c) => model.setHover({ g, r, c })}
              onLeave={() => model.setHover(null)}
            />
            <figcaption>{model.gridLabel(g)}</figcaption>
          </figure>
        ))}
      </div>
    );
  }
  const tool = model.cellTool;
  const marks = model.marks;
  const detail = model.detail;
  const sourceRows = model.source.shape[model.rowsDim];
  const sourceCols = model.source.shape[model.colsDim];
  const pixels =
    painted && marks.size ? withMarks(painted.pixels[0], marks) : null;
  const onLeave = () => {
    model.setHover(null);
    drag.current = null;
    tool?.up();
  };
  const onMouseUp = () => {
    drag.current = null;
    tool?.up();
  };
  const onDrag = (event: React.MouseEvent) => {
    if (tool && slice) {
      const cell = cellAt(event, slice.rows, slice.cols);
      if (cell) {
        model.setHover({ g: 0, ...cell });
        tool.move(cell.r, cell.c);
      }
      return true;
    }
    if (!drag.current) {
      return false;
    }
    const dx = event.clientX - drag.current.x;
    const dy = event.clientY - drag.current.y;
    drag.current = { x: event.clientX, y: event.clientY };
    model.pan(dx, dy);
    return true;
  };
  return (
    <div
      className="jp-NopdbLab-heatmapViewport"
      style={{ width: `min(${VIEW_PX}px, 100cqw, 100cqh)` }}
      ref={viewport}
    >
      {slice && painted ? (
        <AxisLabels
          rows={slice.rowStep === 1 && zoom.k === 1 ? model.rowLabels : null}
          cols={slice.colStep === 1 && zoom.k === 1 ? model.colLabels : null}
        >
          <div
            ref={zoomed}
            className="jp-NopdbLab-heatmapZoomed"
            style={{
              ...fit(model, '100%'),
              transform: `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.k})`
            }}
          >
            <MapCanvas
              pixels={pixels ?? painted.pixels[0]}
              rows={slice.rows}
              cols={slice.cols}
              label={tool ? 'Edit map' : 'Map'}
              marks={marks.size}
              style={{ cursor: tool ? 'crosshair' : undefined }}
              onHover={(r, c, fy, fx) => model.setHover({ g: 0, r, c, fy, fx })}
              onLeave={onLeave}
              onMouseDown={e => {
                const cell = tool ? cellAt(e, slice.rows, slice.cols) : null;
                if (tool && cell) {
                  tool.down(cell.r, cell.c, e);
                } else {
                  drag.current = { x: e.clientX, y: e.clientY };
                }
              }}
              onMouseUp={onMouseUp}
              onDrag={onDrag}
            />
            {detail && !tool ? (
              <MapCanvas
                pixels={detail.pixels}
                rows={detail.rows}
                cols={detail.cols}
                label="Zoomed region at full resolution"
                style={{
                  position: 'absolute',
                  top: `${(100 * detail.row0) / sourceRows}%`,
                  left: `${(100 * detail.col0) / sourceCols}%`,
                  height: `${(100 * detail.rowSpan) / sourceRows}%`,
                  width: `${(100 * detail.colSpan) / sourceCols}%`
                }}
                onHover={(r, c) => model.setHover({ g: 0, r, c, detail: true })}
                onLeave={onLeave}
                onMouseDown={e => {
                  drag.current = { x: e.clientX, y: e.clientY };
                }}
                onMouseUp={onMouseUp}
                onDrag={onDrag}
              />
            ) : null}
          </div>
        </AxisLabels>
      ) : null}
    </div>
  );
}

/** The image with the attention of one query token over its patches. */
function Overlay({
  model
}: {
  model: HeatmapModel;
}): React.ReactElement | null {
  useSignal(model.stateChanged);
  useSignal(model.paintedChanged);
  const slice = model.slice;
  const painted = model.painted;
  const image = model.image;
  if (!image || !slice || !painted) {
    return null;
  }
  const layout = model.patchLayout;
  return layout ? (
    <PatchOverlay
      image={image}
      values={slice.values}
      tokens={slice.rows}
      layout={layout}
      query={model.query}
      opacity={model.opacity}
      table={painted.table}
      onPick={query => model.setQuery(query)}
    />
  ) : (
    <div className="jp-NopdbLab-more">
      The patch overlay needs one unpooled square attention map whose tokens are
      a square grid of patches after at most 4 prefix tokens (CLS, registers).
    </div>
  );
}

/** The colour bar with its range. */
function ColourBar({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.paintedChanged);
  const colorbar = React.useRef<HTMLCanvasElement>(null);
  const painted = model.painted;
  React.useEffect(() => {
    if (!painted || !colorbar.current) {
      return;
    }
    const ramp = new Float32Array(256).map((_, i) => i / 255);
    colorbar.current.width = 256;
    colorbar.current.height = 1;
    colorbar.current
      .getContext('2d')!
      .putImageData(new ImageData(paint(ramp, painted.table), 256, 1), 0, 0);
    // click (or slider) to painted, for the speed benchmark
    const host = colorbar.current.closest(
      '.jp-NopdbLab-heatmap'
    ) as HTMLElement | null;
    requestAnimationFrame(() => {
      if (host) {
        const now = performance.now();
        host.dataset.paintMs = (now - model.requestStartedAt).toFixed(1);
        host.dataset.paintedAt = now.toFixed(1); // for benchmarks/heatmap_viewer.sh
        host.dataset.paints = String(Number(host.dataset.paints ?? 0) + 1);
      }
    });
  }, [painted]);
  const low = painted?.range.low;
  const high = painted?.range.high;
  const bound = Math.max(Math.abs(low ?? 0), Math.abs(high ?? 0));
  const shown = (v: number | undefined) =>
    v === undefined
      ? '–'
      : formatNumber(model.scale === 'log' ? Math.pow(10, v) : v);
  const diverging = model.colormap === 'RdBu';
  return (
    <>
      <div className="jp-NopdbLab-colorbar">
        <span>{diverging ? shown(-bound) : shown(low)}</span>
        <canvas ref={colorbar} aria-label="Colour bar" />
        <span>{diverging ? shown(bound) : shown(high)}</span>
      </div>
      {model.normalisation === 'row' ? (
        <div className="jp-NopdbLab-more">
          colours span each row's own range
        </div>
      ) : null}
    </>
  );
}

/** The hovered cell's exact value (re-renders on hover only). */
function HoverReadout({ model }: { model: HeatmapModel }): React.ReactElement {
  useSignal(model.hoverChanged);
  useSignal(model.paintedChanged);
  return (
    <div className="jp-NopdbLab-heatmapTooltip" role="status">
      {model.hoverText}
    </div>
  );
}

/** Save every map (a grid as tiles) as one PNG, upscaled to about 512 px. */
function exportPng(model: HeatmapModel): void {
  const slice = model.slice;
  const painted = model.painted;
  if (!slice || !painted) {
    return;
  }
  const maps = painted.pixels.length;
  const across = Math.ceil(Math.sqrt(maps));
  const down = Math.ceil(maps / across);
  const up = Math.max(
    1,
    Math.ceil(512 / (Math.max(slice.rows, slice.cols) * across))
  );
  const gap = maps > 1 ? 2 : 0;
  const out = document.createElement('canvas');
  out.width = across * (slice.cols * up + gap);
  out.height = down * (slice.rows * up + gap);
  const context = out.getContext('2d')!;
  context.imageSmoothingEnabled = false;
  painted.pixels.forEach((pixels, g) => {
    const tile = document.createElement('canvas');
    tile.width = slice.cols;
    tile.height = slice.rows;
    tile
      .getContext('2d')!
      .putImageData(new ImageData(pixels, slice.cols, slice.rows), 0, 0);
    const x = (g % across) * (slice.cols * up + gap);
    const y = Math.floor(g / across) * (slice.rows * up + gap);
    context.drawImage(tile, x, y, slice.cols * up, slice.rows * up);
  });
  const link = document.createElement('a');
  link.download = `${model.source.expression.replace(/[^A-Za-z0-9_.-]+/g, '_')}.png`;
  link.href = out.toDataURL('image/png');
  link.click();
}

/**
 * The viewer as a widget (wrapped in a MainAreaWidget by the plugin): the views below
 * each re-render on their model signal only (a hover does not repaint the maps).
 */
export class HeatmapWidget extends ReactWidget {
  /** `inline`: in a cell's output (a fixed height; Ctrl/⌘ + wheel zooms). */
  constructor(
    readonly model: HeatmapModel,
    options: { inline?: boolean } = {}
  ) {
    super();
    this.addClass('jp-NopdbLab-heatmapWidget');
    if (options.inline) {
      this.addClass('jp-mod-inline');
      model.wheelZoomNeedsModifier = true;
    }
    void model.fetch();
  }

  protected render(): React.ReactElement {
    const model = this.model;
    return (
      <div className="jp-NopdbLab-heatmap">
        <Controls model={model} />
        <DimSliders model={model} />
        <Expressions model={model} />
        <Status model={model} />
        <Computing model={model} />
        {/* above the maps: the colour bar and the readout stay in view beside them */}
        <div className="jp-NopdbLab-heatmapSide">
          <ColourBar model={model} />
          <HoverReadout model={model} />
        </div>
        <div className="jp-NopdbLab-heatmapBody">
          <Maps model={model} />
          <Overlay model={model} />
        </div>
      </div>
    );
  }
}
