/**
 * The probes plugin: edit a probe's input on the heatmap viewer, re-run it in the
 * kernel (silent execute, so the notebook's stop button interrupts it), see what
 * changed, and attribute it. Commands: `nopdb-lab:edit-probe-input` (args `{ probe,
 * input }`, asks without them) and `nopdb-lab:attribute-probe` (args `{ probe, method,
 * steps?, baseline?, internal_batch_size? }`).
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  Notification
} from '@jupyterlab/apputils';
import { tableRowsIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { PALETTE_CATEGORY } from '../commands';
import { KernelBridge } from '../kernel/bridge';
import { HeatmapModel } from '../heatmap/model';
import { IKernelConnections } from '../tokens';
import { AttributionModel, isTokenMap, MAP_PATH } from './attributionModel';
import { ProbeEditModel } from './editModel';
import {
  AttributionHeatmapWidget,
  ProbeEditWidget,
  TokenStripWidget
} from './ProbeViews';
import {
  IAttributeOptions,
  IProbeConnection,
  IProbeInfo,
  ProbeSession,
  probeSessionOf,
  runInputOf
} from './session';

export namespace ProbeCommandIDs {
  /** Open a probe input in the heatmap viewer's edit mode; args `{ probe?, input? }`. */
  export const editInput = 'nopdb-lab:edit-probe-input';
  /** Attribute a probe's newest run and open the result; args `{ probe, method, ... }`. */
  export const attribute = 'nopdb-lab:attribute-probe';
  /**
   * Attribute… on a value in the capture browser: a tensor of a probe run's capture
   * (its `inputs`, `gradients`, `changed` or `delta` of one input); args
   * `{ captureId, path }`. Opens the probe's edit view with the Attribute… form for
   * that run and input.
   */
  export const attributeValue = 'nopdb-lab:attribute-value';
  /**
   * Open an attribution record (one made in Python too) as a heatmap or a token strip,
   * with the patch overlay; args `{ captureId }`.
   */
  export const openAttribution = 'nopdb-lab:open-attribution';
}

/** The probe connection of a notebook's bridge (its comm client and its kernel). */
function connectionOf(bridge: KernelBridge): IProbeConnection {
  return {
    get client() {
      return bridge.client;
    },
    get executor() {
      return bridge.sessionContext.session?.kernel ?? null;
    }
  };
}

