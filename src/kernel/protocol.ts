/**
 * Types of the nopdb-lab kernel protocol (see docs/protocol.md).
 *
 * The kernel side lives in `nopdb_lab/jupyter/`; both sides must agree on the major
 * `PROTOCOL_VERSION` and on the comm target name.
 */

/**
 * The protocol version this front end speaks (semantic versioning: a kernel with
 * another major version cannot be talked to). Kernels before 2.0.0 sent the integer 1.
 */
export const PROTOCOL_VERSION = '2.0.0';

/** The major version of a protocol version as either side sends it (1 for the old integer). */
export function protocolMajor(version: unknown): number | null {
  if (typeof version === 'number' && Number.isInteger(version)) {
    return version;
  }
  if (typeof version === 'string') {
    const match = /^(\d+)\.\d+\.\d+/.exec(version);
    return match ? Number(match[1]) : null;
  }
  return null;
}

/**
 * How a kernel's protocol version compares with this front end's: `null` when they can
 * talk (same major), `older`/`newer` when the kernel's major is lower/higher, `unknown`
 * when it is not a version at all.
 */
export function compareProtocol(
  kernelVersion: unknown
): 'older' | 'newer' | 'unknown' | null {
  const theirs = protocolMajor(kernelVersion);
  const ours = protocolMajor(PROTOCOL_VERSION)!;
  if (theirs === null) {
    return 'unknown';
  }
  return theirs === ours ? null : theirs < ours ? 'older' : 'newer';
}

/** The comm target the kernel service registers. */
export const COMM_TARGET = 'nopdb_lab';

/** Code run silently in every Python kernel to start the kernel service. */
export const BOOTSTRAP_CODE =
  'import nopdb_lab.kernel_service as _nopdb_lab_service\n' +
  '_nopdb_lab_service.start()\n' +
  'del _nopdb_lab_service';

/** The kind of a capture: a captured call, a breakpoint hit, or an attention record. */
export type CaptureKind = 'call' | 'hit' | 'attention' | 'stack';

/** One row of the capture list (a "brief"). */
export interface ICaptureBrief {
  id: number;
  kind: CaptureKind;
  name: string;
  qualname: string;
  file: string;
  line: number;
  /** Seconds since the epoch. */
  time: number;
  thread: string;
  /** Tensor and array bytes the record holds. */
  nbytes: number;
  /** Calls only: when the call ended (null while a generator is suspended). */
  end_time?: number | null;
  /** Calls only: repr of the exception the call raised. */
  exception?: string | null;
  /** Hits and attention records: in a brief, how many actions failed; in a detail, the list. */
  errors?: number | IActionError[];
  /** Hits: the id of the front-end breakpoint that fired (null if set in code). */
  breakpoint?: string | null;
}

/** A failing breakpoint action recorded on a hit. */
export interface IActionError {
  action: string;
  message: string;
}

/** A kernel-side summary of one value. */
export interface ISummary {
  type: string;
  class?: string;
  repr?: string;
  shape?: number[];
  dtype?: string;
  device?: string;
  numel?: number;
  min?: number | null;
  max?: number | null;
  mean?: number | null;
  std?: number | null;
  nan?: number;
  inf?: number;
  length?: number;
  /** Python that reaches the value from the kernel namespace. */
  expression?: string;
}

/** One frame of a captured stack. */
export interface IStackFrame {
  file: string;
  line: number;
  name: string;
}

/** Everything the details view shows for one capture. */
export interface ICaptureDetail extends ICaptureBrief {
  args?: Record<string, ISummary>;
  locals: Record<string, ISummary>;
  /** Hits: each eval expression's value at this hit. */
  evals?: Record<string, ISummary>;
  return_value?: ISummary;
  stack: IStackFrame[];
}

/** A child of a container value. */
export interface IChild {
  key: string | number;
  summary: ISummary;
}

/** One step of a path into a capture: `["locals", "attn", 0]`. */
export type PathStep = string | number;

/** The result of `hello`. */
export interface IHello {
  /** The kernel's protocol version: a semver string (an integer before 2.0.0). */
  protocol: string | number;
  version: string;
  backend: string;
  python: string;
  /** Whether SDPA calls are being recorded (the panel's toggle). */
  attention_capture?: boolean;
  store: { count: number; nbytes: number; budget: number };
}

