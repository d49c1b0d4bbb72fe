/**
 * Types of the nopdb-lab kernel protocol (see docs/protocol.md), generated at build time
 * from its JSON Schema, `nopdb_lab/jupyter/protocol.schema.json` (`jlpm build:protocol`
 * writes `protocol.generated.ts`). This module names them for the front end and adds
 * the version check.
 *
 * The kernel side lives in `nopdb_lab/jupyter/`; both sides must agree on the major
 * `PROTOCOL_VERSION` and on the comm target name.
 */
import type * as Schema from './protocol.generated';
import {
  SCHEMA_COMM_TARGET,
  SCHEMA_PROTOCOL_VERSION
} from './protocol.generated';

/**
 * The protocol version this front end speaks (semantic versioning: a kernel with
 * another major version cannot be talked to). Kernels before 2.0.0 sent the integer 1.
 */
export const PROTOCOL_VERSION: string = SCHEMA_PROTOCOL_VERSION;

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
export const COMM_TARGET: string = SCHEMA_COMM_TARGET;

/** Code run silently in every Python kernel to start the kernel service. */
export const BOOTSTRAP_CODE =
  'import nopdb_lab.jupyter as _nopdb_lab_service\n' +
  '_nopdb_lab_service.start()\n' +
  'del _nopdb_lab_service';

/** The kind of a capture: a captured call, a breakpoint hit, an attention or stack record. */
export type CaptureKind = Schema.CaptureKind;

/** One row of the capture list (a "brief"). */
export type ICaptureBrief = Schema.CaptureBrief;

/** A failing breakpoint action recorded on a hit. */
export type IActionError = Schema.ActionError;

/** A kernel-side summary of one value. */
export type ISummary = Schema.ValueSummary;

/** One frame of a captured stack. */
export type IStackFrame = Schema.StackFrame;

/** Everything the details view shows for one capture. */
export type ICaptureDetail = Schema.CaptureDetail;

/** A child of a container value. */
export type IChild = Schema.Child;

/** One step of a path into a capture: `["locals", "attn", 0]`. */
export type PathStep = Schema.PathStep;

/**
 * The result of `hello`. Its `protocol` is a semver string; a kernel from before
 * protocol 2.0.0 sends the integer 1 (and may lack `attention_capture`), so the code
 * that reads them takes both.
 */
export type IHello = Omit<
  Schema.HelloResult,
  'protocol' | 'attention_capture'
> & {
  protocol: string | number;
  /** Whether SDPA calls are being recorded (the panel's toggle). */
  attention_capture?: boolean;
};

/**
 * What the front end asks the kernel to install: one of `source` (a cell) or `file`.
 * The schema lets the kernel default the options; this front end always sends them.
 */
export type IBreakpointSpec = Schema.BreakpointSpec &
  Required<
    Pick<
      Schema.BreakpointSpec,
      'enabled' | 'condition' | 'evals' | 'exec' | 'keep_locals' | 'max_hits'
    >
  >;

/** Where a breakpoint stands in the kernel. */
export type BreakpointStatus = Schema.BreakpointStatus;

/** The kernel's report on one breakpoint. */
export type IBreakpointState = Schema.BreakpointState;

/** Requests: op name to [arguments, result] (from the schema's `x-ops`). */
export type IRequests = Schema.Ops;

export type RequestName = keyof IRequests;
export type RequestArgs<K extends RequestName> = IRequests[K][0];
export type RequestResult<K extends RequestName> = IRequests[K][1];

/** Events the kernel pushes (batched: consecutive events of one kind are merged). */
export type ProtocolEvent = Schema.ProtocolEvent;

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
