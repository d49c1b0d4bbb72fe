/**
 * Which frames of a capture's stack are the kernel's machinery (IPython, ipykernel,
 * asyncio, tornado, runpy, threading, nopdb-lab itself) and which are the user's code
 * and the libraries it called, so the machinery can be folded behind one line as
 * IPython's `%xmode` and JupyterLab's tracebacks do.
 */

export interface IFrameLike {
  file: string;
  name: string;
  line: number;
}

/** Path parts of the packages that run cells (not the user's code). */
const MACHINERY = [
  /[\\/]IPython[\\/]/,
  /[\\/]ipykernel[\\/]/,
  /[\\/]ipykernel_launcher\.py$/,
  /[\\/]jupyter_client[\\/]/,
  /[\\/]traitlets[\\/]/,
  /[\\/]tornado[\\/]/,
  /[\\/]zmq[\\/]/,
  /[\\/]asyncio[\\/]/,
  /[\\/]concurrent[\\/]futures[\\/]/,
  /[\\/]runpy\.py$/,
  /[\\/]threading\.py$/,
  /[\\/]contextlib\.py$/,
  /[\\/]nopdb_lab[\\/]/,
  /^<frozen runpy>$/
];

/** Whether a frame belongs to the kernel's machinery. */
export function isMachineryFrame(frame: IFrameLike): boolean {
  return MACHINERY.some(pattern => pattern.test(frame.file));
}

/** A run of frames: shown, or folded machinery. */
export type FrameGroup<T> =
  | { kind: 'frame'; frame: T; index: number }
  | { kind: 'folded'; frames: { frame: T; index: number }[] };

/**
 * Frames (innermost first, as shown) grouped so that each run of machinery frames is
 * one folded group. A stack of machinery only is shown as it is (nothing else to show).
 */
export function foldFrames<T extends IFrameLike>(frames: T[]): FrameGroup<T>[] {
  if (frames.every(isMachineryFrame)) {
    return frames.map((frame, index) => ({ kind: 'frame', frame, index }));
  }
  const groups: FrameGroup<T>[] = [];
  frames.forEach((frame, index) => {
    if (!isMachineryFrame(frame)) {
      groups.push({ kind: 'frame', frame, index });
      return;
    }
    const last = groups[groups.length - 1];
    if (last && last.kind === 'folded') {
      last.frames.push({ frame, index });
    } else {
      groups.push({ kind: 'folded', frames: [{ frame, index }] });
    }
  });
  return groups;
}
