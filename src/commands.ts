/**
 * Command ids: every user action of nopdb-lab is a command, so it can be bound to keys,
 * found in the palette (those that make sense without a click's arguments) and tested.
 */
export namespace CommandIDs {
  /** Show the capture browser sidebar. */
  export const openBrowser = 'nopdb-lab:open-capture-browser';
  /** Delete every capture of the current notebook (asks first). */
  export const clearCaptures = 'nopdb-lab:clear-captures';
  /** Delete one capture; args `{ captureId }`. */
  export const deleteCapture = 'nopdb-lab:delete-capture';
  /** Open a dotted name's source; args `{ name? }` (asks without one). */
  export const openByName = 'nopdb-lab:open-source-by-name';
  /** Open a file the kernel runs at a line; args `{ file, line }`. */
  export const openSource = 'nopdb-lab:open-source';
  /** Toggle a breakpoint at the cursor (F9). */
  export const toggleBreakpoint = 'nopdb-lab:toggle-breakpoint';
  /** Show a breakpoint's place; args `{ id }`. */
  export const revealBreakpoint = 'nopdb-lab:reveal-breakpoint';
  /** Remove every breakpoint of the current notebook (asks first). */
  export const removeAllBreakpoints = 'nopdb-lab:remove-all-breakpoints';
  /** Open a captured value as a heatmap; args `{ captureId, path, expression, shape, signed }`. */
  export const openHeatmap = 'nopdb-lab:open-heatmap';
  /** Open the attention-sink grid of an attention record's block; args `{ captureId, k? }`. */
  export const attentionSinks = 'nopdb-lab:attention-sinks';
  /** Stack a value across the captures of its function; args `{ captureId, path }`. */
  export const stackAcross = 'nopdb-lab:stack-across';
  /** Copy Python (an expression) to the clipboard; args `{ expression }`. */
  export const copyExpression = 'nopdb-lab:copy-expression';
  /** Insert a code cell below the active one; args `{ code }`. */
  export const insertCell = 'nopdb-lab:insert-cell';
  /** Open the gradient flow of captures; args `{ captureIds? , stackId?, title? }`. */
  export const openGradientFlow = 'nopdb-lab:open-gradient-flow';
}

/** The palette category of nopdb-lab's commands. */
export const PALETTE_CATEGORY = 'nopdb-lab';
