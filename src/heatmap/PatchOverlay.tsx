/**
 * A ViT's attention over its image patches, drawn on the input image: the query token's
 * row of an attention map (CLS by default), reshaped to the patch grid, coloured with the
 * viewer's colormap at the chosen opacity. Clicking a patch makes it the query.
 */
import * as React from 'react';

import { formatNumber } from '../ui/format';
import { normalise, paint } from './colormap';
import { IPatchLayout, patchAt, patchRow } from './patches';

/** An RGB image sent by the kernel. */
export interface IOverlayImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

export function PatchOverlay(props: {
  image: IOverlayImage;
  values: Float32Array;
  tokens: number;
  layout: IPatchLayout;
  query: number;
  opacity: number;
  table: Uint8ClampedArray;
  onPick: (query: number) => void;
  /** Replaces the attention caption (an attribution on the patches says what it is). */
  caption?: React.ReactNode;
}): React.ReactElement {
  const { image, values, tokens, layout, query, opacity, table } = props;
  const canvas = React.useRef<HTMLCanvasElement>(null);
  const row = React.useMemo(
    () => patchRow(values, tokens, query, layout),
    [values, tokens, query, layout]
  );
  React.useEffect(() => {
    const element = canvas.current;
    if (!element) {
      return;
    }
    element.width = image.width;
    element.height = image.height;
    const context = element.getContext('2d')!;
    const rgba = new Uint8ClampedArray(image.width * image.height * 4);
    for (let i = 0, j = 0; i < image.rgb.length; i += 3, j += 4) {
      rgba[j] = image.rgb[i];
      rgba[j + 1] = image.rgb[i + 1];
      rgba[j + 2] = image.rgb[i + 2];
      rgba[j + 3] = 255;
    }
    context.putImageData(new ImageData(rgba, image.width, image.height), 0, 0);
    const side = layout.side;
    const colours = paint(
      normalise(row, side, side, {
        scale: 'linear',
        normalisation: 'global',
        diverging: false
      }).positions,
      table
    );
    const w = image.width / side;
    const h = image.height / side;
    context.globalAlpha = opacity;
    for (let p = 0; p < side * side; p++) {
      context.fillStyle = `rgb(${colours[p * 4]}, ${colours[p * 4 + 1]}, ${colours[p * 4 + 2]})`;
      context.fillRect((p % side) * w, Math.floor(p / side) * h, w, h);
    }
    context.globalAlpha = 1;
    if (query >= layout.prefix) {
      const q = query - layout.prefix;
      context.strokeStyle = 'white';
      context.lineWidth = Math.max(1, image.width / 200);
      context.strokeRect((q % side) * w, Math.floor(q / side) * h, w, h);
    }
  }, [image, row, layout, opacity, table, query]);

  const peak = row.length ? row.indexOf(Math.max(...row)) : -1;
  return (
    <figure className="jp-NopdbLab-overlay">
      <canvas
        ref={canvas}
        aria-label="Patch overlay"
        className="jp-NopdbLab-overlayCanvas"
        onClick={event => {
          const box = event.currentTarget.getBoundingClientRect();
          const patch = patchAt(
            (event.clientX - box.left) / box.width,
            (event.clientY - box.top) / box.height,
            layout.side
          );
          props.onPick(layout.prefix + patch);
        }}
      />
      {props.caption !== undefined ? (
        <figcaption>{props.caption}</figcaption>
      ) : (
        <figcaption>
          query token {query}
          {query < layout.prefix
            ? query === 0
              ? ' (CLS)'
              : ' (prefix)'
            : ' (a patch)'}{' '}
          → {layout.side}×{layout.side} patches; most attended patch {peak} (
          {peak >= 0 ? formatNumber(row[peak]) : '–'}). Click a patch to make it
          the query.
        </figcaption>
      )}
    </figure>
  );
}
