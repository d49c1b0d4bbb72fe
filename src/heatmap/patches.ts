/**
 * Geometry of a ViT's tokens: which are prefix tokens (CLS, registers) and which form the
 * square grid of image patches. Pure, tested with Jest.
 */

/** Prefix tokens first, then `side` × `side` patches. */
export interface IPatchLayout {
  prefix: number;
  side: number;
}

/** At most this many prefix tokens (CLS plus registers) are recognised. */
export const MAX_PREFIX = 4;

/** The layout of `tokens` tokens, or null when no square patch grid fits. */
export function patchLayout(tokens: number): IPatchLayout | null {
  for (let prefix = 0; prefix <= MAX_PREFIX && prefix < tokens; prefix++) {
    const side = Math.round(Math.sqrt(tokens - prefix));
    if (side > 1 && side * side === tokens - prefix) {
      return { prefix, side };
    }
  }
  return null;
}

/** Row `query` of a tokens × tokens map, restricted to the patches (side × side). */
export function patchRow(
  values: Float32Array,
  tokens: number,
  query: number,
  layout: IPatchLayout
): Float32Array {
  const start = query * tokens + layout.prefix;
  return values.slice(start, start + layout.side * layout.side);
}

/** The patch under a point given as fractions (0–1) of the image's width and height. */
export function patchAt(fx: number, fy: number, side: number): number {
  const col = Math.min(side - 1, Math.max(0, Math.floor(fx * side)));
  const row = Math.min(side - 1, Math.max(0, Math.floor(fy * side)));
  return row * side + col;
}
