import { Signal } from '@lumino/signaling';

import { BrowserModel } from '../captures/browserModel';

/** A followed bridge whose kernel answers every request with `answer(op, args)`. */
function fakeBridge(answer: (op: string, args: any) => any) {
  const owner = {};
  const requests: [string, any][] = [];
  return {
    requests,
    bridge: {
      isDisposed: false,
      state: { status: 'ready' },
      stateChanged: new Signal<any, any>(owner),
      captures: { changed: new Signal<any, any>(owner) },
      client: {
        request: async (op: string, args: any) => {
          requests.push([op, args]);
          return { result: answer(op, args), buffers: [] };
        }
      }
    } as any
  };
}

describe('BrowserModel requests', () => {
  it('stacks a value across captures and selects the new capture', async () => {
    const { bridge, requests } = fakeBridge(() => ({ id: 42 }));
    const model = new BrowserModel();
    model.follow(bridge, 'a.ipynb');
    model.select(3);
    expect(await model.stackAcross(3, ['locals', 'attn'])).toBe(42);
    expect(requests).toEqual([['stack', { id: 3, path: ['locals', 'attn'] }]]);
    expect(model.selectedId).toBe(42);
  });

  it('deletes a capture and unselects it', async () => {
    const { bridge, requests } = fakeBridge(() => ({}));
    const model = new BrowserModel();
    model.follow(bridge);
    model.select(5);
    await model.deleteCapture(5);
    expect(requests).toEqual([['delete', { id: 5 }]]);
    expect(model.selectedId).toBeNull();
  });

  it("loads a container's children and a capture's details", async () => {
    const { bridge, requests } = fakeBridge(op =>
      op === 'value'
        ? { children: [{ key: 0, summary: { type: 'int' } }] }
        : { id: 1, locals: {}, stack: [] }
    );
    const model = new BrowserModel();
    model.follow(bridge);
    expect(await model.children(1, ['locals', 'xs'])).toEqual([
      { key: 0, summary: { type: 'int' } }
    ]);
    expect((await model.detail(1)).id).toBe(1);
    expect(requests.map(([op]) => op)).toEqual(['value', 'get']);
  });

  it('says the kernel is not connected when no notebook is followed', async () => {
    const model = new BrowserModel();
    await expect(model.detail(1)).rejects.toThrow(
      "the notebook's kernel is not connected"
    );
  });
});
