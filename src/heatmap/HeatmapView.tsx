/**
 * The heatmap viewer: any 2-D slice of a captured tensor or array, drawn on a canvas.
 * Pick the row and column dimensions, slide through the others; colormap, linear/log
 * scale, global or per-row normalisation, colour bar, hover value, zoom (wheel) and pan
 * (drag), PNG export. The kernel slices and pools large maps; the payload is binary.
 */
import * as React from 'react';
import { ReactWidget } from '@jupyterlab/ui-components';

import { KernelBridge } from '../kernelBridge';
import { formatNumber } from '../format';
import { PathStep } from '../protocol';
import {
  ColormapName,
  COLORMAPS,
  lookupTable,
  Normalisation,
  normalise,
  paint,
  Scale
} from './colormap';

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

interface ISlice {
  rows: number;
  cols: number;
  rowStep: number;
  colStep: number;
  reduce: string | null;
  values: Float32Array;
  nan: number;
  inf: number;
}

const MAX_SIZE = 512;
const VIEW_PX = 560;

function Viewer({ source }: { source: IHeatmapSource }): React.ReactElement {
  const ndim = source.shape.length;
  const [rowsDim, setRowsDim] = React.useState(ndim - 2);
  const [colsDim, setColsDim] = React.useState(ndim - 1);
  const [index, setIndex] = React.useState<number[]>(() =>
    source.shape.map(() => 0)
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
  const [timing, setTiming] = React.useState<number | null>(null);
  const [hover, setHover] = React.useState<{ r: number; c: number } | null>(
    null
  );
  const [zoom, setZoom] = React.useState({ k: 1, x: 0, y: 0 });
  const canvas = React.useRef<HTMLCanvasElement>(null);
  const colorbar = React.useRef<HTMLCanvasElement>(null);
  const requested = React.useRef(0);
  const drag = React.useRef<{ x: number; y: number } | null>(null);

  // fetch the slice whenever the dimensions or indices change
  React.useEffect(() => {
    const client = source.bridge.client;
    if (!client) {
      setError('The kernel is not connected.');
      return;
    }
    const started = performance.now();
    const ticket = ++requested.current;
    const fixed: Record<string, number> = {};
    index.forEach((i, dim) => {
      if (dim !== rowsDim && dim !== colsDim) {
        fixed[String(dim)] = i;
      }
    });
    client
      .request('heatmap', {
        id: source.captureId,
        path: source.path,
        rows_dim: rowsDim,
        cols_dim: colsDim,
        index: fixed,
        max_size: MAX_SIZE,
        reduce
      })
      .then(({ result, buffers }) => {
        if (ticket !== requested.current) {
          return; // a newer request is on its way
        }
        const view = buffers[0];
        const values = new Float32Array(
          view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength)
        );
        setSlice({
          rows: result.rows,
          cols: result.cols,
          rowStep: result.row_step,
          colStep: result.col_step,
          reduce: result.reduce,
          values,
          nan: result.nan,
          inf: result.inf
        });
        setError(null);
        setTiming(started);
      })
      .catch(err => ticket === requested.current && setError(err.message));
  }, [source, rowsDim, colsDim, index, reduce]);

  const range = React.useMemo(() => {
    if (!slice) {
      return null;
    }
    const { positions, range } = normalise(
      slice.values,
      slice.rows,
      slice.cols,
      {
        scale,
        normalisation,
        diverging: colormap === 'RdBu'
      }
    );
    return { positions, range };
  }, [slice, scale, normalisation, colormap]);

  // paint the map and the colour bar
  React.useEffect(() => {
    if (!slice || !range || !canvas.current) {
      return;
    }
    const table = lookupTable(colormap);
    const pixels = paint(range.positions, table);
    const context = canvas.current.getContext('2d')!;
    canvas.current.width = slice.cols;
    canvas.current.height = slice.rows;
    context.putImageData(new ImageData(pixels, slice.cols, slice.rows), 0, 0);
    if (colorbar.current) {
      const ramp = new Float32Array(256).map((_, i) => i / 255);
      const bar = colorbar.current.getContext('2d')!;
      colorbar.current.width = 256;
      colorbar.current.height = 1;
      bar.putImageData(new ImageData(paint(ramp, table), 256, 1), 0, 0);
    }
    if (timing !== null) {
      const elapsed = performance.now() - timing;
      canvas.current.dataset.paintMs = elapsed.toFixed(1);
      setTiming(null);
    }
  }, [slice, range, colormap]);

  const longest = Math.max(slice?.rows ?? 1, slice?.cols ?? 1);
  const hovered =
    slice && hover ? slice.values[hover.r * slice.cols + hover.c] : undefined;

  const onMove = (event: React.MouseEvent<HTMLCanvasElement>) => {
    if (drag.current) {
      const dx = event.clientX - drag.current.x;
      const dy = event.clientY - drag.current.y;
      drag.current = { x: event.clientX, y: event.clientY };
      setZoom(z => ({ ...z, x: z.x + dx, y: z.y + dy }));
      return;
    }
    if (!slice) {
      return;
    }
    const box = event.currentTarget.getBoundingClientRect();
    const c = Math.floor(((event.clientX - box.left) / box.width) * slice.cols);
    const r = Math.floor(((event.clientY - box.top) / box.height) * slice.rows);
    setHover(
      r >= 0 && r < slice.rows && c >= 0 && c < slice.cols ? { r, c } : null
    );
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

  const sourceIndex = (i: number, step: number) =>
    step > 1 ? `${i * step}–${i * step + step - 1}` : `${i}`;
  const label = (dim: number) => `dim ${dim} (${source.shape[dim]})`;
  const exportPng = () => {
    if (!canvas.current || !slice) {
      return;
    }
    const scaleUp = Math.max(
      1,
      Math.ceil(512 / Math.max(slice.rows, slice.cols))
    );
    const out = document.createElement('canvas');
    out.width = slice.cols * scaleUp;
    out.height = slice.rows * scaleUp;
    const context = out.getContext('2d')!;
    context.imageSmoothingEnabled = false;
    context.drawImage(canvas.current, 0, 0, out.width, out.height);
    const link = document.createElement('a');
    link.download = `${source.expression.replace(/[^A-Za-z0-9_.-]+/g, '_')}.png`;
    link.href = out.toDataURL('image/png');
    link.click();
  };
  const low = range?.range.low;
  const high = range?.range.high;
  const bound = Math.max(Math.abs(low ?? 0), Math.abs(high ?? 0));
  const shown = (v: number | undefined) =>
    v === undefined ? '–' : formatNumber(scale === 'log' ? Math.pow(10, v) : v);

  return (
    <div className="jp-NopdbLab-heatmap">
      <div className="jp-NopdbLab-heatmapControls">
        <code className="jp-NopdbLab-heatmapExpression">
          {source.expression}
        </code>
        <label>
          rows{' '}
          <select
            className="jp-mod-styled"
            aria-label="Rows dimension"
            value={rowsDim}
            onChange={e => setRowsDim(Number(e.target.value))}
          >
            {source.shape.map((_, d) => (
              <option key={d} value={d} disabled={d === colsDim}>
                {label(d)}
              </option>
            ))}
          </select>
        </label>
        <label>
          columns{' '}
          <select
            className="jp-mod-styled"
            aria-label="Columns dimension"
            value={colsDim}
            onChange={e => setColsDim(Number(e.target.value))}
          >
            {source.shape.map((_, d) => (
              <option key={d} value={d} disabled={d === rowsDim}>
                {label(d)}
              </option>
            ))}
          </select>
        </label>
        <label>
          colormap{' '}
          <select
            className="jp-mod-styled"
            aria-label="Colormap"
            value={colormap}
            onChange={e => setColormap(e.target.value as ColormapName)}
          >
            {Object.keys(COLORMAPS).map(name => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          scale{' '}
          <select
            className="jp-mod-styled"
            aria-label="Scale"
            value={scale}
            onChange={e => setScale(e.target.value as Scale)}
          >
            <option value="linear">linear</option>
            <option value="log">log</option>
          </select>
        </label>
        <label>
          normalise{' '}
          <select
            className="jp-mod-styled"
            aria-label="Normalisation"
            value={normalisation}
            onChange={e => setNormalisation(e.target.value as Normalisation)}
          >
            <option value="global">whole map</option>
            <option value="row">each row</option>
          </select>
        </label>
        <label>
          pooling{' '}
          <select
            className="jp-mod-styled"
            aria-label="Pooling"
            value={reduce}
            onChange={e => setReduce(e.target.value as 'max' | 'mean')}
          >
            <option value="max">max</option>
            <option value="mean">mean</option>
          </select>
        </label>
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
            <label key={dim}>
              {label(dim)}: {index[dim]}
              <input
                type="range"
                aria-label={`Index of dim ${dim}`}
                min={0}
                max={size - 1}
                value={index[dim]}
                onChange={e => {
                  const next = [...index];
                  next[dim] = Number(e.target.value);
                  setIndex(next);
                }}
              />
            </label>
          )
        )}
      </div>
      {error ? <div className="jp-NopdbLab-error">{error}</div> : null}
      {slice ? (
        <div className="jp-NopdbLab-heatmapStatus">
          {slice.rows}×{slice.cols}
          {slice.reduce
            ? ` (${slice.reduce}-pooled from ${slice.rows * slice.rowStep}×` +
              `${slice.cols * slice.colStep} over ${slice.rowStep}×${slice.colStep} blocks)`
            : ''}
          {slice.nan ? ` · ${slice.nan} NaN (grey)` : ''}
          {slice.inf ? ` · ${slice.inf} ±Inf (grey)` : ''}
          {zoom.k > 1 ? ` · zoom ${zoom.k.toFixed(1)}×` : ''}
        </div>
      ) : null}
      <div className="jp-NopdbLab-heatmapBody">
        <div
          className="jp-NopdbLab-heatmapViewport"
          style={{ width: `min(${VIEW_PX}px, 100%)` }}
          onWheel={onWheel}
        >
          <canvas
            ref={canvas}
            className="jp-NopdbLab-heatmapCanvas"
            style={{
              width: `${(100 * (slice?.cols ?? 0)) / longest}%`,
              aspectRatio: `${slice?.cols ?? 1} / ${slice?.rows ?? 1}`,
              transform: `translate(${zoom.x}px, ${zoom.y}px) scale(${zoom.k})`
            }}
            onMouseMove={onMove}
            onMouseLeave={() => {
              setHover(null);
              drag.current = null;
            }}
            onMouseDown={e => (drag.current = { x: e.clientX, y: e.clientY })}
            onMouseUp={() => (drag.current = null)}
          />
        </div>
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
              ? `row ${sourceIndex(hover.r, slice.rowStep)}, column ` +
                `${sourceIndex(hover.c, slice.colStep)}: ${hovered}`
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
