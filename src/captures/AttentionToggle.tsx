/**
 * A toolbar switch that makes the followed notebook's kernel record every fused
 * attention (SDPA) call, across cells, like `nopdb_lab.capture_attention()` around each.
 */
import * as React from 'react';
import { Notification } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';

import { BrowserModel } from './browserModel';

export class AttentionToggle extends ReactWidget {
  constructor(private readonly _model: BrowserModel) {
    super();
    this.addClass('jp-NopdbLab-attentionToggle');
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const bridge = this._model.bridge;
    const ready = bridge?.state.status === 'ready';
    const on = ready && bridge.attentionCapture;
    return (
      <button
        className={`jp-ToolbarButtonComponent jp-mod-minimal jp-Button${on ? ' jp-mod-active' : ''}`}
        aria-pressed={on}
        disabled={!ready}
        title={
          on
            ? 'Recording every scaled_dot_product_attention call; click to stop'
            : 'Record every scaled_dot_product_attention call (fused attention) from now on'
        }
        onClick={() =>
          bridge
            ?.setAttentionCapture(!on)
            .catch(error =>
              Notification.error(
                `Attention capture: ${(error as Error).message}`
              )
            )
        }
      >
        <span className="jp-ToolbarButtonComponent-label">
          Capture attention: {on ? 'on' : 'off'}
        </span>
      </button>
    );
  }
}
