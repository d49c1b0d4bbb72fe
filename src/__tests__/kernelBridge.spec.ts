import { Signal } from '@lumino/signaling';

import { INTERRUPT_CODE, KernelBridge } from '../kernel/bridge';
import {
  BOOTSTRAP_CODE,
  COMM_TARGET,
  ICaptureBrief,
  PROTOCOL_VERSION
} from '../kernel/protocol';

function brief(id: number): ICaptureBrief {
  return {
    id,
    kind: 'call',
    name: 'forward',
    qualname: 'Attention.forward',
    file: 'vit.py',
    line: 3,
    time: 0,
    thread: 'MainThread',
    nbytes: 0
  };
}

/** A comm whose other end is a tiny in-memory kernel service. */
class FakeComm {
  constructor(
    readonly targetName: string,
    private readonly _kernel: FakeKernel
  ) {}
  onMsg: (msg: any) => void = () => undefined;
  onClose: (msg: any) => void = () => undefined;
  isDisposed = false;
  opened = false;
  closed = false;
  open(): void {
    this.opened = true;
  }
  send(data: any): void {
    if (this._kernel.unanswered.has(data.op)) {
      return; // a kernel busy with it, or that will never answer it
    }
    const reply = this._kernel.answer(data);
    void Promise.resolve().then(() =>
      this.onMsg({ content: { data: reply }, buffers: [] })
    );
  }
  push(data: any): void {
    this.onMsg({
      content: { data: { v: this._kernel.protocol, ...data } },
      buffers: []
    });
  }
  close(): void {
    this.closed = true;
  }
  dispose(): void {
    this.isDisposed = true;
  }
}

class FakeKernel {
  status = 'idle';
  isDisposed = false;
  language = 'python';
  importError: string | null = null;
  /** The protocol version the kernel speaks (an old kernel: the integer 1). */
  protocol: string | number = PROTOCOL_VERSION;
  /** Whether the kernel refuses requests of another version (kernels before 2.0.0). */
  strictVersion = false;
  store: ICaptureBrief[] = [];
  executed: { code: string; silent: boolean }[] = [];
  comms: FakeComm[] = [];
  readonly statusChanged = new Signal<FakeKernel, string>(this);

  get info(): Promise<any> {
    return Promise.resolve({ language_info: { name: this.language } });
  }

  requestExecute(content: { code: string; silent: boolean }) {
    this.executed.push(content);
    const reply = this.importError
      ? {
          status: 'error',
          ename: 'ModuleNotFoundError',
          evalue: this.importError
        }
      : { status: 'ok' };
    return { done: Promise.resolve({ content: reply }) };
  }

  createComm(target: string): FakeComm {
    const comm = new FakeComm(target, this);
    this.comms.push(comm);
    return comm;
  }

  attentionCapture = false;
  /** Ops this kernel never answers. */
  unanswered = new Set<string>();

  answer(data: any): any {
    if (this.strictVersion && data.v !== this.protocol) {
      return {
        v: this.protocol,
        re: data.id,
        ok: false,
        error: {
          type: 'ProtocolError',
          message: `protocol version '${data.v}' is not supported (this kernel speaks ${this.protocol}); update nopdb-lab`
        }
      };
    }
    if (data.op === 'attention_capture') {
      this.attentionCapture = data.args.enabled;
      return {
        v: this.protocol,
        re: data.id,
        ok: true,
        result: { enabled: this.attentionCapture }
      };
    }
    const result =
      data.op === 'hello'
        ? {
            protocol: this.protocol,
            version: '0.1.0',
            backend: 'settrace',
            python: '3.11.7',
            attention_capture: this.attentionCapture,
            store: { count: 0, nbytes: 0, budget: 1 << 30 }
          }
        : { captures: this.store };
    return { v: this.protocol, re: data.id, ok: true, result };
  }

  setStatus(status: string): void {
    this.status = status;
    this.statusChanged.emit(status);
  }
}

function sessionWith(kernel: FakeKernel | null) {
  const context = {
    session: kernel ? { kernel } : null,
    kernelChanged: new Signal<any, any>({})
  };
  return context;
}

