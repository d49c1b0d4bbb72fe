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

import { KernelBridge } from '../kernel/bridge';
import { formatNumber } from '../ui/format';
import { PathStep } from '../kernel/protocol';
import {
  ColormapName,
  COLORMAPS,
  lookupTable,
  Normalisation,
  normalise,
  paint,
  Scale
} from './colormap';
import { IOverlayImage, PatchOverlay } from './PatchOverlay';
import { patchLayout } from './patches';
import { DimMode, gridPosition, heatmapRequest } from './request';

/** What the viewer shows: one value of one capture. */
export interface IHeatmapSource {
  bridge: KernelBridge;
  captureId: number;
  path: PathStep[];
  expression: string;
  shape: number[];
  /** Signed data opens with the diverging colormap. */
  signed: boolean;
}

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

interface ISlice {
  grid: number[] | null;
  rows: number;
  cols: number;
  rowStep: number;
  colStep: number;
  reduce: string | null;
  values: Float32Array;
  nan: number;
  inf: number;
}

interface IHover {
  g: number;
  r: number;
  c: number;
}

const MAX_SIZE = 512;
const GRID_MAX_SIZE = 128;
const VIEW_PX = 560;
const GRID_PX = 150;

/** One map painted on a canvas (pixels are cells; CSS scales it). */
function MapCanvas(props: {
  pixels: Uint8ClampedArray;
  rows: number;
  cols: number;
  style: React.CSSProperties;
  label?: string;
  canvasRef?: React.RefObject<HTMLCanvasElement>;
  onHover: (r: number, c: number) => void;
  onLeave: () => void;
  onMouseDown?: (event: React.MouseEvent) => void;
  onMouseUp?: () => void;
  onDrag?: (event: React.MouseEvent) => boolean;
}): React.ReactElement {
  const own = React.useRef<HTMLCanvasElement>(null);
  const ref = props.canvasRef ?? own;
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
      style={props.style}
      onMouseMove={event => {
        if (props.onDrag?.(event)) {
          return;
        }
        const box = event.currentTarget.getBoundingClientRect();
        const c = Math.floor(
          ((event.clientX - box.left) / box.width) * props.cols
        );
        const r = Math.floor(
          ((event.clientY - box.top) / box.height) * props.rows
        );
        if (r >= 0 && r < props.rows && c >= 0 && c < props.cols) {
          props.onHover(r, c);
        }
      }}
      onMouseLeave={props.onLeave}
      onMouseDown={props.onMouseDown}
      onMouseUp={props.onMouseUp}
    />
  );
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

