/**
 * Kernel work started from the UI that can take a while (stacking hundreds of captures):
 * after a moment without an answer, a notification says what is running and offers to
 * stop it. Ops run inside the kernel's comm handler (on its main thread, or in a subshell
 * with JupyterLab >= 4.6): _Interrupt_ interrupts the kernel as the stop button does and
 * the requests a subshell serves (`KernelBridge.interruptRequests`); the op ends with an
 * error reply, shown in the same notification, and the kernel and the store stay as they
 * were.
 */
import { Notification } from '@jupyterlab/apputils';

import { KernelBridge } from '../kernel/bridge';

/** How long work runs before the notification shows (quick work shows nothing). */
export const SHOW_AFTER_MS = 700;

/**
 * How long a shown notification stays before it is updated. JupyterLab mounts a toast
 * asynchronously and drops an update that arrives before the toast is active (the toast
 * then keeps saying "…" forever: a save that ended within milliseconds of its
 * notification did exactly that), so an update waits until the toast has had this long.
 */
export const SETTLE_MS = 400;

export interface IProgressOptions<T> {
  /**
   * Say how the work ended even when it was quick (no progress shown): the message of a
   * success notification (a save says where it wrote and how much).
   */
  announce?: (result: T) => string;
}

/**
 * Await `work`, showing `label` with an _Interrupt_ action while it runs longer than
 * `SHOW_AFTER_MS`; a failure or an interruption is reported there (and rethrown).
 */
export async function withProgress<T>(
  bridge: KernelBridge,
  label: string,
  work: Promise<T>,
  options: IProgressOptions<T> = {}
): Promise<T> {
  let id: string | null = null;
  let shownAt = 0;
  let interrupted = false;
  const settled = async () => {
    const wait = shownAt + SETTLE_MS - Date.now();
    if (id && wait > 0) {
      await new Promise(resolve => setTimeout(resolve, wait));
    }
  };
  const timer = setTimeout(() => {
    shownAt = Date.now();
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
            // and the request itself, when a kernel subshell serves it (SIGINT does not
            // reach one)
            bridge.interruptRequests();
          }
        }
      ]
    });
  }, SHOW_AFTER_MS);
  try {
    const result = await work;
    clearTimeout(timer);
    await settled();
    const message = options.announce?.(result) ?? `${label}: done.`;
    if (id) {
      Notification.update({
        id,
        message,
        type: 'success',
        autoClose: options.announce ? 5000 : 3000,
        actions: []
      });
    } else if (options.announce) {
      Notification.emit(message, 'success', { autoClose: 5000 });
    }
    return result;
  } catch (error) {
    clearTimeout(timer);
    await settled();
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
