/**
 * The top of the capture browser: which notebook it follows and where its kernel
 * connection stands, with the install command when the kernel lacks nopdb-lab.
 */
import * as React from 'react';
import { ReactWidget } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from '../commands';

import { BrowserModel } from './browserModel';
import { formatBytes } from '../ui/format';

export class BrowserHeader extends ReactWidget {
  constructor(
    private readonly _model: BrowserModel,
    private readonly _commands: CommandRegistry
  ) {
    super();
    this.addClass('jp-NopdbLab-header');
    _model.changed.connect(() => this.update(), this);
  }

  protected render(): React.ReactElement {
    const model = this._model;
    const commands = this._commands;
    const bridge = model.bridge;
    if (!bridge) {
      return (
        <div className="jp-NopdbLab-status" data-status="no-notebook">
          Open a notebook to see its captures.
        </div>
      );
    }
    const state = bridge.state;
    const title = (
      <div className="jp-NopdbLab-notebook" title={model.label}>
        {model.label.split('/').pop() || model.label}
      </div>
    );
    switch (state.status) {
      case 'no-kernel':
        return (
          <div className="jp-NopdbLab-status" data-status={state.status}>
            {title}
            This notebook has no kernel.
          </div>
        );
      case 'connecting':
        return (
          <div className="jp-NopdbLab-status" data-status={state.status}>
            {title}
            {state.message}
          </div>
        );
      case 'ready': {
        const count = bridge.captures.size;
        return (
          <div className="jp-NopdbLab-status" data-status={state.status}>
            {title}
            <span
              className="jp-NopdbLab-statusLine"
              title={
                `Python ${state.hello.python} · ${state.hello.backend} backend · ` +
                `nopdb-lab ${state.hello.version} · capture budget ` +
                formatBytes(state.hello.store.budget)
              }
            >
              {count} capture{count === 1 ? '' : 's'} · Python{' '}
              {state.hello.python} · {state.hello.backend} ·{' '}
              {formatBytes(state.hello.store.budget)}
            </span>
          </div>
        );
      }
      case 'missing':
        return (
          <div
            className="jp-NopdbLab-status jp-mod-warning"
            data-status={state.status}
          >
            {title}
            <p>{state.message}</p>
            <p>
              Install it into the kernel's environment by running this in a
              cell:
            </p>
            <div className="jp-NopdbLab-command">
              <code>{state.installCommand}</code>
              <button
                className="jp-mod-styled"
                onClick={() =>
                  void commands.execute(CommandIDs.copyExpression, {
                    expression: state.installCommand
                  })
                }
              >
                Copy
              </button>
            </div>
            <p>then restart the kernel, or</p>
            <button
              className="jp-mod-styled jp-mod-accept"
              onClick={() => bridge.reconnect()}
            >
              Try again
            </button>
          </div>
        );
      case 'unsupported':
        return (
          <div className="jp-NopdbLab-status" data-status={state.status}>
            {title}
            {state.message}
          </div>
        );
      case 'error':
        return (
          <div
            className="jp-NopdbLab-status jp-mod-error"
            data-status={state.status}
          >
            {title}
            <p>{state.message}</p>
            <button
              className="jp-mod-styled"
              onClick={() => bridge.reconnect()}
            >
              Reconnect
            </button>
          </div>
        );
    }
  }
}
