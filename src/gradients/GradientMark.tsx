/** The ∇ marker of a capture-list row: the capture keeps gradients, and how many arrived. */
import * as React from 'react';

import { ICaptureBrief } from '../kernel/protocol';

export function GradientMark(props: {
  marker: NonNullable<ICaptureBrief['grads']>;
}): React.ReactElement {
  const { received, asked } = props.marker;
  const complete = asked > 0 && received === asked;
  return (
    <span
      className={`jp-NopdbLab-gradMark${received ? '' : ' jp-mod-pending'}`}
      data-received={received}
      data-asked={asked}
      title={
        received
          ? `Gradients of ${received} of ${asked} value${asked === 1 ? '' : 's'} asked for` +
            (complete ? '' : ' (the others: see Details › Gradients)')
          : `Captured with grads: no backward pass has reached its ${asked} value${
              asked === 1 ? '' : 's'
            } yet`
      }
    >
      ∇{complete || !received ? '' : ` ${received}/${asked}`}
    </span>
  );
}
