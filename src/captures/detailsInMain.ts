/**
 * Big captures read better wide: the details of one capture in a main-area tab (the
 * sidebar's Details section stays as it is), and the sidebar's sections sharing its
 * height so the capture list shows more than a handful of rows.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { CommandRegistry } from '@lumino/commands';
import { AccordionPanel } from '@lumino/widgets';
import { SidePanel, tableRowsIcon } from '@jupyterlab/ui-components';

import { BrowserModel } from './browserModel';
import { CaptureDetailsView } from './CaptureDetails';

import { OPEN_DETAILS_IN_MAIN } from './detailsCommand';

/** Register the command; it follows the browser's notebook and cells at the time. */
export function addOpenDetailsCommand(
  app: JupyterFrontEnd,
  browser: BrowserModel
): void {
  let count = 0;
  app.commands.addCommand(OPEN_DETAILS_IN_MAIN, {
    label: args =>
      args.captureId === undefined
        ? 'Open the Selected Capture in the Main Area'
        : `Open Capture #${args.captureId} in the Main Area`,
    icon: args => (args.captureId === undefined ? tableRowsIcon : undefined),
    isEnabled: args =>
      browser.bridge?.state.status === 'ready' &&
      (args.captureId !== undefined || browser.selectedId !== null),
    describedBy: {
      args: {
        type: 'object',
        properties: { captureId: { type: 'number' } }
      }
    },
    execute: args => {
      const id = (args.captureId as number | undefined) ?? browser.selectedId;
      if (id === null || !browser.bridge) {
        return;
      }
      const model = new BrowserModel();
      model.follow(browser.bridge, browser.label);
      model.setCellNames(browser.cellNames);
      model.select(id);
      const content = new CaptureDetailsView(
        model,
        app.commands as CommandRegistry
      );
      content.addClass('jp-NopdbLab-detailsMain');
      const widget = new MainAreaWidget({ content });
      widget.id = `nopdb-lab-details-${++count}`;
      widget.title.label = `Capture #${id}`;
      widget.title.caption = `Capture #${id} of ${browser.label}`;
      widget.title.icon = tableRowsIcon;
      widget.title.closable = true;
      app.shell.add(widget, 'main', { mode: 'split-right' });
      app.shell.activateById(widget.id);
    }
  });
}

/**
 * Give the capture list, the details and the breakpoints 42/34/24 % of the sidebar's
 * height (equal thirds leave the list four rows at 1000 px); the user resizes them
 * by dragging the section headers' borders as in JupyterLab's debugger sidebar.
 */
export function shareSidebarHeight(sidebar: SidePanel): void {
  const content = sidebar.content as AccordionPanel;
  if (!(content instanceof AccordionPanel)) {
    return;
  }
  const sizes = [0.42, 0.34, 0.24].slice(0, content.widgets.length);
  if (sizes.length > 1) {
    content.setRelativeSizes(sizes);
  }
}
