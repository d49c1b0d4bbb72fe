import { NotebookModel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';

import {
  BreakpointModel,
  METADATA_KEY,
  notebookTrusted
} from '../breakpoints/model';
import { ProtocolClient } from '../kernel/client';
import { BridgeState } from '../kernel/bridge';
import {
  IBreakpointSpec,
  IBreakpointState,
  PROTOCOL_VERSION
} from '../kernel/protocol';

const CELL = 'def f(x):\n    y = x + 1\n    return y\n';

/** A kernel that keeps the breakpoints it is sent and answers with their state. */
class FakeConnection {
  state: BridgeState = { status: 'no-kernel' };
  client: ProtocolClient | null = null;
  readonly stateChanged = new Signal<this, BridgeState>(this);
  installed = new Map<string, IBreakpointSpec>();
  requests: string[] = [];
  owner: string | null = null;

  connect(): void {
    const client = new ProtocolClient({
      send: (data: any) => {
        this.requests.push(data.op);
        const result = this._answer(data.op, data.args);
        void Promise.resolve().then(() =>
          client.handleMessage(
            { v: PROTOCOL_VERSION, re: data.id, ok: true, result },
            []
          )
        );
      }
    });
    this.client = client;
    this.state = {
      status: 'ready',
      hello: {
        protocol: PROTOCOL_VERSION,
        version: '0',
        backend: 'x',
        python: '3',
        store: { count: 0, nbytes: 0, budget: 0 }
      }
    };
    this.stateChanged.emit(this.state);
  }

  restart(): void {
    this.installed.clear();
    this.state = { status: 'connecting', message: 'restarting' };
    this.stateChanged.emit(this.state);
    this.connect();
  }

  push(states: IBreakpointState[]): void {
    this.client!.handleMessage(
      {
        v: PROTOCOL_VERSION,
        event: 'breakpoints_changed',
        breakpoints: states
      },
      []
    );
  }

  static stateOf(spec: IBreakpointSpec): IBreakpointState {
    return {
      id: spec.id,
      state: spec.source !== undefined ? 'pending' : 'active',
      message: '',
      field: '',
      hits: 0,
      file: spec.file ?? '/tmp/cell.py',
      line: spec.line,
      function: 'f',
      total_hits: 0
    };
  }

  private _answer(op: string, args: any): unknown {
    switch (op) {
      case 'breakpoint_set':
        this.installed.set(args.breakpoint.id, args.breakpoint);
        return FakeConnection.stateOf(args.breakpoint);
      case 'breakpoint_remove':
        this.installed.delete(args.id);
        return {};
      case 'breakpoint_sync':
        this.owner = args.owner;
        this.installed = new Map(
          args.breakpoints.map((b: IBreakpointSpec) => [b.id, b])
        );
        return { breakpoints: args.breakpoints.map(FakeConnection.stateOf) };
    }
    throw new Error(`unexpected ${op}`);
  }
}

/** A notebook as the Jupyter server loads it: code cells marked trusted or not. */
function notebookOf(trusted: boolean, sources: string[]): NotebookModel {
  const notebook = new NotebookModel();
  notebook.sharedModel.insertCells(
    0,
    sources.map(source => ({
      cell_type: 'code',
      source,
      metadata: { trusted }
    }))
  );
  return notebook;
}

/** The user's own (signed, so trusted) notebook. */
function notebookWith(...sources: string[]): NotebookModel {
  return notebookOf(true, sources);
}

// @jupyter/ydoc sets a new cell's source before the cell joins the document; Yjs warns
// about it on every insert. The warning is not about this code, so it is kept out of
// the test log.
const warn = console.warn;
beforeAll(() => {
  jest.spyOn(console, 'warn').mockImplementation((...args: unknown[]) => {
    if (!String(args[0]).startsWith('Invalid access: Add Yjs type')) {
      warn(...args);
    }
  });
});
afterAll(() => jest.restoreAllMocks());

const settle = () => new Promise(resolve => setTimeout(resolve, 0));

describe('BreakpointModel', () => {
  it('sends a toggled breakpoint with its cell source and saves it in metadata', async () => {
    const notebook = notebookWith(CELL);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    const cellId = notebook.cells.get(0).id;

    const bp = model.toggle({ cell: cellId }, 2)!;
    await settle();
    expect(connection.installed.get(bp.id)).toMatchObject({
      line: 2,
      source: CELL,
      enabled: true,
      keep_locals: true
    });
    expect(model.state(bp.id)?.state).toBe('pending');
    expect(notebook.getMetadata(METADATA_KEY)).toEqual({
      breakpoints: [
        expect.objectContaining({ id: bp.id, cell: cellId, line: 2 })
      ]
    });

    model.toggle({ cell: cellId }, 2); // a second click removes it
    await settle();
    expect(connection.installed.size).toBe(0);
    expect(notebook.getMetadata(METADATA_KEY)).toBeUndefined();
  });

  it('moves breakpoints with their lines and drops one whose line is deleted', async () => {
    const notebook = notebookWith(CELL);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    const notices: string[] = [];
    model.notice.connect((_, message) => notices.push(message));
    const cell = notebook.cells.get(0).sharedModel;
    const onY = model.toggle({ cell: cell.id }, 2)!;
    const onReturn = model.toggle({ cell: cell.id }, 3)!;

    cell.updateSource(0, 0, 'import math\n');
    expect(model.breakpoints.map(b => b.line)).toEqual([3, 4]);

    const from = cell.getSource().indexOf('    y =');
    const to = cell.getSource().indexOf('    return');
    cell.updateSource(from, to, '');
    expect(model.breakpoints.map(b => [b.id, b.line])).toEqual([
      [onReturn.id, 3]
    ]);
    expect(notices).toEqual([
      'Removed the breakpoint at cell 1, line 3: its line was deleted.'
    ]);
    expect(onY.id).not.toBe(onReturn.id);

    // edits reach the kernel after a pause, with the new source
    await new Promise(resolve => setTimeout(resolve, 300));
    expect(connection.installed.get(onReturn.id)).toMatchObject({
      line: 3,
      source: cell.getSource()
    });
    expect(connection.installed.has(onY.id)).toBe(false);
  });

  it('restores saved breakpoints and sends them all again after a restart', async () => {
    const notebook = notebookWith(CELL, 'f(1)\n');
    const cellId = notebook.cells.get(0).id;
    notebook.setMetadata(METADATA_KEY, {
      breakpoints: [
        { id: 'a', cell: cellId, line: 2, condition: 'x > 0', evals: ['y'] },
        { id: 'b', file: '/lib/functional.py', line: 10, exec: 'z = 1' },
        { id: 'gone', cell: 'no-such-cell', line: 1 },
        { id: 'bad', line: 'two' }
      ]
    });
    const connection = new FakeConnection();
    const model = new BreakpointModel(notebook, connection, () => 'nb.ipynb');
    expect(model.breakpoints.map(b => b.id)).toEqual(['a', 'b']);

    connection.connect();
    await settle();
    expect(connection.requests).toEqual(['breakpoint_sync']);
    expect(connection.owner).toBe('nb.ipynb');
    expect(connection.installed.get('a')).toMatchObject({
      source: CELL,
      condition: 'x > 0',
      evals: ['y']
    });
    expect(connection.installed.get('b')).toMatchObject({
      file: '/lib/functional.py',
      exec: 'z = 1'
    });

    model.update('a', { instance: 7 });
    await settle();
    expect(connection.installed.get('a')?.instance).toBe(7);

    const availability: boolean[] = [];
    model.changed.connect(() => availability.push(model.available));
    connection.restart();
    await settle();
    expect(availability).not.toContain(false); // gutters stay through a restart
    expect([...connection.installed.keys()]).toEqual(['a', 'b']);
    // capture ids belong to the old kernel process
    expect(connection.installed.get('a')?.instance).toBeNull();
  });

  it('takes hit counts and state changes from the kernel', async () => {
    const notebook = notebookWith(CELL);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    const bp = model.toggle({ cell: notebook.cells.get(0).id }, 2)!;
    await settle();
    connection.push([
      {
        ...FakeConnection.stateOf(connection.installed.get(bp.id)!),
        state: 'active',
        hits: 3
      }
    ]);
    expect(model.state(bp.id)).toMatchObject({ state: 'active', hits: 3 });
  });

  it('moves to another connection when the view it used closes', async () => {
    const notebook = notebookWith(CELL);
    const first = new FakeConnection();
    first.connect();
    const second = new FakeConnection();
    second.connect();
    const model = new BreakpointModel(notebook, first);
    const bp = model.toggle({ cell: notebook.cells.get(0).id }, 2)!;
    await settle();
    model.setConnection(second);
    await settle();
    expect([...second.installed.keys()]).toEqual([bp.id]);
    model.remove(bp.id);
    await settle();
    expect(second.installed.size).toBe(0);
    expect(first.installed.size).toBe(1); // the closed view's connection is not used
  });

  it('drops the breakpoints of a deleted cell', () => {
    const notebook = notebookWith(CELL, CELL);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    const notices: string[] = [];
    model.notice.connect((_, message) => notices.push(message));
    model.toggle({ cell: notebook.cells.get(1).id }, 2);
    notebook.sharedModel.deleteCell(1);
    expect(model.breakpoints).toEqual([]);
    expect(notices).toEqual(['Removed 1 breakpoint of a deleted cell.']);
  });
});

describe('BreakpointModel in an untrusted notebook', () => {
  /** Crafted metadata: a file breakpoint on a line the kernel runs by itself. */
  function crafted(notebook: NotebookModel): void {
    const cellId = notebook.cells.get(0).id;
    notebook.setMetadata(METADATA_KEY, {
      breakpoints: [
        {
          id: 'encoder',
          file: '/usr/lib/python3.11/json/encoder.py',
          line: 200,
          exec: "open('/tmp/pwned', 'w')"
        },
        { id: 'cond', cell: cellId, line: 2, condition: '__import__("os")' },
        { id: 'evals', cell: cellId, line: 3, evals: ['steal()'] },
        { id: 'plain', cell: cellId, line: 2, enabled: true, max_hits: 3 },
        { id: 'off', cell: cellId, line: 3, enabled: false, exec: 'x = 1' }
      ]
    });
  }

  it('sends breakpoints carrying code disabled, plain ones as saved', async () => {
    const notebook = notebookOf(false, [CELL]);
    crafted(notebook);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    await settle();

    expect(model.trusted).toBe(false);
    const sent = connection.installed;
    expect(sent.get('encoder')).toMatchObject({
      enabled: false,
      exec: "open('/tmp/pwned', 'w')" // the code is kept, to be shown
    });
    expect(sent.get('cond')?.enabled).toBe(false);
    expect(sent.get('evals')?.enabled).toBe(false);
    expect(sent.get('plain')?.enabled).toBe(true); // no code: stays active
    expect(sent.get('off')?.enabled).toBe(false);
    expect(
      ['encoder', 'cond', 'evals', 'off'].map(model.isUntrusted, model)
    ).toEqual([true, true, true, true]);
    expect(model.isUntrusted('plain')).toBe(false);
    expect(model.breakpoints.find(b => b.id === 'encoder')?.enabled).toBe(
      false
    );
  });

  it('keeps them disabled through restarts, new views and edits', async () => {
    const notebook = notebookOf(false, [CELL]);
    crafted(notebook);
    const connection = new FakeConnection();
    const model = new BreakpointModel(notebook, connection);
    connection.connect();
    await settle();
    connection.restart();
    await settle();
    expect(connection.installed.get('encoder')?.enabled).toBe(false);

    const other = new FakeConnection();
    other.connect();
    model.setConnection(other);
    await settle();
    expect(other.installed.get('encoder')?.enabled).toBe(false);

    model.update('encoder', { exec: "open('/tmp/other', 'w')" });
    await settle();
    expect(other.installed.get('encoder')).toMatchObject({
      enabled: false,
      exec: "open('/tmp/other', 'w')"
    });
    // saved as the file had it: holding for trust is not the user's choice
    const saved = notebook.getMetadata(METADATA_KEY) as any;
    expect(saved.breakpoints.find((b: any) => b.id === 'encoder').enabled).toBe(
      true
    );
  });

  it('enables one breakpoint when the user enables it', async () => {
    const notebook = notebookOf(false, [CELL]);
    crafted(notebook);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    await settle();
    model.update('cond', { enabled: true });
    await settle();
    expect(model.isUntrusted('cond')).toBe(false);
    expect(connection.installed.get('cond')?.enabled).toBe(true);
    expect(connection.installed.get('encoder')?.enabled).toBe(false);
  });

  it('enables them as saved when the notebook is trusted', async () => {
    const notebook = notebookOf(false, [CELL, 'f(1)\n']);
    crafted(notebook);
    const connection = new FakeConnection();
    connection.connect();
    const model = new BreakpointModel(notebook, connection);
    await settle();

    expect(model.releaseIfTrusted()).toBe(false); // not trusted yet: nothing changes
    await settle();
    expect(connection.installed.get('encoder')?.enabled).toBe(false);

    // what JupyterLab's notebook:trust command does, then tells the model
    for (const cell of notebook.cells) {
      cell.trusted = true;
    }
    await settle();
    expect(connection.installed.get('encoder')?.enabled).toBe(false);
    expect(model.releaseIfTrusted()).toBe(true);
    await settle();
    expect(model.trusted).toBe(true);
    expect(connection.installed.get('encoder')?.enabled).toBe(true);
    expect(connection.installed.get('cond')?.enabled).toBe(true);
    expect(connection.installed.get('evals')?.enabled).toBe(true);
    expect(connection.installed.get('off')?.enabled).toBe(false); // saved so
    expect(model.isUntrusted('encoder')).toBe(false);
  });

  it('keeps them disabled when the user runs the cells', async () => {
    const notebook = notebookOf(false, [CELL]);
    crafted(notebook);
    const connection = new FakeConnection();
    connection.connect();
    new BreakpointModel(notebook, connection);
    await settle();
    // running a cell clears its outputs and marks it trusted, just before it runs: a
    // hidden exec must not be let in by that
    (notebook.cells.get(0) as any).clearExecution();
    expect(notebook.cells.get(0).trusted).toBe(true);
    await settle();
    expect(connection.requests.filter(op => op !== 'breakpoint_sync')).toEqual(
      []
    );
    expect(connection.installed.get('cond')?.enabled).toBe(false);
  });

  it('does not trust a notebook with one untrusted code cell or none', () => {
    const mixed = notebookOf(true, [CELL]);
    mixed.sharedModel.insertCell(1, {
      cell_type: 'code',
      source: 'x',
      metadata: { trusted: false }
    });
    expect(notebookTrusted(mixed.cells)).toBe(false);
    // a markdown cell's `trusted` is written by the file itself
    const markdownOnly = new NotebookModel();
    markdownOnly.sharedModel.insertCell(0, {
      cell_type: 'markdown',
      source: '# hi',
      metadata: { trusted: true }
    });
    expect(notebookTrusted(markdownOnly.cells)).toBe(false);
    expect(notebookTrusted(notebookWith(CELL).cells)).toBe(true);
  });
});
