import { Signal } from '@lumino/signaling';

import { KernelConnections } from '../kernel/plugin';

// no Jupyter server here: answer the server-extension request at once (a real fetch
// would fail and log after the test has ended)
jest.mock('../kernel/serverInfo', () => ({
  DEFAULT_INSTALL_COMMAND: '%pip install nopdb-lab',
  fetchServerInfo: () =>
    Promise.resolve({
      version: '0',
      protocol: 2,
      install_command: '%pip install nopdb-lab'
    })
}));

/** A notebook panel with no kernel yet (the bridge waits for one). */
function fakePanel() {
  const owner = {};
  return {
    isDisposed: false,
    disposed: new Signal<any, void>(owner),
    sessionContext: {
      session: null,
      kernelChanged: new Signal<any, any>(owner)
    },
    close() {
      this.isDisposed = true;
      this.disposed.emit();
    }
  } as any;
}

describe('KernelConnections', () => {
  it('gives each notebook panel a bridge and disposes it when the panel closes', () => {
    const tracker = {
      currentWidget: null as any,
      widgetAdded: new Signal<any, any>({})
    };
    const connections = new KernelConnections(tracker as any);
    const added: any[] = [];
    const removed: any[] = [];
    connections.added.connect((_, entry) => added.push(entry));
    connections.removed.connect((_, entry) => removed.push(entry));

    const first = fakePanel();
    const second = fakePanel();
    tracker.widgetAdded.emit(first);
    tracker.widgetAdded.emit(second);
    const bridge = connections.get(first)!;
    expect(bridge).toBeDefined();
    expect(connections.get(second)).not.toBe(bridge);
    expect(connections.panelOf(bridge)).toBe(first);
    expect(added.map(e => e.panel)).toEqual([first, second]);
    expect(bridge.state.status).toBe('no-kernel');

    expect(connections.current).toBeNull();
    tracker.currentWidget = second;
    expect(connections.current).toBe(connections.get(second));

    first.close();
    expect(removed).toEqual([{ panel: first, bridge }]);
    expect(bridge.isDisposed).toBe(true);
    expect(connections.get(first)).toBeUndefined();
    expect([...connections.entries()].map(([p]) => p)).toEqual([second]);
  });
});
