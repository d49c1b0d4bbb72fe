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
}

/** Talks protocol v1 over a transport. */
export class ProtocolClient implements IDisposable {
  constructor(private readonly _transport: ITransport) {}

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
    args: RequestArgs<K>
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
    return new Promise<IResponse<K>>((resolve, reject) => {
      this._pending.set(id, { op, resolve, reject });
      try {
        this._transport.send({ v: PROTOCOL_VERSION, id, op, args });
      } catch (error) {
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
      data.event === 'breakpoints_changed' ||
      data.event === 'probe_progress'
    ) {
      this._eventReceived.emit(data as unknown as ProtocolEvent);
    }
  }

  /** Reject every pending request and stop; safe to call twice. */
  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    for (const pending of this._pending.values()) {
      pending.reject(
        new ProtocolError(
          pending.op,
          'ConnectionClosed',
          'the kernel connection was closed'
        )
      );
    }
    this._pending.clear();
    Signal.clearData(this);
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
