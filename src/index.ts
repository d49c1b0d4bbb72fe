/**
 * nopdb-lab's JupyterLab plugins. Each provides a token the others ask for (as
 * JupyterLab's debugger does):
 * - kernel: one KernelBridge per notebook panel (IKernelConnections)
 * - sources: read-only source views of files the kernel runs (ISourceOpener)
 * - heatmap: captured tensors as heatmaps (IHeatmapOpener)
 * - captures: the capture browser sidebar (ICaptureBrowser)
 * - breakpoints: gutters, the Breakpoints section, F9 (IBreakpointRegistry)
 * User actions are commands (see commands.ts), so they can be rebound and tested.
 */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';

import { breakpointsPlugin } from './breakpoints/plugin';
import { flowPlugin } from './flow/plugin';
import { renderPlugin } from './render/plugin';
import { bundlesPlugin } from './bundles/plugin';
import { bundleViewerPlugin } from './bundles/viewer';
import { capturesPlugin } from './captures/plugin';
import { heatmapPlugin } from './heatmap/plugin';
import { kernelPlugin } from './kernel/plugin';
import { probesPlugin } from './probes/plugin';
import { sourcesPlugin } from './sources/plugin';

export { CommandIDs } from './commands';
export * from './tokens';

const plugins: JupyterFrontEndPlugin<any>[] = [
  kernelPlugin,
  sourcesPlugin,
  heatmapPlugin,
  capturesPlugin,
  breakpointsPlugin,
  flowPlugin,
  renderPlugin,
  probesPlugin,
  bundlesPlugin,
  bundleViewerPlugin
];

export default plugins;