function Viewer({ source }: { source: IHeatmapSource }): React.ReactElement {
  const ndim = source.shape.length;
  const [rowsDim, setRowsDim] = React.useState(ndim - 2);
  const [colsDim, setColsDim] = React.useState(ndim - 1);
  const [index, setIndex] = React.useState<number[]>(() =>
    source.shape.map(() => 0)
  );
  const [modes, setModes] = React.useState<DimMode[]>(() =>
    source.shape.map(() => 'index')
  );
  const [colormap, setColormap] = React.useState<ColormapName>(
    source.signed ? 'RdBu' : 'viridis'
  );
  const [scale, setScale] = React.useState<Scale>('linear');
  const [normalisation, setNormalisation] =
    React.useState<Normalisation>('global');
  const [reduce, setReduce] = React.useState<'max' | 'mean'>('max');
  const [slice, setSlice] = React.useState<ISlice | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [hover, setHover] = React.useState<IHover | null>(null);
  const [zoom, setZoom] = React.useState({ k: 1, x: 0, y: 0 });
  const [labelsExpression, setLabelsExpression] = React.useState('');
  const [labels, setLabels] = React.useState<string[] | null>(null);
  const [labelsError, setLabelsError] = React.useState<string | null>(null);
  const [imageExpression, setImageExpression] = React.useState('');
  const [image, setImage] = React.useState<IOverlayImage | null>(null);
  const [imageError, setImageError] = React.useState<string | null>(null);
  const [query, setQuery] = React.useState(0);
  const [opacity, setOpacity] = React.useState(0.6);
  const mainCanvas = React.useRef<HTMLCanvasElement>(null);
  const colorbar = React.useRef<HTMLCanvasElement>(null);
  const requested = React.useRef(0);
  const started = React.useRef(0);
  const drag = React.useRef<{ x: number; y: number } | null>(null);

  // fetch whenever what is shown changes
  React.useEffect(() => {
    const client = source.bridge.client;
    if (!client) {
      setError('The kernel is not connected.');
      return;
    }
    started.current = performance.now();
    const ticket = ++requested.current;
    const request = heatmapRequest(
      source.shape,
      rowsDim,
      colsDim,
      index,
      modes
    );
    client
      .request('heatmap', {
        id: source.captureId,
        path: source.path,
        rows_dim: rowsDim,
        cols_dim: colsDim,
        ...request,
        max_size: request.grid_dims.length ? GRID_MAX_SIZE : MAX_SIZE,
        reduce
      })
      .then(({ result, buffers }) => {
        if (ticket !== requested.current) {
          return; // a newer request is on its way
        }
        const view = buffers[0];
        setSlice({
          grid: result.grid,
          rows: result.rows,
          cols: result.cols,
          rowStep: result.row_step,
          colStep: result.col_step,
          reduce: result.reduce,
          values: new Float32Array(
            view.buffer.slice(
              view.byteOffset,
              view.byteOffset + view.byteLength
            )
          ),
          nan: result.nan,
          inf: result.inf
        });
        setError(null);
      })
      .catch(err => ticket === requested.current && setError(err.message));
  }, [source, rowsDim, colsDim, index, modes, reduce]);

  // colours: all maps of a grid share one normalisation (rows stay rows)
  const painted = React.useMemo(() => {
    if (!slice) {
      return null;
    }
    const maps = (slice.grid ?? [1]).reduce((a, b) => a * b, 1);
    const { positions, range } = normalise(
      slice.values,
      maps * slice.rows,
      slice.cols,
      {
        scale,
        normalisation,
        diverging: colormap === 'RdBu'
      }
    );
    const table = lookupTable(colormap);
    const size = slice.rows * slice.cols;
    const pixels = Array.from({ length: maps }, (_, g) =>
      paint(positions.subarray(g * size, (g + 1) * size), table)
    );
    return { pixels, range, table };
  }, [slice, scale, normalisation, colormap]);

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
        host.dataset.paintMs = (now - started.current).toFixed(1);
        host.dataset.paintedAt = now.toFixed(1); // for benchmarks/heatmap_viewer.sh
        host.dataset.paints = String(Number(host.dataset.paints ?? 0) + 1);
      }
    });
  }, [painted]);

  const applyLabels = async () => {
    const client = source.bridge.client;
    if (!labelsExpression.trim()) {
      setLabels(null);
      setLabelsError(null);
      return;
    }
    try {
      const response = await client!.request('labels', {
        expression: labelsExpression
      });
      setLabels(response.result.labels);
      setLabelsError(null);
    } catch (err) {
      setLabelsError((err as Error).message);
    }
  };
  const applyImage = async () => {
    if (!imageExpression.trim()) {
      setImage(null);
      setImageError(null);
      return;
    }
    try {
      const response = await source.bridge.client!.request('image', {
        expression: imageExpression
      });
      const view = response.buffers[0];
      setImage({
        width: response.result.width,
        height: response.result.height,
        rgb: new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
      });
      setImageError(null);
    } catch (err) {
      setImageError((err as Error).message);
    }
  };
  const layout =
    slice && !slice.grid && slice.rows === slice.cols && slice.rowStep === 1
      ? patchLayout(slice.rows)
      : null;
  // labels name an axis whose length they match (attention maps: both)
  const rowLabels =
    labels && labels.length === source.shape[rowsDim] ? labels : null;
  const colLabels =
    labels && labels.length === source.shape[colsDim] ? labels : null;
  const labelMismatch =
    labels && !rowLabels && !colLabels
      ? `${labels.length} labels, but rows have ${source.shape[rowsDim]} and columns ` +
        `${source.shape[colsDim]}`
      : null;
  const name = (names: string[] | null, i: number, step: number) =>
    names && step === 1 ? ` ${JSON.stringify(names[i])}` : '';
  const grid = slice?.grid ?? null;
  const gridDims = heatmapRequest(
    source.shape,
    rowsDim,
    colsDim,
    index,
    modes
  ).grid_dims;
  const gridLabel = (g: number) =>
    gridPosition(g, grid ?? [1])
      .map((i, k) => `dim ${gridDims[k]} = ${i}`)
      .join(', ');
  const mapCount = (grid ?? [1]).reduce((a, b) => a * b, 1);
  const hovered =
    slice && hover
      ? slice.values[(hover.g * slice.rows + hover.r) * slice.cols + hover.c]
      : undefined;
  const sourceIndex = (i: number, step: number) =>
    step > 1 ? `${i * step}–${i * step + step - 1}` : `${i}`;
  const label = (dim: number) => `dim ${dim} (${source.shape[dim]})`;
  const dims = source.shape.map((_, d) => d);
  const setMode = (dim: number, mode: DimMode) =>
    setModes(modes.map((m, d) => (d === dim ? mode : m)));

  const onDrag = (event: React.MouseEvent) => {
    if (!drag.current) {
      return false;
    }
    const dx = event.clientX - drag.current.x;
    const dy = event.clientY - drag.current.y;
    drag.current = { x: event.clientX, y: event.clientY };
    setZoom(z => ({ ...z, x: z.x + dx, y: z.y + dy }));
    return true;
  };
  const onWheel = (event: React.WheelEvent<HTMLDivElement>) => {
    const box = event.currentTarget.getBoundingClientRect();
    const px = event.clientX - box.left;
    const py = event.clientY - box.top;
    setZoom(z => {
      const k = Math.min(
        64,
        Math.max(1, z.k * Math.pow(1.2, -event.deltaY / 100))
      );
      // keep the point under the cursor in place
      return {
        k,
        x: px - ((px - z.x) * k) / z.k,
        y: py - ((py - z.y) * k) / z.k
      };
    });
  };
  const exportPng = () => {
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
    link.download = `${source.expression.replace(/[^A-Za-z0-9_.-]+/g, '_')}.png`;
    link.href = out.toDataURL('image/png');
    link.click();
  };
  const low = painted?.range.low;
  const high = painted?.range.high;
  const bound = Math.max(Math.abs(low ?? 0), Math.abs(high ?? 0));
  const shown = (v: number | undefined) =>
    v === undefined ? '–' : formatNumber(scale === 'log' ? Math.pow(10, v) : v);
  const longest = Math.max(slice?.rows ?? 1, slice?.cols ?? 1);
  const fit = (px: string): React.CSSProperties => ({
    width: `calc(${px} * ${(slice?.cols ?? 0) / longest})`,
    aspectRatio: `${slice?.cols ?? 1} / ${slice?.rows ?? 1}`
  });

  return (
    <div className="jp-NopdbLab-heatmap">
      <div className="jp-NopdbLab-heatmapControls">
        <code className="jp-NopdbLab-heatmapExpression">
          {source.expression}
        </code>
        <Choice
          label="rows"
          aria="Rows dimension"
          value={String(rowsDim)}
          options={dims.map(d => [String(d), label(d), d === colsDim])}
          onChange={v => setRowsDim(Number(v))}
        />
        <Choice
          label="columns"
          aria="Columns dimension"
          value={String(colsDim)}
          options={dims.map(d => [String(d), label(d), d === rowsDim])}
          onChange={v => setColsDim(Number(v))}
        />
        <Choice
          label="colormap"
          aria="Colormap"
          value={colormap}
          options={Object.keys(COLORMAPS).map(name => [name, name])}
          onChange={v => setColormap(v as ColormapName)}
        />
        <Choice
          label="scale"
          aria="Scale"
          value={scale}
          options={[
            ['linear', 'linear'],
            ['log', 'log']
          ]}
          onChange={v => setScale(v as Scale)}
        />
        <Choice
          label="normalise"
          aria="Normalisation"
          value={normalisation}
          options={[
            ['global', 'whole map'],
            ['row', 'each row']
          ]}
          onChange={v => setNormalisation(v as Normalisation)}
        />
        <Choice
          label="pooling"
          aria="Pooling"
          value={reduce}
          options={[
            ['max', 'max'],
            ['mean', 'mean']
          ]}
          onChange={v => setReduce(v as 'max' | 'mean')}
        />
        <button
          className="jp-mod-styled"
          onClick={() => setZoom({ k: 1, x: 0, y: 0 })}
        >
          Reset zoom
        </button>
        <button className="jp-mod-styled jp-mod-accept" onClick={exportPng}>
          Export PNG
        </button>
      </div>
      <div className="jp-NopdbLab-heatmapSliders">
        {source.shape.map((size, dim) =>
          dim === rowsDim || dim === colsDim ? null : (
            <div key={dim} className="jp-NopdbLab-heatmapDim">
              <Choice
                label={label(dim)}
                aria={`Show dim ${dim}`}
                value={modes[dim]}
                options={[
                  ['index', 'one index'],
                  ['mean', 'mean'],
                  ['grid', 'grid']
                ]}
                onChange={v => setMode(dim, v as DimMode)}
              />
              {modes[dim] === 'index' ? (
                <label>
                  {index[dim]}
                  <input
                    type="range"
                    aria-label={`Index of dim ${dim}`}
                    min={0}
                    max={size - 1}
                    value={index[dim]}
                    onChange={e =>
                      setIndex(
                        index.map((v, d) =>
                          d === dim ? Number(e.target.value) : v
                        )
                      )
                    }
                  />
                </label>
              ) : null}
            </div>
          )
        )}
      </div>
      <div className="jp-NopdbLab-heatmapLabels">
        <label>
          labels{' '}
          <input
            className="jp-mod-styled"
            aria-label="Labels expression"
            placeholder="Python, e.g. tokenizer.convert_ids_to_tokens(ids[0])"
            value={labelsExpression}
            onChange={e => setLabelsExpression(e.target.value)}
            onKeyDown={e => e.key === 'Enter' && void applyLabels()}
          />
        </label>
        <button className="jp-mod-styled" onClick={() => void applyLabels()}>
          Apply
        </button>
        {labelsError || labelMismatch ? (
          <span className="jp-NopdbLab-error">
            {labelsError ?? labelMismatch}
          </span>
        ) : null}
      </div>
      <div className="jp-NopdbLab-heatmapLabels">
        <label>
          image{' '}
          <input
            className="jp-mod-styled"
            aria-label="Image expression"
            placeholder="Python: the input image (tensor C×H×W, array or PIL)"
            value={imageExpression}
            onChange={e => setImageExpression(e.target.value)}
            onKeyDown={e => e.key === 'Enter' && void applyImage()}
          />
        </label>
        <button className="jp-mod-styled" onClick={() => void applyImage()}>
          Overlay
        </button>
        {image ? (
          <label>
            opacity
            <input
              type="range"
              aria-label="Overlay opacity"
              min={0}
              max={1}
              step={0.05}
              value={opacity}
              onChange={e => setOpacity(Number(e.target.value))}
            />
          </label>
        ) : null}
        {imageError ? (
          <span className="jp-NopdbLab-error">{imageError}</span>
        ) : null}
      </div>
      {error ? <div className="jp-NopdbLab-error">{error}</div> : null}
      {slice ? (
        <div className="jp-NopdbLab-heatmapStatus">
          {grid ? `${grid.join(' × ')} = ${mapCount} maps of ` : ''}
          {slice.rows}×{slice.cols}
          {slice.reduce
            ? ` (${slice.reduce}-pooled from ${slice.rows * slice.rowStep}×` +
              `${slice.cols * slice.colStep} over ${slice.rowStep}×${slice.colStep} blocks)`
            : ''}
          {slice.nan ? ` · ${slice.nan} NaN (grey)` : ''}
          {slice.inf ? ` · ${slice.inf} ±Inf (grey)` : ''}
          {zoom.k > 1 && !grid ? ` · zoom ${zoom.k.toFixed(1)}×` : ''}
        </div>
      ) : null}
      <div className="jp-NopdbLab-heatmapBody">
        {slice && painted && grid ? (
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
                  label={gridLabel(g)}
                  style={fit(`${GRID_PX}px`)}
                  onHover={(r, c) => setHover({ g, r, c })}
                  onLeave={() => setHover(null)}
                />
                <figcaption>{gridLabel(g)}</figcaption>
              </figure>
            ))}
          </div>
        ) : (
          <div
            className="jp-NopdbLab-heatmapViewport"
            style={{ width: `min(${VIEW_PX}px, 100%)` }}
            onWheel={onWheel}
          >
            {slice && painted ? (
              <AxisLabels
                rows={slice.rowStep === 1 && zoom.k === 1 ? rowLabels : null}
                cols={slice.colStep === 1 && zoom.k === 1 ? colLabels : null}
              >
                <MapCanvas
                  canvasRef={mainCanvas}
                  pixels={painted.pixels[0]}
                  rows={slice.rows}
                  cols={slice.cols}
                  style={{
                    ...fit('100%'),
                    transform: `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.k})`
                  }}
                  onHover={(r, c) => setHover({ g: 0, r, c })}
                  onLeave={() => {
                    setHover(null);
                    drag.current = null;
                  }}
                  onMouseDown={e =>
                    (drag.current = { x: e.clientX, y: e.clientY })
                  }
                  onMouseUp={() => (drag.current = null)}
                  onDrag={onDrag}
                />
              </AxisLabels>
            ) : null}
          </div>
        )}
        {image && slice && painted ? (
          layout ? (
            <PatchOverlay
              image={image}
              values={slice.values}
              tokens={slice.rows}
              layout={layout}
              query={Math.min(query, slice.rows - 1)}
              opacity={opacity}
              table={painted.table}
              onPick={setQuery}
            />
          ) : (
            <div className="jp-NopdbLab-more">
              The patch overlay needs one unpooled square attention map whose
              tokens are a square grid of patches after at most 4 prefix tokens
              (CLS, registers).
            </div>
          )
        ) : null}
        <div className="jp-NopdbLab-heatmapSide">
          <div className="jp-NopdbLab-colorbar">
            <span>{colormap === 'RdBu' ? shown(-bound) : shown(low)}</span>
            <canvas ref={colorbar} aria-label="Colour bar" />
            <span>{colormap === 'RdBu' ? shown(bound) : shown(high)}</span>
          </div>
          {normalisation === 'row' ? (
            <div className="jp-NopdbLab-more">
              colours span each row's own range
            </div>
          ) : null}
          <div className="jp-NopdbLab-heatmapTooltip" role="status">
            {slice && hover && hovered !== undefined
              ? `${grid ? `${gridLabel(hover.g)}, ` : ''}` +
                `row ${sourceIndex(hover.r, slice.rowStep)}` +
                `${name(rowLabels, hover.r, slice.rowStep)}, column ` +
                `${sourceIndex(hover.c, slice.colStep)}` +
                `${name(colLabels, hover.c, slice.colStep)}: ${hovered}`
              : 'Hover the map to read a value.'}
          </div>
        </div>
      </div>
    </div>
  );
}

/** The viewer as a widget (wrapped in a MainAreaWidget by the plugin). */
export class HeatmapWidget extends ReactWidget {
  constructor(readonly source: IHeatmapSource) {
    super();
    this.addClass('jp-NopdbLab-heatmapWidget');
  }

  protected render(): React.ReactElement {
    return <Viewer source={this.source} />;
  }
}
