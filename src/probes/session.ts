/**
 * A notebook's probes, seen from the front end: the comm ops (list, edit, undo, reset,
 * delta) and the two long-running actions, re-run and attribute, which are NOT comm
 * requests: they run as silent execute requests on the notebook's kernel, so the
 * notebook's stop button interrupts them and their errors come back in the reply.
 * Everything open on a probe listens to `runCompleted` / `attributed` to refresh.
 */
import { KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { ProtocolClient } from '../kernel/client';
import { ProtocolEvent, RequestArgs, RequestResult } from '../kernel/protocol';

export type IProbeInfo = RequestResult<'probe_list'>['probes'][number];
export type IEditState = RequestResult<'probe_edit'>;
export type IDelta = RequestResult<'probe_delta'>;

/** What a silent execute needs of the kernel (a Kernel.IKernelConnection, or a fake). */
export interface IExecutor {
  requestExecute(
    content: KernelMessage.IExecuteRequestMsg['content'],
    disposeOnDone?: boolean
  ): { done: Promise<KernelMessage.IExecuteReplyMsg> };
  interrupt(): Promise<void>;
}

/** What the session needs of a notebook's connection (a KernelBridge, or a fake). */
export interface IProbeConnection {
  readonly client: Pick<ProtocolClient, 'request' | 'eventReceived'> | null;
  /** The notebook's kernel, for silent execute requests. */
  readonly executor: IExecutor | null;
}

/** A failed silent execute: the kernel's exception, `interrupted` for the stop button. */
export class KernelRunError extends Error {
  constructor(
    readonly ename: string,
    readonly evalue: string
  ) {
    super(
      ename === 'KeyboardInterrupt'
        ? 'Interrupted (the kernel is still running; nothing was recorded).'
        : `${ename}: ${evalue}`
    );
  }

  get interrupted(): boolean {
    return this.ename === 'KeyboardInterrupt';
  }
}

/** Attribution settings the Attribute… dialog offers. */
export interface IAttributeOptions {
  method: string;
  input?: string;
  steps?: number;
  baseline?: number | 'blur';
  internal_batch_size?: number | null;
  /** The run to attribute (the newest when absent). */
  run?: number;
}

export interface IRunCompleted {
  probe: string;
  run: number;
  record: number;
}

export interface IAttributed {
  probe: string;
  record: number;
  options: IAttributeOptions;
}

/** The parts of a run capture's locals that belong to one input (`[part, input]`). */
export const RUN_INPUT_PARTS = ['inputs', 'gradients', 'changed', 'delta'];

/** The input a value of a run capture belongs to, or null (the output, counters). */
export function runInputOf(path: readonly unknown[]): string | null {
  return path.length === 3 &&
    path[0] === 'locals' &&
    RUN_INPUT_PARTS.includes(String(path[1])) &&
    typeof path[2] === 'string'
    ? path[2]
    : null;
}

/** Python string literal for `text` (JSON strings are valid Python literals). */
export function pyString(text: string): string {
  return JSON.stringify(text);
}

/** The Python call that runs an attribution with progress under `token`. */
export function attributeCode(
  token: string,
  probe: string,
  options: IAttributeOptions
): string {
  const kwargs = [`method=${pyString(options.method)}`];
  if (options.input) {
    kwargs.push(`input=${pyString(options.input)}`);
  }
  if (options.steps !== undefined) {
    kwargs.push(`steps=${Math.round(options.steps)}`);
  }
  if (options.baseline !== undefined) {
    kwargs.push(
      `baseline=${
        options.baseline === 'blur' ? '"blur"' : Number(options.baseline)
      }`
    );
  }
  if (options.internal_batch_size) {
    kwargs.push(
      `internal_batch_size=${Math.round(options.internal_batch_size)}`
    );
  }
  if (options.run !== undefined) {
    kwargs.push(`run=${Math.round(options.run)}`);
  }
  return (
    'import nopdb_lab.jupyter.probe_runs as _nopdb_probe_runs\n' +
    `_nopdb_attribution = _nopdb_probe_runs.attribute(${pyString(token)}, ` +
    `${pyString(probe)}, ${kwargs.join(', ')})`
  );
}

let tokens = 0;

/** One notebook's probes. */
export class ProbeSession {
  constructor(readonly connection: IProbeConnection) {}

  /** A re-run finished (from any view on this notebook). */
  get runCompleted(): ISignal<this, IRunCompleted> {
    return this._runCompleted;
  }

  /** An attribution finished. */
  get attributed(): ISignal<this, IAttributed> {
    return this._attributed;
  }

  /** Whether a re-run or attribution of this session is running in the kernel. */
  get busy(): boolean {
    return this._busy > 0;
  }

  async list(): Promise<IProbeInfo[]> {
    return (await this._client().request('probe_list', {})).result.probes;
  }

  async info(name: string): Promise<IProbeInfo> {
    const found = (await this.list()).find(p => p.name === name);
    if (!found) {
      throw new Error(`The kernel has no probe named ${JSON.stringify(name)}.`);
    }
    return found;
  }

  async edit(args: RequestArgs<'probe_edit'>): Promise<IEditState> {
    return (await this._client().request('probe_edit', args)).result;
  }

  async undo(probe: string): Promise<IEditState> {
    return (await this._client().request('probe_undo', { probe })).result;
  }

  async reset(probe: string): Promise<IEditState> {
    return (await this._client().request('probe_reset', { probe })).result;
  }

  async delta(args: RequestArgs<'probe_delta'>): Promise<IDelta> {
    return (await this._client().request('probe_delta', args)).result;
  }

  /**
   * `nopdb_lab.get_probe(name).rerun()` as a silent execute request; resolves with the
   * new run, or rejects with the kernel's error (KernelRunError).
   */
  async rerun(probe: string): Promise<IRunCompleted> {
    const code =
      'import nopdb_lab as _nopdb_lab\n' +
      `_nopdb_lab.get_probe(${pyString(probe)}).rerun()`;
    const out = await this._execute(code, {
      run:
        `[_nopdb_lab.get_probe(${pyString(probe)}).last.number, ` +
        `_nopdb_lab.get_probe(${pyString(probe)}).last.record.id]`
    });
    const [run, record] = JSON.parse(out.run) as [number, number];
    const done = { probe, run, record };
    this._runCompleted.emit(done);
    return done;
  }

  /**
   * Attribute the probe's newest run as a silent execute request, calling `progress`
   * as the kernel reports forward passes; resolves with the attribution's record id.
   */
  async attribute(
    probe: string,
    options: IAttributeOptions,
    progress?: (done: number, total: number) => void
  ): Promise<IAttributed> {
    const token = `attr-${Date.now()}-${++tokens}`;
    const client = this._client();
    const onEvent = (_: unknown, event: ProtocolEvent) => {
      if (event.event === 'probe_progress' && event.token === token) {
        progress?.(event.done, event.total);
      }
    };
    client.eventReceived.connect(onEvent);
    try {
      const out = await this._execute(attributeCode(token, probe, options), {
        record: '_nopdb_attribution'
      });
      const done = { probe, record: Number(out.record), options };
      this._attributed.emit(done);
      return done;
    } finally {
      client.eventReceived.disconnect(onEvent);
    }
  }

  /** The probe and method of attribution record `record` (made anywhere, Python too). */
  async attributionOf(
    record: number
  ): Promise<{ probe: string; method: string; run: number }> {
    const att = `__import__("nopdb_lab").store[${Math.round(record)}].attribution`;
    const out = await this._execute('', {
      info:
        '(lambda a: __import__("IPython.display", fromlist=["JSON"]).JSON(' +
        `{"probe": a.probe, "method": a.method, "run": a.run}))(${att})`
    });
    return JSON.parse(out.info);
  }

  /** The notebook's stop button, from a view's Cancel: interrupt the kernel. */
  async interrupt(): Promise<void> {
    await this.connection.executor?.interrupt();
  }

  private async _execute(
    code: string,
    expressions: Record<string, string>
  ): Promise<Record<string, string>> {
    const executor = this.connection.executor;
    if (!executor) {
      throw new Error('The notebook has no running kernel.');
    }
    this._busy++;
    try {
      const reply = await executor.requestExecute(
        {
          code,
          silent: true,
          store_history: false,
          allow_stdin: false,
          stop_on_error: false,
          user_expressions: expressions
        },
        true
      ).done;
      const content = reply.content;
      if (content.status === 'error') {
        const { ename, evalue } = content as KernelMessage.IReplyErrorContent;
        throw new KernelRunError(ename, evalue);
      }
      if (content.status !== 'ok') {
        throw new KernelRunError('Aborted', 'the kernel aborted the request');
      }
      const values: Record<string, string> = {};
      const results = (
        content as KernelMessage.IExecuteReplyMsg['content'] & {
          user_expressions: Record<string, any>;
        }
      ).user_expressions;
      for (const key of Object.keys(expressions)) {
        const result = results?.[key];
        if (!result || result.status !== 'ok') {
          throw new KernelRunError(
            result?.ename ?? 'Error',
            result?.evalue ?? `reading ${key} after the run failed`
          );
        }
        // JSON when the expression gave an IPython.display.JSON, else its repr
        const json = result.data['application/json'];
        values[key] =
          json !== undefined
            ? JSON.stringify(json)
            : String(result.data['text/plain']);
      }
      return values;
    } finally {
      this._busy--;
    }
  }

  private _client(): Pick<ProtocolClient, 'request' | 'eventReceived'> {
    const client = this.connection.client;
    if (!client) {
      throw new Error('The kernel is not connected.');
    }
    return client;
  }

  private _busy = 0;
  private readonly _runCompleted = new Signal<this, IRunCompleted>(this);
  private readonly _attributed = new Signal<this, IAttributed>(this);
}

const sessions = new WeakMap<object, ProbeSession>();

/** The one ProbeSession of a connection (so every view on a notebook shares signals). */
export function probeSessionOf(
  key: object,
  connection: IProbeConnection
): ProbeSession {
  let session = sessions.get(key);
  if (!session) {
    session = new ProbeSession(connection);
    sessions.set(key, session);
  }
  return session;
}