/** Wait until the bridge reaches a status (or fail after 3 s). */
async function until(bridge: KernelBridge, status: string): Promise<void> {
  for (let i = 0; i < 300 && bridge.state.status !== status; i++) {
    await new Promise(resolve => setTimeout(resolve, 10));
  }
  expect(bridge.state.status).toBe(status);
}

const options = { installCommand: () => '%pip install -e /src/nopdb-lab' };

describe('KernelBridge', () => {
  it('starts the service silently, opens the comm and lists the store', async () => {
    const kernel = new FakeKernel();
    kernel.store = [brief(1), brief(2)];
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'ready');
    expect(kernel.executed).toEqual([
      expect.objectContaining({ code: BOOTSTRAP_CODE })
    ]);
    expect(kernel.executed[0].silent).toBe(true);
    expect(kernel.comms.map(c => [c.targetName, c.opened])).toEqual([
      [COMM_TARGET, true]
    ]);
    expect(bridge.captures.view.map(b => b.id)).toEqual([2, 1]);

    kernel.comms[0].push({ event: 'captures_added', captures: [brief(3)] });
    kernel.comms[0].push({
      event: 'captures_evicted',
      ids: [1],
      message: 'evicted #1'
    });
    expect(bridge.captures.view.map(b => b.id)).toEqual([3, 2]);
    expect(bridge.captures.lastEviction).toBe('evicted #1');
    bridge.dispose();
    expect(kernel.comms[0].closed).toBe(true);
  });

  it('says how to install nopdb-lab when the kernel cannot import it', async () => {
    const kernel = new FakeKernel();
    kernel.importError = "No module named 'nopdb_lab'";
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'missing');
    const state = bridge.state as any;
    expect(state.message).toContain("No module named 'nopdb_lab'");
    expect(state.installCommand).toBe('%pip install -e /src/nopdb-lab');
    expect(kernel.comms).toHaveLength(0);

    // installed meanwhile: "Try again" connects
    kernel.importError = null;
    bridge.reconnect();
    await until(bridge, 'ready');
  });

  it('refuses a kernel speaking another protocol, naming both versions', async () => {
    const kernel = new FakeKernel();
    kernel.protocol = 1; // a kernel-side nopdb-lab from before protocol 2.0.0
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'missing');
    expect((bridge.state as any).message).toContain('protocol 1');
    expect((bridge.state as any).message).toContain(
      `protocol ${PROTOCOL_VERSION}`
    );
    expect((bridge.state as any).message).toContain('older');
  });

  it('refuses an old kernel that rejects the request version itself', async () => {
    const kernel = new FakeKernel();
    kernel.protocol = 1;
    kernel.strictVersion = true;
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'missing');
    expect((bridge.state as any).message).toContain('(protocol 1)');
    expect((bridge.state as any).installCommand).toBe(
      '%pip install -e /src/nopdb-lab'
    );
  });

  it('asks to update the extension for a kernel of a newer major version', async () => {
    const kernel = new FakeKernel();
    kernel.protocol = '3.0.0';
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'unsupported');
    expect((bridge.state as any).message).toContain('protocol 3.0.0');
    expect((bridge.state as any).message).toContain('update the extension');
  });

  it('talks to a kernel of the same major version and another minor', async () => {
    const kernel = new FakeKernel();
    const [major] = PROTOCOL_VERSION.split('.');
    kernel.protocol = `${major}.99.0`;
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'ready');
  });

  it('leaves non-Python kernels alone', async () => {
    const kernel = new FakeKernel();
    kernel.language = 'R';
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'unsupported');
    expect(kernel.executed).toHaveLength(0);
  });

  it('recovers after a kernel restart with the new kernel store', async () => {
    const kernel = new FakeKernel();
    kernel.store = [brief(1)];
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'ready');

    kernel.setStatus('restarting');
    expect(bridge.state.status).toBe('connecting');
    expect(bridge.captures.size).toBe(0);
    kernel.store = [];
    // the old process's last status messages interleave with the new one's
    kernel.setStatus('idle');
    kernel.setStatus('starting');
    kernel.setStatus('idle');
    await until(bridge, 'ready');
    expect(kernel.executed).toHaveLength(2); // started once in the new process
    expect(kernel.comms).toHaveLength(2);
    expect(kernel.comms[0].isDisposed).toBe(true);
    expect(bridge.captures.size).toBe(0);
    kernel.comms[1].push({
      event: 'captures_added',
      captures: [brief(1), brief(2)]
    });
    expect(bridge.captures.size).toBe(2);
  });

  it('rejects requests pending when the kernel restarts or dies, saying so', async () => {
    const kernel = new FakeKernel();
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'ready');
    kernel.unanswered.add('labels');
    const beforeRestart = bridge.client!.request('labels', {
      expression: 'tokens'
    });
    kernel.setStatus('restarting');
    await expect(beforeRestart).rejects.toMatchObject({
      type: 'ConnectionClosed',
      message: 'the kernel restarted before answering; ask again'
    });

    kernel.setStatus('idle');
    await until(bridge, 'ready');
    const beforeDeath = bridge.client!.request('labels', {
      expression: 'tokens'
    });
    kernel.setStatus('dead');
    await expect(beforeDeath).rejects.toMatchObject({
      message: 'the kernel died before answering'
    });
  });

  it('after the stop button, interrupts requests the kernel serves in a subshell', async () => {
    const kernel = new FakeKernel();
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'ready');
    const started = kernel.executed.length;
    expect(bridge.interruptRequests()).toBe(false); // nothing pending: nothing to do
    kernel.unanswered.add('labels');
    const pending = bridge.client!.request('labels', { expression: 'slow()' });
    expect(bridge.interruptRequests()).toBe(true);
    expect(kernel.executed.slice(started)).toEqual([
      expect.objectContaining({ code: INTERRUPT_CODE, silent: true })
    ]);
    // the kernel's answer to the interrupted request reaches its caller as an error
    const comm = kernel.comms[kernel.comms.length - 1];
    comm.onMsg({
      content: {
        data: {
          v: PROTOCOL_VERSION,
          re: (bridge.client as any)._pending.keys().next().value,
          ok: false,
          error: {
            type: 'Interrupted',
            message:
              "slow() was interrupted (the kernel's stop button) before it finished"
          }
        }
      },
      buffers: []
    });
    await expect(pending).rejects.toMatchObject({ type: 'Interrupted' });
  });

  it('gives its requests the configured timeout', async () => {
    const kernel = new FakeKernel();
    const bridge = new KernelBridge(sessionWith(kernel) as any, {
      ...options,
      requestTimeoutS: () => 42
    });
    await until(bridge, 'ready');
    expect(bridge.client!.timeoutS).toBe(42);
  });

  it('switches attention capture in the kernel and forgets it on restart', async () => {
    const kernel = new FakeKernel();
    const bridge = new KernelBridge(sessionWith(kernel) as any, options);
    await until(bridge, 'ready');
    expect(bridge.attentionCapture).toBe(false);
    let changes = 0;
    bridge.stateChanged.connect(() => changes++);
    await bridge.setAttentionCapture(true);
    expect(kernel.attentionCapture).toBe(true);
    expect(bridge.attentionCapture).toBe(true);
    expect(changes).toBe(1);
    kernel.setStatus('restarting');
    expect(bridge.attentionCapture).toBe(false);
    await expect(bridge.setAttentionCapture(true)).rejects.toThrow(
      'not connected'
    );
  });

  it('follows a kernel change and reports a notebook without kernel', async () => {
    const first = new FakeKernel();
    const session = sessionWith(first);
    const bridge = new KernelBridge(session as any, options);
    await until(bridge, 'ready');
    session.kernelChanged.emit({ newValue: null });
    expect(bridge.state.status).toBe('no-kernel');
    const second = new FakeKernel();
    session.kernelChanged.emit({ newValue: second });
    await until(bridge, 'ready');
    expect(second.executed).toHaveLength(1);
  });
});
