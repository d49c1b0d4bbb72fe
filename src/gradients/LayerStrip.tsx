/**
 * The layer strip: one bar per layer (the captures of one function, or a stack's
 * sources) showing the gradient's ‖g‖₂ on a log scale, with mean |g|, max |g| and NaN/Inf
 * counts on hover; vanishing, exploding and non-finite layers are marked. A click opens
 * that layer's gradient as a heatmap.
 */
import * as React from 'react';
import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import { PathStep, RequestResult } from '../kernel/protocol';

type Bar = RequestResult<'layer_strip'>['layers'][number];

const HEIGHT = 56;

/** The bar heights (0..1) of the norms on a log scale; absent or zero norms get 0. */
export function logHeights(norms: (number | undefined)[]): number[] {
  const logs = norms.map(n =>
    n !== undefined && n > 0 && Number.isFinite(n) ? Math.log10(n) : null
  );
  const present = logs.filter((l): l is number => l !== null);
  if (!present.length) {
    return norms.map(() => 0);
  }
  const lo = Math.min(...present);
  const hi = Math.max(...present);
  // the smallest bar keeps a sliver so that it stays visible and clickable
  return logs.map(l =>
    l === null ? 0 : hi === lo ? 1 : 0.08 + (0.92 * (l - lo)) / (hi - lo)
  );
}

function fmt(x: number | undefined): string {
  return x === undefined ? '–' : x === 0 ? '0' : x.toPrecision(3);
}

/** What a bar says on hover. */
export function describeBar(bar: Bar, layer: number): string {
  if (!bar.present) {
    return `layer ${layer} (#${bar.id}): no gradient${bar.reason ? `: ${bar.reason}` : ''}`;
  }
  const flag = bar.flag ? ` · ${bar.flag}` : '';
  return (
    `layer ${layer} (#${bar.id}): ‖g‖₂ ${fmt(bar.norm)} · mean |g| ${fmt(bar.mean_abs)}` +
    ` · max |g| ${fmt(bar.max_abs)} · NaN ${bar.nan ?? 0} · Inf ${bar.inf ?? 0}${flag}`
  );
}

type Loaded =
  | { status: 'loading' }
  | { status: 'loaded'; path: PathStep[]; layers: Bar[] }
  | { status: 'failed'; message: string };

export function LayerStrip(props: {
  bridge: KernelBridge;
  commands: CommandRegistry;
  captureId: number;
  path: PathStep[];
  /** Re-fetch when this changes (a gradient arrived). */
  version?: unknown;
}): React.ReactElement {
  const { bridge, commands, captureId, path } = props;
  const [loaded, setLoaded] = React.useState<Loaded>({ status: 'loading' });
  const [hover, setHover] = React.useState<number | null>(null);
  const key = JSON.stringify(path);
  React.useEffect(() => {
    let live = true;
    const client = bridge.client;
    if (!client) {
      setLoaded({ status: 'failed', message: 'The kernel is not connected.' });
      return;
    }
    client
      .request('layer_strip', { id: captureId, path })
      .then(
        ({ result }) =>
          live &&
          setLoaded({
            status: 'loaded',
            path: result.path,
            layers: result.layers
          })
      )
      .catch(
        error => live && setLoaded({ status: 'failed', message: error.message })
      );
    return () => {
      live = false;
    };
  }, [bridge, captureId, key, props.version]);

  if (loaded.status === 'loading') {
    return <div className="jp-NopdbLab-empty">Loading the layer strip…</div>;
  }
  if (loaded.status === 'failed') {
    return <div className="jp-NopdbLab-error">{loaded.message}</div>;
  }
  const { layers } = loaded;
  const heights = logHeights(layers.map(b => (b.present ? b.norm : undefined)));
  const open = (bar: Bar) => {
    if (!bar.present || !bar.shape) {
      return;
    }
    const expression = bar.expression ?? `nopdb_lab.store[${bar.id}].grads`;
    void commands.execute(CommandIDs.openHeatmap, {
      captureId: bar.id,
      path: loaded.path,
      expression,
      shape: bar.shape,
      signed: true,
      of: 'grad'
    });
  };
  const flagged = layers.filter(b => b.flag).length;
  return (
    <div
      className="jp-NopdbLab-layerStrip"
      data-layers={layers.length}
      aria-label="Layer strip"
    >
      <div className="jp-NopdbLab-layerStrip-title">
        ‖g‖₂ per layer (log scale), {layers.length} layer
        {layers.length === 1 ? '' : 's'}
        {flagged ? ` · ${flagged} flagged` : ''}
      </div>
      <div className="jp-NopdbLab-layerStrip-bars" style={{ height: HEIGHT }}>
        {layers.map((bar, i) => (
          <button
            key={bar.id}
            className={
              'jp-NopdbLab-layerBar' +
              (bar.flag ? ` jp-mod-${bar.flag}` : '') +
              (bar.present ? '' : ' jp-mod-absent') +
              (bar.id === captureId ? ' jp-mod-current' : '')
            }
            data-capture-id={bar.id}
            data-flag={bar.flag}
            title={describeBar(bar, i)}
            aria-label={describeBar(bar, i)}
            disabled={!bar.present}
            onMouseEnter={() => setHover(i)}
            onMouseLeave={() => setHover(null)}
            onClick={() => open(bar)}
          >
            <span
              className="jp-NopdbLab-layerBar-fill"
              style={{ height: `${Math.round(heights[i] * 100)}%` }}
            />
          </button>
        ))}
      </div>
      <div className="jp-NopdbLab-layerStrip-readout" role="status">
        {hover !== null
          ? describeBar(layers[hover], hover)
          : 'Hover a bar for its statistics; click it to open its gradient.'}
      </div>
    </div>
  );
}
