/**
 * Connects one notebook's kernel to nopdb-lab: starts the kernel service silently (on
 * open, kernel change and restart), opens the comm, and keeps the notebook's capture
 * list in step with the kernel's store.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { CaptureListModel } from '../captures/captureList';
import { ProtocolClient, ProtocolError } from './client';
import {
  BOOTSTRAP_CODE,
  COMM_TARGET,
  IHello,
  IIncoming,
  compareProtocol,
  PROTOCOL_VERSION,
  ProtocolEvent
} from './protocol';

/** Where the connection to a kernel stands, with what the panel should say. */
export type BridgeState =
  | { status: 'no-kernel' }
  | { status: 'connecting'; message: string }
  | { status: 'ready'; hello: IHello }
  | { status: 'missing'; message: string; installCommand: string }
  | { status: 'unsupported'; message: string }
  | { status: 'error'; message: string };

/** Options of a bridge. */
export interface IBridgeOptions {
  /** The command a user runs in the notebook to install nopdb-lab into its kernel. */
  installCommand: () => string;
  /**
   * Seconds a request waits for the kernel's answer before it fails with "no answer
   * from the kernel after N s" (0: forever); the client's default when absent.
   */
  requestTimeoutS?: () => number | undefined;
}

/** Kernel statuses after which the kernel is a new process (or none). */
const RESET_STATUSES = new Set<Kernel.Status>([
  'restarting',
  'autorestarting',
  'starting',
  'dead'
]);

/** How long a restarted kernel must stay idle before the service is started in it. */
const SETTLE_MS = 300;

/** Run silently after the stop button: interrupts requests served in kernel subshells. */
export const INTERRUPT_CODE =
  'import nopdb_lab.jupyter as _nopdb_lab_jupyter; _nopdb_lab_jupyter.interrupt_requests()';

/** How often a pending bootstrap request checks whether it was lost. */
const LOST_CHECK_MS = 3000;

/**
 * The reply to an execute request, or null when the request was lost: the kernel has
 * been idle across two checks and has still not answered (a request sent while a restart
 * swaps processes can vanish). A busy kernel is never treated as lost, so a bootstrap
 * queued behind a long-running cell simply waits.
 */
function doneOrLost(
  future: Kernel.IShellFuture<
    KernelMessage.IExecuteRequestMsg,
    KernelMessage.IExecuteReplyMsg
  >,
  kernel: Kernel.IKernelConnection
): Promise<KernelMessage.IExecuteReplyMsg | null> {
  return new Promise((resolve, reject) => {
    let idleChecks = 0;
    const timer = setInterval(() => {
      idleChecks = kernel.status === 'idle' ? idleChecks + 1 : 0;
      if (idleChecks >= 2 || kernel.isDisposed) {
        clearInterval(timer);
        resolve(null);
      }
    }, LOST_CHECK_MS);
    future.done.then(
      reply => {
        clearInterval(timer);
        resolve(reply);
      },
      error => {
        clearInterval(timer);
        reject(error);
      }
    );
  });
}

/** Errors whose name says the kernel lacks the package (or a dependency of it). */
const IMPORT_ERRORS = new Set(['ModuleNotFoundError', 'ImportError']);

/** The nopdb-lab connection of one notebook (one session context). */
export class KernelBridge implements IDisposable {
  constructor(
    readonly sessionContext: ISessionContext,
    private readonly _options: IBridgeOptions
  ) {
    sessionContext.kernelChanged.connect(this._onKernelChanged, this);
    this._attach(sessionContext.session?.kernel ?? null);
  }

  /** The notebook's captures, as the kernel's store has them. */
  readonly captures = new CaptureListModel();

  get state(): BridgeState {
    return this._state;
  }

  get stateChanged(): ISignal<this, BridgeState> {
    return this._stateChanged;
  }

