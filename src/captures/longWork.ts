/**
 * Kernel work started from the UI that can take a while (stacking hundreds of captures):
 * after a moment without an answer, a notification says what is running and offers to
 * stop it. Ops run inside the kernel's comm handler, so the way to stop one is to
 * interrupt the kernel (as the notebook's stop button does): the op ends with an error
 * reply, shown in the same notification, and the kernel and the store stay as they were.
 */
import { Notification } from '@jupyterlab/apputils';

import { KernelBridge } from '../kernel/bridge';

/** How long work runs before the notification shows (quick work shows nothing). */
export const SHOW_AFTER_MS = 700;

/**
 * Await `work`, showing `label` with an _Interrupt_ action while it runs longer than
 * `SHOW_AFTER_MS`; a failure or an interruption is reported there (and rethrown).
 */
export async function withProgress<T>(
  bridge: KernelBridge,
  label: string,
  work: Promise<T>
): Promise<T> {
  let id: string | null = null;
  let interrupted = false;
  const timer = setTimeout(() => {
    id = Notification.emit(`${label}…`, 'in-progress', {
      autoClose: false,
      actions: [
        {
          label: 'Interrupt',
          caption: 'Interrupt the kernel (as the stop button does)',
          callback: event => {
            event.preventDefault();
            interrupted = true;
            void bridge.sessionContext.session?.kernel?.interrupt();
          }
        }
      ]
    });
  }, SHOW_AFTER_MS);
  try {
    const result = await work;
    if (id) {
      Notification.update({
        id,
        message: `${label}: done.`,
        type: 'success',
        autoClose: 3000,
        actions: []
      });
    }
    return result;
  } catch (error) {
    const message = (error as Error).message;
    if (id) {
      Notification.update({
        id,
        message: interrupted
          ? `${label}: interrupted (${message}).`
          : `${label} failed: ${message}`,
        type: interrupted ? 'warning' : 'error',
        autoClose: false,
        actions: []
      });
      // already shown: the caller need not report it again
      (error as { reported?: boolean }).reported = true;
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
