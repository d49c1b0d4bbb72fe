/**
 * The notebook's stop button ends a request the kernel serves for the UI (issue 16):
 * JupyterLab >= 4.6 sends comm messages through a kernel subshell, a thread SIGINT never
 * reaches; nopdb-lab follows the stop button with a silent request on the main shell that
 * interrupts them. A labels expression that never ends is stopped, the viewer says so,
 * and the kernel goes on (cells and requests).
 */
import { expect, test } from '@jupyterlab/galata';

import { keepScreenshot, openNotebook, rows, run } from './notebooks';

const CELL = `import numpy as np, nopdb_lab
def scores(n):
    s = np.arange(n * n, dtype=np.float32).reshape(n, n)
    return s
with nopdb_lab.capture_calls(scores):
    scores(4)`;

test.use({ kernels: null });

test('the stop button interrupts a never-ending labels expression', async ({
  page,
  tmpPath
}, testInfo) => {
  await page.setViewportSize({ width: 1600, height: 1000 });
  await openNotebook(page, tmpPath, 'interrupt.ipynb', [CELL, 'print(6 * 7)']);
  await run(page, 0);
  await expect(rows(page)).toHaveCount(1);
  await rows(page).first().click();
  const details = page.locator('.jp-NopdbLab-details');
  const s = details.locator('.jp-NopdbLab-value[data-path=\'["locals","s"]\']');
  await s.locator('.jp-NopdbLab-valueRow').first().hover();
  await s.getByRole('button', { name: 'Open as heatmap' }).first().click();
  const viewer = page.locator('.jp-NopdbLab-heatmap');
  await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
    '4×4'
  );

  // Python that runs forever (in Python bytecode, where an interrupt is seen)
  const labels = viewer.getByLabel('Labels expression');
  await labels.fill('any(x for x in iter(int, 1))');
  await viewer.getByRole('button', { name: 'Apply' }).first().click();
  await page.waitForTimeout(1500); // it is running in the kernel now

  await page.notebook.activate('interrupt.ipynb');
  await page
    .locator('.jp-NotebookPanel-toolbar')
    .getByTitle('Interrupt the kernel')
    .click();
  await page.locator('.lm-TabBar-tab', { hasText: 'store[' }).click();
  await expect(viewer.locator('.jp-NopdbLab-error')).toContainText(
    "was interrupted (the kernel's stop button) before it finished",
    { timeout: 20000 }
  );
  await keepScreenshot(page, testInfo, 'interrupted-labels');

  // the kernel goes on: a cell runs, and the viewer's next request is answered
  await page.notebook.activate('interrupt.ipynb');
  await run(page, 1);
  expect(await page.notebook.getCellTextOutput(1)).toEqual(['42\n']);
  await page.locator('.lm-TabBar-tab', { hasText: 'store[' }).click();
  await labels.fill("['a', 'b', 'c', 'd']");
  await viewer.getByRole('button', { name: 'Apply' }).first().click();
  await expect(viewer.getByLabel('Row labels')).toContainText('d');
  await expect(viewer.locator('.jp-NopdbLab-error')).toHaveCount(0);
});