/** What the front end asks the kernel to install: one of `source` (a cell) or `file`. */
export interface IBreakpointSpec {
  id: string;
  line: number;
  /** A notebook cell's current text; the kernel finds the file ipykernel compiles it to. */
  source?: string;
  /** A file as the kernel names it (a library module). */
  file?: string;
  enabled: boolean;
  condition: string;
  evals: string[];
  exec: string;
  keep_locals: boolean;
  max_hits: number | null;
  /** A capture id whose `self` the breakpoint is limited to. */
  instance?: number | null;
  /** The notebook that set it: a sync replaces only its owner's breakpoints. */
  owner?: string;
}

/** Where a breakpoint stands in the kernel. */
export type BreakpointStatus = 'active' | 'pending' | 'disabled' | 'error';

/** The kernel's report on one breakpoint. */
export interface IBreakpointState {
  id: string;
  state: BreakpointStatus;
  message: string;
  /** The field an error is about: line, source, file, condition, evals.N, exec, max_hits, instance. */
  field: string;
  hits: number;
  file: string | null;
  line: number;
  /** The function the line belongs to, when it is inside one. */
  function: string | null;
}

/** Requests: op name to [arguments, result]. */
export interface IRequests {
  hello: [Record<string, never>, IHello];
  list: [Record<string, never>, { captures: ICaptureBrief[] }];
  get: [{ id: number }, ICaptureDetail];
  value: [
    { id: number; path: PathStep[] },
    { summary: ISummary; expression: string; children: IChild[] | null }
  ];
  tensor: [
    {
      id: number;
      path: PathStep[];
      index?: number[];
      dtype?: 'float32' | 'float16' | 'uint8';
    },
    { shape: number[]; dtype: string; expression: string }
  ];
  heatmap: [
    {
      id: number;
      path: PathStep[];
      rows_dim: number;
      cols_dim: number;
      /** Index of every other dimension, keyed by the dimension as a string. */
      index: Record<string, number>;
      max_size: number;
      reduce: 'max' | 'mean';
      mean_dims?: number[];
      grid_dims?: number[];
    },
    {
      shape: number[];
      /** The grid's shape (one map per index of grid_dims), or null for one map. */
      grid: number[] | null;
      rows: number;
      cols: number;
      row_step: number;
      col_step: number;
      reduce: 'max' | 'mean' | null;
      min: number | null;
      max: number | null;
      nan: number;
      inf: number;
      expression: string;
    }
  ];
  labels: [{ expression: string }, { labels: string[] }];
  image: [{ expression: string }, { width: number; height: number }];
  stack: [{ id: number; path: PathStep[] }, ICaptureBrief];
  attention_capture: [{ enabled: boolean }, { enabled: boolean }];
  source: [
    { file: string },
    {
      file: string;
      text: string;
      /** Whether the file is a notebook cell's code (ipykernel's file for that text). */
      cell?: boolean;
    }
  ];
  delete: [{ id: number }, Record<string, never>];
  clear: [Record<string, never>, Record<string, never>];
  set_budget: [{ nbytes: number }, { budget: number }];
  breakpoint_set: [{ breakpoint: IBreakpointSpec }, IBreakpointState];
  breakpoint_remove: [{ id: string }, Record<string, never>];
  breakpoint_sync: [
    { breakpoints: IBreakpointSpec[]; owner: string },
    { breakpoints: IBreakpointState[] }
  ];
  breakpoint_list: [Record<string, never>, { breakpoints: IBreakpointState[] }];
  locate: [
    { name: string },
    { name: string; file: string; line: number; kind: string }
  ];
}

export type RequestName = keyof IRequests;
export type RequestArgs<K extends RequestName> = IRequests[K][0];
export type RequestResult<K extends RequestName> = IRequests[K][1];

/** Events the kernel pushes (batched: consecutive events of one kind are merged). */
export type ProtocolEvent =
  | { event: 'captures_added'; captures: ICaptureBrief[] }
  | { event: 'captures_evicted'; ids: number[]; message: string }
  | { event: 'captures_deleted'; ids: number[] }
  | { event: 'breakpoints_changed'; breakpoints: IBreakpointState[] };

/** A message as it arrives from the kernel (`data` of a comm message). */
export interface IIncoming {
  v?: string | number;
  re?: string;
  ok?: boolean;
  result?: unknown;
  error?: { type: string; message: string };
  event?: string;
  [key: string]: unknown;
}
