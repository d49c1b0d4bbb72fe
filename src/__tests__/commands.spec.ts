import { MainAreaWidget } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { CaptureListModel } from '../captures/captureList';
import { capturesPlugin } from '../captures/plugin';
import { CommandIDs } from '../commands';
import { heatmapPlugin } from '../heatmap/plugin';

/** A bridge whose kernel answers every request with `answer(op, args)`. */
function fakeBridge(answer: (op: string, args: any) => any) {
  const owner = {};
  const requests: [string, any][] = [];
  const bridge = {
    isDisposed: false,
    state: {
      status: 'ready',
      hello: {
        protocol: '2.0.0',
        version: '0.1.0',
        backend: 'settrace',
        python: '3.11.7',
        store: { count: 0, nbytes: 0, budget: 1 << 30 }
      }
    },
    attentionCapture: false,
    stateChanged: new Signal<any, any>(owner),
    captures: new CaptureListModel(),
    client: {
      request: async (op: string, args: any) => {
        requests.push([op, args]);
        return {
          result: answer(op, args),
          buffers: [new DataView(new ArrayBuffer(16))]
        };
      }
    }
  } as any;
  return { bridge, requests };
}

function fakeApp() {
  const added: Widget[] = [];
  return {
    commands: new CommandRegistry(),
    shell: {
      add: jest.fn((widget: Widget) => added.push(widget)),
      activateById: jest.fn(),
      widgets: jest.fn(() => added[Symbol.iterator]())
    }
  } as any;
}

function fakeConnections(bridge: any, panel: any) {
  const owner = {};
  return {
    current: bridge,
    get: (p: any) => (p === panel ? bridge : undefined),
    panelOf: () => panel,
    entries: () => new Map([[panel, bridge]]).entries(),
    added: new Signal<any, any>(owner),
    removed: new Signal<any, any>(owner)
  } as any;
}

describe('nopdb-lab commands', () => {
  it('open-heatmap opens a viewer that asks the kernel for the slice', async () => {
    const { bridge, requests } = fakeBridge(() => ({
      shape: [2, 2],
      grid: null,
      rows: 2,
      cols: 2,
      row_step: 1,
      col_step: 1,
      reduce: null,
      min: 0,
      max: 1,
      nan: 0,
      inf: 0,
      expression: 'x'
    }));
    const app = fakeApp();
    heatmapPlugin.activate(app, fakeConnections(bridge, {}));
    await app.commands.execute(CommandIDs.openHeatmap, {
      captureId: 3,
      path: ['locals', 'attn'],
      expression: "nopdb_lab.store[3].locals['attn']",
      shape: [4, 2, 2],
      signed: false
    });
    expect(app.shell.add).toHaveBeenCalledTimes(1);
    const widget = app.shell.add.mock.calls[0][0] as MainAreaWidget;
    expect(widget.title.label).toBe("store[3].locals['attn']");
    expect(app.shell.activateById).toHaveBeenCalledWith(widget.id);
    expect(app.shell.add.mock.calls[0][2]).toEqual({ mode: 'split-right' });
    expect(requests).toHaveLength(1);
    expect(requests[0][0]).toBe('heatmap');
    expect(requests[0][1]).toMatchObject({
      id: 3,
      path: ['locals', 'attn'],
      rows_dim: 1,
      cols_dim: 2,
      index: { '0': 0 }
    });
    // a second viewer opens as a tab beside the first, not in yet another split
    await app.commands.execute(CommandIDs.openHeatmap, {
      captureId: 3,
      path: ['locals', 'attn'],
      expression: "nopdb_lab.store[3].locals['attn']",
      shape: [4, 2, 2]
    });
    expect(app.shell.add.mock.calls[1][2]).toEqual({
      mode: 'tab-after',
      ref: widget.id
    });
    app.shell.add.mock.calls[1][0].dispose();
    widget.dispose();
  });

  it('stack-across asks the kernel to stack and selects the new capture', async () => {
    const { bridge, requests } = fakeBridge(() => ({ id: 12 }));
    const panel = {
      context: { path: 'model.ipynb', pathChanged: new Signal({}) }
    };
    const tracker = {
      currentWidget: null,
      currentChanged: new Signal<any, any>({})
    };
    const app = fakeApp();
    const browser = capturesPlugin.activate(
      app,
      tracker,
      fakeConnections(bridge, panel),
      null,
      null
    ) as any;
    tracker.currentChanged.emit(panel);
    expect(browser.model.bridge).toBe(bridge);
    expect(app.commands.isEnabled(CommandIDs.stackAcross)).toBe(true);
    await app.commands.execute(CommandIDs.stackAcross, {
      captureId: 4,
      path: ['locals', 'attn']
    });
    expect(requests).toEqual([['stack', { id: 4, path: ['locals', 'attn'] }]]);
    expect(browser.model.selectedId).toBe(12);

    await app.commands.execute(CommandIDs.deleteCapture, { captureId: 12 });
    expect(requests[1]).toEqual(['delete', { id: 12 }]);
    expect(browser.model.selectedId).toBeNull();
  });
});
