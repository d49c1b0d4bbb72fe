/**
 * A toolbar on/off switch for a setting of the followed notebook's kernel (capture
 * attention, keep gradients): disabled until the kernel is ready, errors shown as a
 * notification naming the setting.
 */
import * as React from 'react';
import { Notification } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';

import { BrowserModel } from '../captures/browserModel';
import { KernelBridge } from '../kernel/bridge';

export interface IKernelSwitchOptions {
  /** The widget's CSS class. */
  className: string;
  /** The button's label, followed by ": on" or ": off". */
  label: string;
  /** What an error notification starts with. */
  errorLabel: string;
  /** Hover text while on, and while off. */
  titleOn: string;
  titleOff: string;
  /** Reads the kernel's state, and asks the kernel to change it. */
  read(bridge: KernelBridge): boolean;
  write(bridge: KernelBridge, on: boolean): Promise<unknown>;
}

export class KernelSwitch extends ReactWidget {
  constructor(
    private readonly _model: BrowserModel,
    private readonly _options: IKernelSwitchOptions
  ) {
    super();
    this.addClass(_options.className);
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const options = this._options;
    const bridge = this._model.bridge;
    const ready = bridge?.state.status === 'ready';
    const on = ready && options.read(bridge);
    return (
      <button
        className={`jp-ToolbarButtonComponent jp-mod-minimal jp-Button${on ? ' jp-mod-active' : ''}`}
        aria-pressed={on}
        disabled={!ready}
        title={on ? options.titleOn : options.titleOff}
        onClick={() =>
          bridge &&
          options
            .write(bridge, !on)
            .catch(error =>
              Notification.error(
                `${options.errorLabel}: ${(error as Error).message}`
              )
            )
        }
      >
        <span className="jp-ToolbarButtonComponent-label">
          {options.label}: {on ? 'on' : 'off'}
        </span>
      </button>
    );
  }
}
