/**
 * A toolbar switch (beside *Capture attention*) that makes the panel's captures (gutter
 * breakpoints, the attention switch) keep gradients from the next cell on.
 */
import { BrowserModel } from '../captures/browserModel';
import { KernelSwitch } from '../ui/KernelSwitch';

export class GradientToggle extends KernelSwitch {
  constructor(model: BrowserModel) {
    super(model, {
      className: 'jp-NopdbLab-gradientToggle',
      label: 'Gradients',
      errorLabel: 'Gradients',
      titleOn:
        'Gutter breakpoints and attention captures keep gradients (from the next cell on); click to stop',
      titleOff:
        'Keep gradients of gutter breakpoints and attention captures, from the next cell on',
      read: bridge => bridge.gradientCapture,
      write: (bridge, on) => bridge.setGradientCapture(on)
    });
  }
}
