/**
 * The "Gradients" section of a capture's details: every value asked for with `grads`,
 * its status (or why it has no gradient), the gradient's statistics, buttons that open
 * the gradient, |gradient| or gradient × value as a heatmap, and the layer strip.
 */
import * as React from 'react';
import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import { ICaptureDetail } from '../kernel/protocol';
import { formatShape } from '../ui/format';
import { LayerStrip } from './LayerStrip';

type Row = NonNullable<ICaptureDetail['gradients']>[number];

/** The heatmap views a gradient offers: `of`, the button's text and its tooltip. */
export const GRADIENT_VIEWS: {
  of: 'grad' | 'abs_grad' | 'grad_x_value';
  label: string;
  title: string;
}[] = [
  { of: 'grad', label: '∇', title: 'Open the gradient as a heatmap' },
  { of: 'abs_grad', label: '|∇|', title: 'Open |gradient| as a heatmap' },
  {
    of: 'grad_x_value',
    label: '∇×x',
    title: 'Open gradient × value as a heatmap (a first-order attribution)'
  }
];

function fmt(x: number): string {
  return x === 0 ? '0' : x.toPrecision(3);
}

function GradientRow(props: {
  row: Row;
  detail: ICaptureDetail;
  bridge: KernelBridge;
  commands: CommandRegistry;
}): React.ReactElement {
  const { row, detail, bridge, commands } = props;
  const [strip, setStrip] = React.useState(false);
  const ok = row.status === 'ok' && row.summary !== undefined;
  const shape = row.summary?.shape ?? [];
  const expression = row.summary?.expression ?? '';
  const label = row.path.filter(step => step !== 'locals').join('.');
  return (
    <div className="jp-NopdbLab-gradRow" data-path={JSON.stringify(row.path)}>
      <div className="jp-NopdbLab-valueRow">
        <span className="jp-NopdbLab-valueName">∇ {label}</span>
        {ok ? (
          <span className="jp-NopdbLab-shape">{formatShape(row.summary!)}</span>
        ) : null}
        <span className="jp-NopdbLab-gradSpacer" />
        {ok ? (
          <span className="jp-NopdbLab-valueActions jp-NopdbLab-gradActions">
            {shape.length >= 1
              ? GRADIENT_VIEWS.map(view => (
                  <button
                    key={view.of}
                    className="jp-NopdbLab-textButton"
                    title={`${view.title}: ${expression}`}
                    aria-label={`${view.title} (${label})`}
                    data-of={view.of}
                    onClick={() =>
                      void commands.execute(CommandIDs.openHeatmap, {
                        captureId: detail.id,
                        path: row.path,
                        expression:
                          view.of === 'grad'
                            ? expression
                            : view.of === 'abs_grad'
                              ? `${expression}.abs()`
                              : `${expression} * nopdb_lab.store[${detail.id}]` +
                                row.path
                                  .map((s, i) =>
                                    i === 0 ? `.${s}` : `[${JSON.stringify(s)}]`
                                  )
                                  .join(''),
                        shape,
                        signed:
                          view.of === 'abs_grad'
                            ? false
                            : view.of === 'grad'
                              ? (row.summary?.min ?? 0) < 0
                              : true,
                        of: view.of
                      })
                    }
                  >
                    {view.label}
                  </button>
                ))
              : null}
            <button
              className={`jp-NopdbLab-textButton${strip ? ' jp-mod-active' : ''}`}
              aria-pressed={strip}
              title="Show ‖g‖₂ of this value in every layer (the captures of this function)"
              aria-label={`Layer strip (${label})`}
              onClick={() => setStrip(!strip)}
            >
              layers
            </button>
          </span>
        ) : null}
      </div>
      <div className="jp-NopdbLab-gradLine">
        {ok && row.stats ? (
          <>
            ‖g‖₂ {fmt(row.stats.norm)} · mean |g| {fmt(row.stats.mean_abs)} ·
            max |g| {fmt(row.stats.max_abs)}
            {row.stats.nan || row.stats.inf
              ? ` · NaN ${row.stats.nan} · Inf ${row.stats.inf}`
              : ''}
          </>
        ) : (
          <span className="jp-NopdbLab-gradStatus">{row.status}</span>
        )}
      </div>
      {strip ? (
        <LayerStrip
          bridge={bridge}
          commands={commands}
          captureId={detail.id}
          path={row.path}
          version={detail.grads?.received}
        />
      ) : null}
    </div>
  );
}

export function GradientsSection(props: {
  detail: ICaptureDetail;
  bridge: KernelBridge;
  commands: CommandRegistry;
}): React.ReactElement | null {
  const rows = props.detail.gradients;
  if (!rows) {
    return null;
  }
  return (
    <section className="jp-NopdbLab-section" aria-label="Gradients">
      <h3 className="jp-NopdbLab-sectionTitle">Gradients</h3>
      {rows.length ? (
        rows.map(row => (
          <GradientRow
            key={row.key}
            row={row}
            detail={props.detail}
            bridge={props.bridge}
            commands={props.commands}
          />
        ))
      ) : (
        <div className="jp-NopdbLab-none">
          no tensor asked for takes part in autograd
        </div>
      )}
    </section>
  );
}

/**
 * A stack record's gradients: the layer strip of its sources (one bar per stacked
 * capture) for the path it stacked. Loaded on request (a stack of captures made without
 * `grads` has none, and the strip then says so and how to get them).
 */
export function StackGradientsSection(props: {
  detail: ICaptureDetail;
  bridge: KernelBridge;
  commands: CommandRegistry;
}): React.ReactElement | null {
  const { detail, bridge, commands } = props;
  const [open, setOpen] = React.useState(false);
  if (detail.kind !== 'stack') {
    return null;
  }
  return (
    <section className="jp-NopdbLab-section" aria-label="Gradients by layer">
      <h3 className="jp-NopdbLab-sectionTitle">Gradients</h3>
      <div className="jp-NopdbLab-valueRow">
        <span className="jp-NopdbLab-gradLine">
          ‖g‖₂ of the stacked value in each source capture
        </span>
        <span className="jp-NopdbLab-gradSpacer" />
        <button
          className={`jp-NopdbLab-textButton${open ? ' jp-mod-active' : ''}`}
          aria-pressed={open}
          title="Show ‖g‖₂ of the stacked value in every source capture (one bar per layer)"
          aria-label="Layer strip (stack)"
          onClick={() => setOpen(!open)}
        >
          layers
        </button>
      </div>
      {open ? (
        <LayerStrip
          bridge={bridge}
          commands={commands}
          captureId={detail.id}
          path={[]}
        />
      ) : null}
    </section>
  );
}
