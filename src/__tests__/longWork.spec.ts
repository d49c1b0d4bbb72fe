import { Notification } from '@jupyterlab/apputils';

import { SHOW_AFTER_MS, withProgress } from '../captures/longWork';
import { KernelBridge } from '../kernel/bridge';

describe('withProgress', () => {
  const interrupt = jest.fn();
  const bridge = {
    sessionContext: { session: { kernel: { interrupt } } }
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
    fail(new Error('Interrupted: KeyboardInterrupt'));
    await expect(shown).rejects.toMatchObject({ reported: true });
    expect(latest()!.type).toBe('warning');
    expect(latest()!.message).toContain('interrupted');
  });

  it('shows nothing for quick work', async () => {
    await expect(
      withProgress(bridge, 'Stacking quick', Promise.resolve(3))
    ).resolves.toBe(3);
    expect(latest()).toBeUndefined();
  });
});