export const probesPlugin: JupyterFrontEndPlugin<void> = {
  id: 'nopdb-lab:probes',
  description: 'Edit, re-run and attribute probes from the heatmap viewer.',
  autoStart: true,
  requires: [IKernelConnections],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    connections: IKernelConnections,
    palette: ICommandPalette | null
  ) => {
    let count = 0;
    const show = (content: Widget, label: string, caption: string) => {
      const widget = new MainAreaWidget({ content });
      widget.id = `nopdb-lab-probe-${++count}`;
      widget.title.label = label;
      widget.title.caption = caption;
      widget.title.icon = tableRowsIcon;
      widget.title.closable = true;
      app.shell.add(widget, 'main', { mode: 'split-right' });
      app.shell.activateById(widget.id);
      return widget;
    };

    const openAttribution = async (
      bridge: KernelBridge,
      session: ProbeSession,
      probe: string,
      record: number,
      options: IAttributeOptions,
      follows = true
    ) => {
      const client = bridge.client;
      if (!client) {
        throw new Error('The kernel is not connected.');
      }
      const summary = (
        await client.request('value', { id: record, path: MAP_PATH })
      ).result.summary;
      const shape = summary.shape ?? [];
      const model = new AttributionModel(
        session,
        bridge,
        probe,
        options,
        record,
        shape,
        follows
      );
      const content = isTokenMap(shape)
        ? new TokenStripWidget(model)
        : new AttributionHeatmapWidget(model);
      show(
        content,
        `${options.method.replace(/_/g, ' ')}: ${probe}`,
        `nopdb_lab.store[${record}].attribution`
      );
    };

    /** The edit view of a probe input; with `attributeRun`, its Attribute… form out. */
    const openEditor = (
      bridge: KernelBridge,
      session: ProbeSession,
      probes: IProbeInfo[],
      probe: string,
      wanted: string | undefined,
      attributeRun?: number
    ) => {
      const info = probes.find(p => p.name === probe);
      if (!info) {
        throw new Error(
          `the kernel has no probe named ${JSON.stringify(probe)}`
        );
      }
      const input = wanted ?? info.inputs.find(i => i.editable)?.name;
      const inputInfo = info.inputs.find(i => i.name === input);
      if (!input || !inputInfo || !inputInfo.editable) {
        throw new Error(
          `probe ${JSON.stringify(probe)} has no tensor input ${JSON.stringify(input)}`
        );
      }
      const newest = info.runs[info.runs.length - 1];
      const heatmap = new HeatmapModel({
        bridge,
        captureId: newest?.record ?? 0,
        path: ['locals', 'inputs', input],
        expression: `nopdb_lab.get_probe(${JSON.stringify(probe)}).inputs[${JSON.stringify(input)}]`,
        shape: inputInfo.shape,
        signed: false,
        live: { probe, input }
      });
      const model = new ProbeEditModel(session, probe, input, heatmap);
      const content = new ProbeEditWidget(
        model,
        (record, options) => {
          openAttribution(bridge, session, probe, record, options).catch(err =>
            Notification.error(`Opening the attribution failed: ${err.message}`)
          );
        },
        attributeRun
      );
      show(content, `${probe} · ${input} (edit)`, heatmap.source.expression);
    };

    const current = (): [KernelBridge, ProbeSession] => {
      const bridge = connections.current;
      if (!bridge) {
        throw new Error('no notebook is open');
      }
      return [bridge, probeSessionOf(bridge, connectionOf(bridge))];
    };

    app.commands.addCommand(ProbeCommandIDs.editInput, {
      label: args =>
        args.probe
          ? `Edit Input ${args.input ?? ''} of Probe ${args.probe}`
          : 'Edit a Probe Input…',
      execute: async args => {
        try {
          const [bridge, session] = current();
          let probe = args.probe as string | undefined;
          const probes = await session.list();
          if (!probe) {
            if (!probes.length) {
              throw new Error(
                'the kernel has no probes; make one with nopdb_lab.probe(name, fn, x=...)'
              );
            }
            const picked = await InputDialog.getItem({
              title: 'Edit a probe input',
              items: ([] as string[]).concat(
                ...probes.map(p =>
                  p.inputs
                    .filter(i => i.editable)
                    .map(i => `${p.name} · ${i.name}`)
                )
              )
            });
            if (!picked.button.accept || !picked.value) {
              return;
            }
            const [name, input] = picked.value.split(' · ');
            probe = name;
            args = { probe: name, input };
          }
          openEditor(
            bridge,
            session,
            probes,
            probe,
            args.input as string | undefined
          );
        } catch (err) {
          Notification.error(
            `Cannot edit a probe input: ${(err as Error).message}`
          );
        }
      }
    });

    app.commands.addCommand(ProbeCommandIDs.attribute, {
      label: 'Attribute a Probe…',
      execute: async args => {
        try {
          const [bridge, session] = current();
          const probe = args.probe as string;
          const options: IAttributeOptions = {
            method: (args.method as string) ?? 'integrated_gradients',
            steps: args.steps as number | undefined,
            baseline: args.baseline as number | undefined,
            internal_batch_size: args.internal_batch_size as number | undefined
          };
          const done = await session.attribute(probe, options);
          await openAttribution(bridge, session, probe, done.record, options);
        } catch (err) {
          Notification.error(`Attribution failed: ${(err as Error).message}`);
        }
      }
    });

    app.commands.addCommand(ProbeCommandIDs.attributeValue, {
      label: 'Attribute…',
      caption: "Attribute the probe run's objective to this input",
      execute: async args => {
        try {
          const [bridge, session] = current();
          const captureId = Number(args.captureId);
          const path = (args.path as unknown[]) ?? [];
          const input = runInputOf(path);
          if (input === null) {
            throw new Error(
              "only a run's inputs, gradients, changes and deltas (one per input) " +
                'can be attributed, not ' +
                JSON.stringify(path)
            );
          }
          const probes = await session.list();
          for (const probe of probes) {
            const run = probe.runs.find(r => r.record === captureId);
            if (run) {
              openEditor(
                bridge,
                session,
                probes,
                probe.name,
                input,
                run.number
              );
              return;
            }
          }
          throw new Error(
            `capture #${captureId} is not a run of any probe the kernel has now ` +
              '(the probe was made again or deleted)'
          );
        } catch (err) {
          Notification.error(`Cannot attribute: ${(err as Error).message}`);
        }
      }
    });

    app.commands.addCommand(ProbeCommandIDs.openAttribution, {
      label: 'Open as Attribution',
      execute: async args => {
        try {
          const [bridge, session] = current();
          const record = Number(args.captureId);
          const info = await session.attributionOf(record);
          await openAttribution(
            bridge,
            session,
            info.probe,
            record,
            { method: info.method, run: info.run },
            false
          );
        } catch (err) {
          Notification.error(
            `Cannot open the attribution: ${(err as Error).message}`
          );
        }
      }
    });

    palette?.addItem({
      command: ProbeCommandIDs.editInput,
      category: PALETTE_CATEGORY
    });
  }
};
