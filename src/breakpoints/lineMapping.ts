/**
 * Following a line through an edit of a cell's text, given the edit as the Yjs text
 * delta the shared model reports (`retain`/`delete`/`insert` operations on the old text).
 *
 * A breakpoint keeps pointing at the same statement when lines are inserted or removed
 * above it, when its own line is edited, or when text is typed at its start. When all
 * of its line's text was deleted (the whole source replaced, as formatters do), it
 * follows the line's text if exactly one line of the new text reads the same; otherwise
 * it is dropped.
 */

/** A Yjs text delta, as in `@jupyter/ydoc`'s `SourceChange`. */
export type TextDelta = ReadonlyArray<{
  insert?: string | unknown;
  delete?: number;
  retain?: number;
}>;

function insertLength(insert: unknown): number {
  return typeof insert === 'string' ? insert.length : 1;
}

/**
 * Where offset `pos` of the old text ends up. Text inserted exactly at `pos` goes
 * before it when `assoc` > 0 (the position moves past it), after it otherwise; a
 * deleted position collapses to where the deletion was.
 */
export function mapOffset(delta: TextDelta, pos: number, assoc = 1): number {
  let oldPos = 0;
  let newPos = 0;
  for (const op of delta) {
    if (op.retain !== undefined) {
      if (pos < oldPos + op.retain) {
        return newPos + (pos - oldPos);
      }
      oldPos += op.retain;
      newPos += op.retain;
    } else if (op.delete !== undefined) {
      if (pos < oldPos + op.delete) {
        return newPos;
      }
      oldPos += op.delete;
    } else if (op.insert !== undefined) {
      if (pos === oldPos && assoc <= 0) {
        return newPos;
      }
      newPos += insertLength(op.insert);
    }
  }
  return newPos + (pos - oldPos);
}

/** Whether every character of the old range [from, to) was deleted. */
export function rangeDeleted(
  delta: TextDelta,
  from: number,
  to: number
): boolean {
  if (to <= from) {
    return false;
  }
  let oldPos = 0;
  let deleted = 0;
  for (const op of delta) {
    if (op.retain !== undefined) {
      oldPos += op.retain;
    } else if (op.delete !== undefined) {
      const start = Math.max(from, oldPos);
      const end = Math.min(to, oldPos + op.delete);
      deleted += Math.max(0, end - start);
      oldPos += op.delete;
    }
    if (oldPos >= to) {
      break;
    }
  }
  return deleted === to - from;
}

/** Offsets where each line starts (line 1 at index 0). */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) {
    starts.push(i + 1);
  }
  return starts;
}

/**
 * The line (1-based) of the new text where old line `line` is now, or null when the
 * line's text was deleted (or the line no longer exists).
 */
export function mapLine(
  oldText: string,
  newText: string,
  delta: TextDelta,
  line: number
): number | null {
  const starts = lineStarts(oldText);
  if (line < 1 || line > starts.length) {
    return null;
  }
  const from = starts[line - 1];
  const to = line < starts.length ? starts[line] - 1 : oldText.length;
  // the statement starts at the first non-blank character: text typed before it
  // (indentation, or whole new lines) pushes the breakpoint along with the statement
  let first = from;
  while (first < to && (oldText[first] === ' ' || oldText[first] === '\t')) {
    first++;
  }
  if (rangeDeleted(delta, first, to)) {
    const text = oldText.slice(first, to).trim();
    const same = newText
      .split('\n')
      .map((candidate, index) => (candidate.trim() === text ? index + 1 : 0))
      .filter(index => index > 0);
    return text && same.length === 1 ? same[0] : null;
  }
  const pos = Math.min(mapOffset(delta, first, 1), newText.length);
  let newLine = 1;
  for (let i = newText.indexOf('\n'); i !== -1 && i < pos;) {
    newLine++;
    i = newText.indexOf('\n', i + 1);
  }
  return newLine;
}
