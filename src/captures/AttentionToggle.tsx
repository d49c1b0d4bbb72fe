/**
 * A toolbar switch that makes the followed notebook's kernel record every fused
 * attention (SDPA) call, across cells, like `nopdb_lab.capture_attention()` around each.
 */
import { KernelSwitch } from '../ui/KernelSwitch';
import { BrowserModel } from './browserModel';

export class AttentionToggle extends KernelSwitch {
  constructor(model: BrowserModel) {
    super(model, {
      className: 'jp-NopdbLab-attentionToggle',
      label: 'Capture attention',
      errorLabel: 'Attention capture',
      titleOn:
        'Recording every scaled_dot_product_attention call; click to stop',
      titleOff:
        'Record every scaled_dot_product_attention call (fused attention) from now on',
      read: bridge => bridge.attentionCapture,
      write: (bridge, on) => bridge.setAttentionCapture(on)
    });
  }
}
