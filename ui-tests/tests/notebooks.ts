/** Helpers shared by the UI tests and the viewer benchmark. */
import * as fs from 'fs';

import { expect, IJupyterLabPageFixture } from '@jupyterlab/galata';
import { Locator, TestInfo } from '@playwright/test';

/** Upload a notebook made of these code cells (Python 3 kernel) and open it. */
export async function openCodeNotebook(
  page: IJupyterLabPageFixture,
  path: string,
  cells: string[]
): Promise<void> {
  const notebook = {
    cells: cells.map(source => ({
      cell_type: 'code',
      execution_count: null,
      metadata: {},
      outputs: [],
      source
    })),
    metadata: {
      kernelspec: {
        name: 'python3',
        display_name: 'Python 3 (ipykernel)',
        language: 'python'
      }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  await page.contents.uploadContent(JSON.stringify(notebook), 'text', path);
  await page.notebook.openByPath(path);
}

export const browser = (page: IJupyterLabPageFixture) =>
  page.locator('#jp-nopdb-lab-browser');
export const rows = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-captureRow');
export const status = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-status');
/** Write a notebook with these code cells, open it, and wait for the panel to connect. */
export async function openNotebook(
  page: IJupyterLabPageFixture,
  tmpPath: string,
  name: string,
  cells: string[],
  expectedStatus = 'ready'
): Promise<void> {
  await openCodeNotebook(page, `${tmpPath}/${name}`, cells);
  await page.notebook.activate(name);
  await page.sidebar.openTab('jp-nopdb-lab-browser');
  await expect(browser(page)).toBeVisible();
  await expect(status(page)).toHaveAttribute('data-status', expectedStatus, {
    timeout: 60000
  });
}

/** Run one cell and wait for it to finish. */
export async function run(
  page: IJupyterLabPageFixture,
  index: number
): Promise<void> {
  await page.notebook.runCell(index, { inplace: true });
}

export async function restartKernel(
  page: IJupyterLabPageFixture
): Promise<void> {
  await page.menu.clickMenuItem('Kernel>Restart Kernel…');
  await page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-warn').click();
}

/** Save a screenshot as a test artefact. */
export async function keepScreenshot(
  page: IJupyterLabPageFixture,
  testInfo: TestInfo,
  name: string
): Promise<void> {
  const path = testInfo.outputPath(`${name}.png`);
  await page.screenshot({ path });
  await testInfo.attach(name, { path, contentType: 'image/png' });
  if (README_SCREENSHOTS.has(name)) {
    // the README's pictures are these screenshots: every Galata run renews them
    fs.mkdirSync(SCREENSHOTS_DIR, { recursive: true });
    fs.copyFileSync(path, `${SCREENSHOTS_DIR}/${name}.png`);
  }
}

/** The screenshots the README shows (docs/screenshots/<name>.png), 1600×1000. */
const README_SCREENSHOTS = new Set([
  'cell-names-folded-stack',
  'heatmap-right-split',
  'stack-layer-strip',
  'flow-input-values',
  'probe-delta-and-attribution',
  'show-inline-viewer',
  'long-attention-zoomed',
  'attention-sink-grid'
]);
const SCREENSHOTS_DIR = `${__dirname}/../../docs/screenshots`;

/** A value row in the details view, by its path (`'locals', 'attn'`). */
export function value(details: Locator, ...path: string[]): Locator {
  return details.locator(
    `.jp-NopdbLab-value[data-path='${JSON.stringify(path)}']`
  );
}

/** Hover a value row and click one of its actions (they show on hover). */
export async function valueAction(row: Locator, action: string): Promise<void> {
  await row.locator('.jp-NopdbLab-valueRow').first().hover();
  await row.getByRole('button', { name: action }).first().click();
}

/** How many colours a canvas holds (a painted map has more than a few). */
export function colourCount(canvas: Locator): Promise<number> {
  return canvas.evaluate((el: HTMLCanvasElement) => {
    const data = el
      .getContext('2d')!
      .getImageData(0, 0, el.width, el.height).data;
    const colours = new Set<number>();
    for (let i = 0; i < data.length; i += 4) {
      colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    return colours.size;
  });
}
