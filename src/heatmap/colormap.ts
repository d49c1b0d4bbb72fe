/**
 * Colour mapping for the heatmap viewer: colormaps from d3-scale-chromatic sampled into
 * 256-entry lookup tables, and value → [0, 1] normalisation (linear or log, global or per
 * row, diverging around 0 for signed data). Pure functions, tested with Jest.
 */
import {
  interpolateMagma,
  interpolateRdBu,
  interpolateViridis
} from 'd3-scale-chromatic';

/** Colormaps offered; `RdBu` is diverging (blue below 0, red above). */
export const COLORMAPS = {
  viridis: interpolateViridis,
  magma: interpolateMagma,
  RdBu: (t: number) => interpolateRdBu(1 - t)
};

export type ColormapName = keyof typeof COLORMAPS;
export type Scale = 'linear' | 'log';
export type Normalisation = 'global' | 'row';

/** Colour of NaN (and of values a log scale cannot show): a neutral grey. */
export const NAN_RGB: [number, number, number] = [128, 128, 128];

/** 256 RGB triples sampled from a colormap. */
export function lookupTable(name: ColormapName): Uint8ClampedArray {
  const interpolate = COLORMAPS[name];
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = parseRgb(interpolate(i / 255));
    table.set([r, g, b], i * 3);
  }
  return table;
}

/** Parse `rgb(r, g, b)` or `#rrggbb` (what d3 interpolators return). */
export function parseRgb(color: string): [number, number, number] {
  const rgb = /rgb\((\d+),\s*(\d+),\s*(\d+)\)/.exec(color);
  if (rgb) {
    return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  }
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color);
  if (hex) {
    return [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16)];
  }
  throw new Error(`cannot parse colour ${color}`);
}

/** How values map to [0, 1]. */
export interface INormaliseOptions {
  scale: Scale;
  normalisation: Normalisation;
  /** Centre 0 at 0.5 (for a diverging colormap on signed data). */
  diverging: boolean;
  /** Use this range instead of the values' own (a zoomed region in its map's colours). */
  fixed?: IRange;
}

/** The value range used for the colour bar (of the whole map). */
export interface IRange {
  low: number;
  high: number;
}

/**
 * Positions in [0, 1] for every cell (NaN where a value cannot be shown: NaN, ±Inf, or
 * ≤ 0 on a log scale), and the range they span.
 */
export function normalise(
  values: Float32Array,
  rows: number,
  cols: number,
  options: INormaliseOptions
): { positions: Float32Array; range: IRange } {
  const transform =
    options.scale === 'log'
      ? (v: number) => (v > 0 ? Math.log10(v) : NaN)
      : (v: number) => v;
  const transformed = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    transformed[i] = Number.isFinite(v) ? transform(v) : NaN;
  }
  const positions = new Float32Array(values.length);
  const whole = options.fixed ?? extent(transformed, 0, transformed.length);
  const spans =
    options.normalisation === 'row'
      ? Array.from({ length: rows }, (_, r) =>
          extent(transformed, r * cols, (r + 1) * cols)
        )
      : null;
  for (let r = 0; r < rows; r++) {
    const { low, high } = spans ? spans[r] : whole;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      positions[i] = position(transformed[i], low, high, options.diverging);
    }
  }
  return { positions, range: whole };
}

function extent(values: Float32Array, start: number, end: number): IRange {
  let low = Infinity;
  let high = -Infinity;
  for (let i = start; i < end; i++) {
    const v = values[i];
    if (v < low) {
      low = v;
    }
    if (v > high) {
      high = v;
    }
  }
  return low <= high ? { low, high } : { low: 0, high: 0 };
}

function position(
  v: number,
  low: number,
  high: number,
  diverging: boolean
): number {
  if (Number.isNaN(v)) {
    return NaN;
  }
  if (diverging) {
    const bound = Math.max(Math.abs(low), Math.abs(high));
    return bound === 0 ? 0.5 : 0.5 + v / (2 * bound);
  }
  return high === low ? 0.5 : (v - low) / (high - low);
}

/** Paint positions into RGBA pixels with a lookup table. */
export function paint(
  positions: Float32Array,
  table: Uint8ClampedArray
): Uint8ClampedArray {
  const pixels = new Uint8ClampedArray(positions.length * 4);
  for (let i = 0; i < positions.length; i++) {
    const t = positions[i];
    const o = i * 4;
    if (Number.isNaN(t)) {
      pixels[o] = NAN_RGB[0];
      pixels[o + 1] = NAN_RGB[1];
      pixels[o + 2] = NAN_RGB[2];
    } else {
      const k = Math.round(Math.min(Math.max(t, 0), 1) * 255) * 3;
      pixels[o] = table[k];
      pixels[o + 1] = table[k + 1];
      pixels[o + 2] = table[k + 2];
    }
    pixels[o + 3] = 255;
  }
  return pixels;
}
