/**
 * The gradient-flow plugin: the `nopdb-lab:open-gradient-flow` command opens the flow
 * view of captures (a function's captures with gradients, or a stack record's sources) in
 * the main area, and the view MIME renderer (src/render) draws `"flow"` items inline.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { CommandIDs } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import { IKernelConnections } from '../tokens';
import { FlowWidget } from './FlowView';
import { bridgeKernel, FlowModel, FlowSource } from './model';

/** A flow view of `source` on a notebook's kernel; opens the flow in the kernel. */
export function createFlowWidget(
  bridge: KernelBridge,
  source: FlowSource
): FlowWidget {
  const widget = new FlowWidget(new FlowModel(bridgeKernel(bridge), source));
  void widget.model.open();
  return widget;
}

export const flowPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:flow',
  description:
    'The exact gradient flow between captured layers (Sankey + linked heatmaps).',
  autoStart: true,
  requires: [IKernelConnections],
  activate: (app: JupyterFrontEnd, connections: IKernelConnections) => {
    let count = 0;
    app.commands.addCommand(CommandIDs.openGradientFlow, {
      label: args =>
        args.title ? `Gradient flow of ${args.title}` : 'Open Gradient Flow',
      describedBy: {
        args: {
          type: 'object',
          properties: {
            captureIds: { type: 'array', items: { type: 'number' } },
            stackId: { type: 'number' },
            title: { type: 'string' }
          }
        }
      },
      execute: args => {
        const bridge = connections.current;
        if (!bridge) {
          Notification.error(
            'Cannot open a gradient flow: no notebook is open'
          );
          return;
        }
        const ids = args.captureIds as number[] | undefined;
        const stack = args.stackId as number | undefined;
        if (!ids?.length && stack === undefined) {
          Notification.error(
            'Open a gradient flow from the capture browser: pick a capture of a function captured with grads=True'
          );
          return;
        }
        const source: FlowSource = ids?.length ? { ids } : { stack: stack! };
        const content = createFlowWidget(bridge, source);
        const widget = new MainAreaWidget<Widget>({ content });
        widget.id = `nopdb-lab-flow-${++count}`;
        widget.title.label = `Flow: ${(args.title as string) ?? 'captures'}`;
        widget.title.closable = true;
        app.shell.add(widget, 'main', { mode: 'split-right' });
        app.shell.activateById(widget.id);
        return widget.id;
      }
    });
  }
};
