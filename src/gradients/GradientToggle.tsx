/**
 * A toolbar switch (beside *Capture attention*) that makes the panel's captures (gutter
 * breakpoints, the attention switch) keep gradients from the next cell on.
 */
import * as React from 'react';
import { Notification } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';

import { BrowserModel } from '../captures/browserModel';

export class GradientToggle extends ReactWidget {
  constructor(private readonly _model: BrowserModel) {
    super();
    this.addClass('jp-NopdbLab-gradientToggle');
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const bridge = this._model.bridge;
    const ready = bridge?.state.status === 'ready';
    const on = ready && bridge.gradientCapture;
    return (
      <button
        className={`jp-ToolbarButtonComponent jp-mod-minimal jp-Button${on ? ' jp-mod-active' : ''}`}
        aria-pressed={on}
        disabled={!ready}
        title={
          on
            ? 'Gutter breakpoints and attention captures keep gradients (from the next cell on); click to stop'
            : 'Keep gradients of gutter breakpoints and attention captures, from the next cell on'
        }
        onClick={() =>
          bridge
            ?.setGradientCapture(!on)
            .catch(error =>
              Notification.error(`Gradients: ${(error as Error).message}`)
            )
        }
      >
        <span className="jp-ToolbarButtonComponent-label">
          Gradients: {on ? 'on' : 'off'}
        </span>
      </button>
    );
  }
}
