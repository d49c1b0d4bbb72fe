/** useSignal: a component sees every emission, also one before its effects ran. */
import * as React from 'react';
import { Signal } from '@lumino/signaling';

import { ReactWidget } from '@jupyterlab/ui-components';
import { MessageLoop } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { useSignal } from '../ui/useSignal';

// React's act (react-dom has no type declarations here; ReactWidget owns the root)
const act = (React as unknown as { act: (work: () => unknown) => unknown })
  .act as <T>(work: () => T) => T;
(globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;

class Counter {
  value = 0;
  readonly changed = new Signal<this, void>(this);
  bump(): void {
    this.value++;
    this.changed.emit();
  }
}

function Shows({ model }: { model: Counter }): React.ReactElement {
  useSignal(model.changed);
  return <span className="shown">{model.value}</span>;
}

/** Changes the model in a layout effect: after Shows rendered, before its effects. */
function BumpsEarly({ model }: { model: Counter }): null {
  React.useLayoutEffect(() => {
    model.bump();
  }, [model]);
  return null;
}

describe('useSignal', () => {
  let host: HTMLDivElement;
  beforeEach(() => {
    host = document.createElement('div');
    document.body.appendChild(host);
  });
  afterEach(() => {
    host.remove();
  });

  it('re-renders on an emission between the render and the subscription', async () => {
    const model = new Counter();
    const widget = ReactWidget.create(
      <>
        <Shows model={model} />
        <BumpsEarly model={model} />
      </>
    );
    await act(async () => {
      Widget.attach(widget, host);
      MessageLoop.sendMessage(widget, Widget.Msg.UpdateRequest);
    });
    expect(model.value).toBe(1);
    expect(host.querySelector('.shown')!.textContent).toBe('1');
    await act(async () => {
      model.bump();
    });
    expect(host.querySelector('.shown')!.textContent).toBe('2');
    act(() => widget.dispose());
  });
  it('still re-renders for a component mounted after Signal.clearData', async () => {
    const model = new Counter();
    const first = ReactWidget.create(<Shows model={model} />);
    await act(async () => {
      Widget.attach(first, host);
      MessageLoop.sendMessage(first, Widget.Msg.UpdateRequest);
    });
    act(() => first.dispose());
    Signal.clearData(model); // drops every connection, the shared count's too
    const second = ReactWidget.create(<Shows model={model} />);
    await act(async () => {
      Widget.attach(second, host);
      MessageLoop.sendMessage(second, Widget.Msg.UpdateRequest);
    });
    await act(async () => {
      model.bump();
    });
    expect(host.querySelector('.shown')!.textContent).toBe('1');
    act(() => second.dispose());
  });
});
