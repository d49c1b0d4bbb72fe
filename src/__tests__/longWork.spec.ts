import { Notification } from '@jupyterlab/apputils';

import { SETTLE_MS, SHOW_AFTER_MS, withProgress } from '../captures/longWork';
import { KernelBridge } from '../kernel/bridge';

describe('withProgress', () => {
  const interrupt = jest.fn();
  const interruptRequests = jest.fn(() => true);
  const bridge = {
    sessionContext: { session: { kernel: { interrupt } } },
    interruptRequests
  } as unknown as KernelBridge;
  const latest = () =>
    Notification.manager.notifications.find(n =>
      n.message.startsWith('Stacking')
    );

  afterEach(() => {
    Notification.dismiss();
  });

  it('shows long work with an Interrupt action, then how it ended', async () => {
    let fail: (error: Error) => void = () => undefined;
    const work = new Promise<number>((_, reject) => (fail = reject));
    const shown = withProgress(bridge, 'Stacking', work);
    await new Promise(resolve => setTimeout(resolve, SHOW_AFTER_MS + 100));
    const running = latest()!;
    expect(running.type).toBe('in-progress');
    const action = running.options.actions![0];
    expect(action.label).toBe('Interrupt');
    action.callback(new MouseEvent('click'));
    expect(interrupt).toHaveBeenCalled();
    // a request a kernel subshell serves is interrupted too (SIGINT does not reach it)
    expect(interruptRequests).toHaveBeenCalled();
    fail(new Error('Interrupted: KeyboardInterrupt'));
    await expect(shown).rejects.toMatchObject({ reported: true });
    expect(latest()!.type).toBe('warning');
    expect(latest()!.message).toContain('interrupted');
  });

  it('lets a shown notification settle before it is updated', async () => {
    // JupyterLab drops an update that reaches a toast before it is mounted: work that
    // ends just after its notification appeared must not leave it saying "…"
    let finish: (value: number) => void = () => undefined;
    const work = new Promise<number>(resolve => (finish = resolve));
    const shown = withProgress(bridge, 'Stacking late', work);
    await new Promise(resolve => setTimeout(resolve, SHOW_AFTER_MS + 20));
    const started = Date.now();
    finish(7);
    await new Promise(resolve => setTimeout(resolve, 10));
    expect(latest()!.type).toBe('in-progress');
    await expect(shown).resolves.toBe(7);
    expect(Date.now() - started).toBeGreaterThanOrEqual(SETTLE_MS - 40);
    expect(latest()!.type).toBe('success');
  });

  it('announces how quick work ended when asked (a save says where it wrote)', async () => {
    await expect(
      withProgress(bridge, 'Stacking saved', Promise.resolve(2), {
        announce: n => `Stacking saved ${n} captures`
      })
    ).resolves.toBe(2);
    expect(latest()!.type).toBe('success');
    expect(latest()!.message).toBe('Stacking saved 2 captures');
  });

  it('shows nothing for quick work', async () => {
    await expect(
      withProgress(bridge, 'Stacking quick', Promise.resolve(3))
    ).resolves.toBe(3);
    expect(latest()).toBeUndefined();
  });
});