  /** The protocol client while the state is `ready`. */
  get client(): ProtocolClient | null {
    return this._client;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Whether the kernel records every SDPA call (capture_attention from the panel). */
  get attentionCapture(): boolean {
    return this._attentionCapture;
  }

  /** Start or stop recording SDPA calls in the kernel, across cells. */
  async setAttentionCapture(enabled: boolean): Promise<void> {
    if (!this._client) {
      throw new Error('the kernel is not connected');
    }
    const response = await this._client.request('attention_capture', {
      enabled
    });
    this._attentionCapture = response.result.enabled;
    this._stateChanged.emit(this._state);
  }

  /** Whether the panel's captures keep gradients (the Gradients switch). */
  get gradientCapture(): boolean {
    return this._gradientCapture;
  }

  /** Turn the Gradients switch on or off in the kernel (from the next cell on). */
  async setGradientCapture(enabled: boolean): Promise<void> {
    if (!this._client) {
      throw new Error('the kernel is not connected');
    }
    const response = await this._client.request('gradient_capture', {
      enabled
    });
    this._gradientCapture = response.result.enabled;
    this._stateChanged.emit(this._state);
  }

  /**
   * After the notebook's stop button: interrupt the requests the kernel serves in a
   * subshell (JupyterLab >= 4.6 sends comm messages through one, and SIGINT reaches the
   * main thread only) with a silent execute request on the main shell; each is then
   * answered with an `Interrupted` error where it came from. Returns whether it asked.
   */
  interruptRequests(): boolean {
    const kernel = this.sessionContext.session?.kernel;
    if (!this._client || !kernel || this._client.pendingCount === 0) {
      return false;
    }
    kernel.requestExecute(
      {
        code: INTERRUPT_CODE,
        silent: true,
        store_history: false,
        allow_stdin: false,
        stop_on_error: false
      },
      true
    );
    return true;
  }

  /** Try again (after installing nopdb-lab into the kernel, say). */
  reconnect(): void {
    this._attach(this.sessionContext.session?.kernel ?? null);
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._teardown();
    this._kernel?.statusChanged.disconnect(this._onStatus, this);
    Signal.clearData(this);
  }

  private _onKernelChanged(
    _: ISessionContext,
    change: { newValue: Kernel.IKernelConnection | null }
  ): void {
    if (change.newValue !== this._kernel) {
      this._attach(change.newValue); // a restart re-announces the same connection
    }
  }

  private _attach(kernel: Kernel.IKernelConnection | null): void {
    this._kernel?.statusChanged.disconnect(this._onStatus, this);
    this._teardown();
    this._kernel = kernel;
    this.captures.reset([]);
    if (!kernel) {
      this._setState({ status: 'no-kernel' });
      return;
    }
    kernel.statusChanged.connect(this._onStatus, this);
    void this._bootstrap(kernel);
  }

  private _onStatus(
    kernel: Kernel.IKernelConnection,
    status: Kernel.Status
  ): void {
    if (RESET_STATUSES.has(status)) {
      // a new kernel process: the old store and comm are gone with the old one, and
      // so are the answers to requests it had not answered yet
      this._client?.close(
        status === 'dead'
          ? 'the kernel died before answering'
          : 'the kernel restarted before answering; ask again'
      );
      this._teardown();
      this.captures.reset([]);
      this._needsBootstrap = true;
      this._setState({
        status: 'connecting',
        message:
          status === 'dead' ? 'The kernel died.' : 'The kernel is restarting…'
      });
    } else if (status === 'idle' && this._needsBootstrap) {
      // During a restart, status messages of the old and new process interleave; start
      // once the new kernel has been idle for a moment.
      clearTimeout(this._settleTimer);
      this._settleTimer = setTimeout(() => {
        if (
          this._needsBootstrap &&
          kernel.status === 'idle' &&
          !this._isDisposed
        ) {
          this._needsBootstrap = false;
          void this._bootstrap(kernel);
        }
      }, SETTLE_MS);
    }
  }

  private async _bootstrap(kernel: Kernel.IKernelConnection): Promise<void> {
    const generation = ++this._generation;
    const stale = () => this._isDisposed || generation !== this._generation;
    this._setState({
      status: 'connecting',
      message: 'Starting nopdb-lab in the kernel…'
    });
    try {
      const info = await kernel.info;
      if (stale()) {
        return;
      }
      const language = info.language_info?.name ?? 'unknown';
      if (language !== 'python') {
        this._setState({
          status: 'unsupported',
          message: `This notebook's kernel runs ${language}; nopdb-lab needs a Python kernel.`
        });
        return;
      }
      const future = kernel.requestExecute(
        {
          code: BOOTSTRAP_CODE,
          silent: true,
          store_history: false,
          allow_stdin: false,
          stop_on_error: false
        },
        true
      );
      const reply = await doneOrLost(future, kernel);
      if (stale()) {
        return;
      }
      if (reply === null) {
        // the request was lost in a restart race: the kernel is idle and never answered
        void this._bootstrap(kernel);
        return;
      }
      if (reply.content.status === 'error') {
        const { ename, evalue } =
          reply.content as KernelMessage.IReplyErrorContent;
        if (IMPORT_ERRORS.has(ename)) {
          this._setState({
            status: 'missing',
            message: `nopdb-lab is not importable in this kernel (${ename}: ${evalue}).`,
            installCommand: this._options.installCommand()
          });
        } else {
          this._setState({
            status: 'error',
            message: `Starting nopdb-lab in the kernel failed: ${ename}: ${evalue}`
          });
        }
        return;
      }
      const client = this._openComm(kernel);
      let hello: IHello;
      try {
        hello = (await client.request('hello', {})).result;
      } catch (error) {
        // a kernel of another major version may refuse the request itself; its
        // answer still carries the version it speaks
        if (stale() || !this._refuseVersion(client.peerVersion)) {
          throw error;
        }
        return;
      }
      if (stale()) {
        return;
      }
      if (this._refuseVersion(hello.protocol, hello.version)) {
        return;
      }
      const listed = (await client.request('list', {})).result;
      if (stale()) {
        return;
      }
      this.captures.reset(listed.captures);
      this._attentionCapture = hello.attention_capture ?? false;
      this._gradientCapture = hello.gradient_capture ?? false;
      this._setState({ status: 'ready', hello });
    } catch (error) {
      if (stale()) {
        return;
      }
      this._teardown();
      const message =
        error instanceof ProtocolError || error instanceof Error
          ? error.message
          : String(error);
      this._setState({
        status: 'error',
        message: `Connecting failed: ${message}`
      });
    }
  }

  /**
   * If the kernel speaks another major protocol version, stop and say which side to
   * update (true); false when the versions can talk.
   */
  private _refuseVersion(
    protocol: string | number | undefined,
    packageVersion?: string
  ): boolean {
    if (protocol === undefined) {
      return false;
    }
    const comparison = compareProtocol(protocol);
    if (comparison === null) {
      return false;
    }
    this._teardown();
    const kernelSide =
      `The kernel has nopdb-lab${packageVersion ? ` ${packageVersion}` : ''} ` +
      `(protocol ${protocol}); this JupyterLab speaks protocol ${PROTOCOL_VERSION}.`;
    if (comparison === 'newer') {
      this._setState({
        status: 'unsupported',
        message:
          `${kernelSide} The kernel's nopdb-lab is newer than this JupyterLab ` +
          "extension: update the extension in JupyterLab's environment (pip install -U " +
          'nopdb-lab) and reload the page, or install the matching version in the kernel.'
      });
    } else {
      this._setState({
        status: 'missing',
        message: `${kernelSide} The kernel's nopdb-lab is ${
          comparison === 'older' ? 'older than' : 'incompatible with'
        } this JupyterLab extension: update it in the kernel's environment.`,
        installCommand: this._options.installCommand()
      });
    }
    return true;
  }

  private _openComm(kernel: Kernel.IKernelConnection): ProtocolClient {
    const comm = kernel.createComm(COMM_TARGET);
    const client = new ProtocolClient(
      {
        send: (data, buffers) => {
          comm.send(data as any, undefined, buffers);
        }
      },
      { timeoutS: this._options.requestTimeoutS?.() }
    );
    comm.onMsg = msg => {
      client.handleMessage(msg.content.data as IIncoming, msg.buffers ?? []);
    };
    comm.onClose = () => {
      if (this._client === client) {
        this._teardown();
        this._setState({
          status: 'error',
          message: 'The kernel closed the nopdb-lab comm.'
        });
      }
    };
    client.eventReceived.connect(this._onEvent, this);
    comm.open({});
    this._comm = comm;
    this._client = client;
    return client;
  }

  private _onEvent(_: ProtocolClient, event: ProtocolEvent): void {
    switch (event.event) {
      case 'captures_added':
        this.captures.add(...event.captures);
        break;
      case 'captures_evicted':
        this.captures.remove(event.ids, event.message);
        break;
      case 'captures_deleted':
        this.captures.remove(event.ids);
        break;
      case 'captures_updated':
        this.captures.update(...event.captures);
        break;
    }
  }

  private _teardown(): void {
    this._generation++;
    this._attentionCapture = false;
    this._gradientCapture = false;
    clearTimeout(this._settleTimer);
    const comm = this._comm;
    this._comm = null;
    this._client?.dispose();
    this._client = null;
    if (comm && !comm.isDisposed) {
      comm.onClose = () => undefined;
      try {
        if (
          this._kernel &&
          this._kernel.status !== 'dead' &&
          !this._kernel.isDisposed
        ) {
          comm.close();
        }
      } catch {
        // the kernel connection is already gone; nothing to close
      }
      comm.dispose();
    }
  }

  private _setState(state: BridgeState): void {
    this._state = state;
    this._stateChanged.emit(state);
  }

  private _kernel: Kernel.IKernelConnection | null = null;
  private _comm: Kernel.IComm | null = null;
  private _client: ProtocolClient | null = null;
  private _generation = 0;
  private _needsBootstrap = false;
  private _attentionCapture = false;
  private _gradientCapture = false;
  private _settleTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _isDisposed = false;
  private _state: BridgeState = { status: 'no-kernel' };
  private readonly _stateChanged = new Signal<this, BridgeState>(this);
}
