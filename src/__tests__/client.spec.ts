import {
  DEFAULT_REQUEST_TIMEOUT_S,
  ProtocolClient,
  ProtocolError
} from '../kernel/client';
import { PROTOCOL_VERSION, ProtocolEvent } from '../kernel/protocol';

/** A transport that records what the client sends. */
function recorder() {
  const sent: Record<string, any>[] = [];
  return {
    sent,
    transport: { send: (data: Record<string, any>) => sent.push(data) }
  };
}

describe('ProtocolClient', () => {
  it('sends versioned requests with unique ids and resolves on the matching response', async () => {
    const { sent, transport } = recorder();
    const client = new ProtocolClient(transport);
    const first = client.request('get', { id: 3 });
    const second = client.request('list', {});
    expect(sent.map(m => m.op)).toEqual(['get', 'list']);
    expect(sent[0]).toMatchObject({
      v: PROTOCOL_VERSION,
      op: 'get',
      args: { id: 3 }
    });
    expect(sent[0].id).not.toEqual(sent[1].id);

    // answers may come in any order
    client.handleMessage({
      v: PROTOCOL_VERSION,
      re: sent[1].id,
      ok: true,
      result: { captures: [] }
    });
    client.handleMessage({
      v: PROTOCOL_VERSION,
      re: sent[0].id,
      ok: true,
      result: { id: 3 }
    });
    await expect(second).resolves.toMatchObject({ result: { captures: [] } });
    await expect(first).resolves.toMatchObject({ result: { id: 3 } });
    expect(client.pendingCount).toBe(0);
  });

  it('rejects with the kernel error type and message', async () => {
    const { sent, transport } = recorder();
    const client = new ProtocolClient(transport);
    const pending = client.request('get', { id: 99 });
    client.handleMessage({
      v: PROTOCOL_VERSION,
      re: sent[0].id,
      ok: false,
      error: { type: 'KeyError', message: 'capture 99 is not in the store' }
    });
    const error: ProtocolError = await pending.catch(e => e);
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error.type).toBe('KeyError');
    expect(error.op).toBe('get');
    expect(error.message).toBe('capture 99 is not in the store');
  });

  it('hands tensor buffers over as DataViews of the right bytes', async () => {
    const { sent, transport } = recorder();
    const client = new ProtocolClient(transport);
    const pending = client.request('tensor', { id: 1, path: ['locals', 'x'] });
    const backing = new Float32Array([0, 1.5, -2, 4]);
    // a view into a larger buffer, as the websocket deserialiser may deliver
    const padded = new Uint8Array(4 + backing.byteLength);
    padded.set(new Uint8Array(backing.buffer), 4);
    client.handleMessage(
      {
        v: PROTOCOL_VERSION,
        re: sent[0].id,
        ok: true,
        result: { shape: [4], dtype: 'float32' }
      },
      [new Uint8Array(padded.buffer, 4, backing.byteLength)]
    );
    const { buffers } = await pending;
    expect(buffers).toHaveLength(1);
    const values = [0, 1, 2, 3].map(i => buffers[0].getFloat32(i * 4, true));
    expect(values).toEqual([0, 1.5, -2, 4]);
  });

  it('emits pushed events and ignores unknown ones', () => {
    const { transport } = recorder();
    const client = new ProtocolClient(transport);
    const events: ProtocolEvent[] = [];
    client.eventReceived.connect((_, e) => events.push(e));
    client.handleMessage({
      v: PROTOCOL_VERSION,
      event: 'captures_deleted',
      ids: [1, 2]
    });
    client.handleMessage({ v: PROTOCOL_VERSION, event: 'something_new' });
    expect(events).toEqual([
      { v: PROTOCOL_VERSION, event: 'captures_deleted', ids: [1, 2] }
    ]);
  });

  it('rejects pending and later requests once disposed', async () => {
    const { transport } = recorder();
    const client = new ProtocolClient(transport);
    const pending = client.request('hello', {});
    client.dispose();
    await expect(pending).rejects.toMatchObject({ type: 'ConnectionClosed' });
    await expect(client.request('hello', {})).rejects.toMatchObject({
      type: 'ConnectionClosed'
    });
  });

  it('turns a failing send into a rejected request', async () => {
    const client = new ProtocolClient({
      send: () => {
        throw new Error('comm is closed');
      }
    });
    await expect(client.request('list', {})).rejects.toMatchObject({
      type: 'SendFailed',
      message: 'Error: comm is closed'
    });
    expect(client.pendingCount).toBe(0);
  });

  describe('timeouts', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => jest.useRealTimers());

    it('rejects a request the kernel does not answer in time, naming the wait', async () => {
      const { sent, transport } = recorder();
      const client = new ProtocolClient(transport, { timeoutS: 30 });
      const pending = client.request('labels', { expression: 'tokens' });
      const outcome = pending.catch(e => e);
      jest.advanceTimersByTime(29_000);
      expect(client.pendingCount).toBe(1);
      jest.advanceTimersByTime(1_000);
      const error: ProtocolError = await outcome;
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error.type).toBe('Timeout');
      expect(error.message).toContain(
        'no answer from the kernel after 30 s (labels)'
      );
      expect(client.pendingCount).toBe(0);
      // a late answer is ignored: nobody waits for it any more
      client.handleMessage({
        v: PROTOCOL_VERSION,
        re: sent[0].id,
        ok: true,
        result: { labels: ['a'] }
      });
      expect(client.pendingCount).toBe(0);
    });

    it('has a generous default, a per-request override and 0 for no limit', async () => {
      const { transport } = recorder();
      const client = new ProtocolClient(transport);
      expect(client.timeoutS).toBe(DEFAULT_REQUEST_TIMEOUT_S);
      expect(DEFAULT_REQUEST_TIMEOUT_S).toBeGreaterThanOrEqual(60);
      const quick = client
        .request('list', {}, { timeoutS: 1 })
        .catch(e => e.type);
      const forever = client.request('list', {}, { timeoutS: 0 });
      jest.advanceTimersByTime(DEFAULT_REQUEST_TIMEOUT_S * 10_000);
      expect(await quick).toBe('Timeout');
      expect(client.pendingCount).toBe(1);
      client.close('the kernel restarted before answering; ask again');
      await expect(forever).rejects.toMatchObject({
        type: 'ConnectionClosed',
        message: 'the kernel restarted before answering; ask again'
      });
    });

    it('clears the timer of an answered request', async () => {
      const { sent, transport } = recorder();
      const client = new ProtocolClient(transport, { timeoutS: 5 });
      const pending = client.request('list', {});
      client.handleMessage({
        v: PROTOCOL_VERSION,
        re: sent[0].id,
        ok: false,
        error: { type: 'Interrupted', message: 'list was interrupted' }
      });
      await expect(pending).rejects.toMatchObject({ type: 'Interrupted' });
      expect(jest.getTimerCount()).toBe(0);
    });
  });
});
