/** The heatmap plugin: opens captured tensors and arrays as heatmaps in the main area. */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { tableRowsIcon } from '@jupyterlab/ui-components';

import { CommandIDs } from '../commands';
import { PathStep } from '../kernel/protocol';
import { IHeatmapOpener, IKernelConnections } from '../tokens';
import { HeatmapWidget } from './HeatmapView';
import { HeatmapModel, HeatmapOf, IHeatmapSource } from './model';
import { openSinkGrid } from './sinks';

export const heatmapPlugin: JupyterFrontEndPlugin<IHeatmapOpener> = {
  id: 'nopdb-lab:heatmap',
  description: 'Opens captured tensors and arrays as heatmaps.',
  autoStart: true,
  requires: [IKernelConnections],
  provides: IHeatmapOpener,
  activate: (app: JupyterFrontEnd, connections: IKernelConnections) => {
    let count = 0;
    const opener: IHeatmapOpener = {
      open: (source: IHeatmapSource) => {
        const content = new HeatmapWidget(new HeatmapModel(source));
        const widget = new MainAreaWidget({ content });
        widget.id = `nopdb-lab-heatmap-${++count}`;
        widget.title.label = source.expression.replace(
          /^nopdb_lab\.store/,
          'store'
        );
        widget.title.caption = source.expression;
        widget.title.icon = tableRowsIcon;
        widget.title.closable = true;
        // beside the viewers already open (as tabs), else in a split beside the notebook
        const open = Array.from(app.shell.widgets('main')).filter(w =>
          w.id.startsWith('nopdb-lab-heatmap-')
        );
        app.shell.add(
          widget,
          'main',
          open.length
            ? { mode: 'tab-after', ref: open[open.length - 1].id }
            : { mode: 'split-right' }
        );
        app.shell.activateById(widget.id);
      }
    };
    app.commands.addCommand(CommandIDs.openHeatmap, {
      label: args =>
        args.expression
          ? `Open ${args.expression} as a Heatmap`
          : 'Open as a Heatmap',
      icon: args => (args.expression ? undefined : tableRowsIcon),
      describedBy: {
        args: {
          type: 'object',
          properties: {
            captureId: { type: 'number' },
            path: { type: 'array', items: { type: ['string', 'number'] } },
            expression: { type: 'string' },
            shape: { type: 'array', items: { type: 'number' } },
            signed: { type: 'boolean' },
            of: {
              type: 'string',
              enum: ['value', 'grad', 'abs_grad', 'grad_x_value']
            }
          },
          required: ['captureId', 'path', 'expression', 'shape']
        }
      },
      execute: args => {
        const bridge = connections.current;
        if (!bridge) {
          Notification.error('Cannot open a heatmap: no notebook is open');
          return;
        }
        opener.open({
          bridge,
          captureId: args.captureId as number,
          path: args.path as PathStep[],
          expression: args.expression as string,
          shape: args.shape as number[],
          signed: Boolean(args.signed),
          of: (args.of as HeatmapOf | undefined) ?? 'value'
        });
      }
    });
    app.commands.addCommand(CommandIDs.attentionSinks, {
      label: 'Attention Sinks of These Layers…',
      caption:
        'Per layer × head: the share of each query’s attention on the first k tokens',
      describedBy: {
        args: {
          type: 'object',
          properties: {
            captureId: { type: 'number' },
            k: { type: 'number' }
          },
          required: ['captureId']
        }
      },
      execute: async args => {
        const bridge = connections.current;
        if (!bridge) {
          Notification.error(
            'Cannot compute attention sinks: no notebook is open'
          );
          return;
        }
        await openSinkGrid(
          bridge,
          args.captureId as number,
          typeof args.k === 'number' ? args.k : null,
          opener.open
        );
      }
    });
    return opener;
  }
};
