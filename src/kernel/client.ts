/**
 * A transport-independent client for the kernel protocol: request ids, promises that
 * settle on the matching response, structured errors and a signal for pushed events.
 */
import { ISignal, Signal } from '@lumino/signaling';
import { IDisposable } from '@lumino/disposable';

import {
  IIncoming,
  PROTOCOL_VERSION,
  ProtocolEvent,
  RequestArgs,
  RequestName,
  RequestResult
} from './protocol';

/** Sends one protocol message (a comm in the app, a fake in tests). */
export interface ITransport {
  send(data: Record<string, unknown>, buffers?: ArrayBuffer[]): void;
}

/** An error the kernel answered with, or a request that could not be answered. */
export class ProtocolError extends Error {
  constructor(
    readonly op: string,
    readonly type: string,
    message: string
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** A response with its binary buffers (tensor payloads). */
export interface IResponse<K extends RequestName> {
  result: RequestResult<K>;
  buffers: DataView[];
}

interface IPending {
  op: string;
  resolve: (value: IResponse<any>) => void;
  reject: (reason: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * How long a request waits for its answer by default (seconds). Generous: the kernel
 * answers comm requests between cells, so a request made while a long cell runs waits
 * for the cell; a request that never gets an answer must still end.
 */
export const DEFAULT_REQUEST_TIMEOUT_S = 300;

/** Options of a client or of one request. */
export interface IRequestOptions {
  /** Seconds to wait for the answer before rejecting with a `Timeout` error; 0: forever. */
  timeoutS?: number;
}

/** Talks protocol v1 over a transport. */
export class ProtocolClient implements IDisposable {
  constructor(
    private readonly _transport: ITransport,
    options: IRequestOptions = {}
  ) {
    this.timeoutS = options.timeoutS ?? DEFAULT_REQUEST_TIMEOUT_S;
  }

  /** Seconds a request waits for its answer unless it says otherwise (0: forever). */
  timeoutS: number;

  /** Events pushed by the kernel (capture added, evicted, deleted). */
  get eventReceived(): ISignal<this, ProtocolEvent> {
    return this._eventReceived;
  }

  /** Requests sent and not yet answered. */
  get pendingCount(): number {
    return this._pending.size;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Send a request; resolves with the result, rejects with a ProtocolError. */
  request<K extends RequestName>(
    op: K,
    args: RequestArgs<K>,
    options: IRequestOptions = {}
  ): Promise<IResponse<K>> {
    if (this._isDisposed) {
      return Promise.reject(
        new ProtocolError(
          op,
          'ConnectionClosed',
          'the kernel connection is closed'
        )
      );
    }
    const id = `${++this._counter}`;
    const timeoutS = options.timeoutS ?? this.timeoutS;
    return new Promise<IResponse<K>>((resolve, reject) => {
      const timer =
        timeoutS > 0
          ? setTimeout(() => {
              if (this._pending.delete(id)) {
                reject(
                  new ProtocolError(
                    op,
                    'Timeout',
                    `no answer from the kernel after ${timeoutS} s (${op}); it may be ` +
                      'busy running a cell or an expression that does not end ' +
                      "(the notebook's stop button interrupts it)"
                  )
                );
              }
            }, timeoutS * 1000)
          : undefined;
      this._pending.set(id, { op, resolve, reject, timer });
      try {
        this._transport.send({ v: PROTOCOL_VERSION, id, op, args });
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new ProtocolError(op, 'SendFailed', String(error)));
      }
    });
  }

  /**
   * The protocol version of the last message the kernel sent (`v`), if any: an old
   * kernel that refuses this front end's requests still says which version it speaks.
   */
  get peerVersion(): string | number | undefined {
    return this._peerVersion;
  }

  /** Feed one incoming message (the `data` of a comm message) and its buffers. */
  handleMessage(
    data: IIncoming,
    buffers: (ArrayBuffer | ArrayBufferView)[] = []
  ): void {
    if (data.v !== undefined) {
      this._peerVersion = data.v;
    }
    if (typeof data.re === 'string') {
      const pending = this._pending.get(data.re);
      if (!pending) {
        return; // an answer to a request made before a reset; nobody waits for it
      }
      this._pending.delete(data.re);
      clearTimeout(pending.timer);
      if (data.ok) {
        pending.resolve({
          result: data.result,
          buffers: buffers.map(asDataView)
        });
      } else {
        const error = data.error ?? { type: 'Error', message: 'unknown error' };
        pending.reject(
          new ProtocolError(pending.op, error.type, error.message)
        );
      }
      return;
    }
    if (
      data.event === 'captures_added' ||
      data.event === 'captures_evicted' ||
      data.event === 'captures_deleted' ||
      data.event === 'captures_updated' ||
      data.event === 'breakpoints_changed' ||
      data.event === 'probe_progress'
    ) {
      this._eventReceived.emit(data as unknown as ProtocolEvent);
    }
  }

  /**
   * Reject every pending request with a message saying why no answer will come (the
   * kernel restarted, died, the notebook closed) and stop; safe to call twice.
   */
  close(reason: string): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    for (const pending of this._pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new ProtocolError(pending.op, 'ConnectionClosed', reason));
    }
    this._pending.clear();
    Signal.clearData(this);
  }

  /** Reject every pending request and stop; safe to call twice. */
  dispose(): void {
    this.close('the kernel connection was closed before the kernel answered');
  }

  private _counter = 0;
  private _peerVersion: string | number | undefined = undefined;
  private _isDisposed = false;
  private readonly _pending = new Map<string, IPending>();
  private readonly _eventReceived = new Signal<this, ProtocolEvent>(this);
}

function asDataView(buffer: ArrayBuffer | ArrayBufferView): DataView {
  return buffer instanceof ArrayBuffer
    ? new DataView(buffer)
    : new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}
