/**
 * Pictures in the notebook (issue 17): `nopdb_lab.show(...)` draws the interactive heatmap
 * viewer in the cell's output (a painted canvas whose readout is the kernel's value, token
 * labels on the axes) and keeps a static PNG in the same output, so the saved notebook
 * shows the picture elsewhere; when the kernel no longer holds the value (a restart) the
 * output shows the PNG and says why.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  colourCount,
  keepScreenshot,
  openNotebook,
  restartKernel,
  run
} from './notebooks';

const CELL = `import torch, nopdb_lab
torch.manual_seed(0)
attn = torch.softmax(torch.randn(2, 5, 5), dim=-1)
tokens = ["[CLS]", "the", "cat", "sat", "[SEP]"]
nopdb_lab.show(attn, labels=tokens, title="attention")`;

const VIEW_MIME = 'application/vnd.nopdb-lab.view+json';

test.use({ kernels: null });

test('show() draws the interactive viewer in the output, with a PNG kept for elsewhere', async ({
  page,
  tmpPath
}, testInfo) => {
  await page.setViewportSize({ width: 1600, height: 1000 });
  await openNotebook(page, tmpPath, 'show.ipynb', [
    CELL,
    'print(attn[0, 2, 3].item())'
  ]);
  await run(page, 0);
  const output = page.locator('.jp-OutputArea-output').first();
  const viewer = output.locator('.jp-NopdbLab-heatmapWidget.jp-mod-inline');
  await expect(viewer).toBeVisible({ timeout: 30000 });
  await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
    '5×5'
  );
  // the two heads as a grid of maps, as show() drew them
  const tiles = viewer.locator('.jp-NopdbLab-heatmapTile');
  await expect(tiles).toHaveCount(2);
  const map = tiles.first().locator('canvas');
  await map.scrollIntoViewIfNeeded();
  // painted: more than one colour on the canvas
  await expect.poll(() => colourCount(map)).toBeGreaterThan(3);
  const box = (await map.boundingBox())!;
  await map.hover({ position: { x: box.width * 0.7, y: box.height * 0.5 } });
  const readout = viewer.locator('.jp-NopdbLab-heatmapTooltip');
  // the token labels name the rows and columns of the hovered cell
  await expect(readout).toContainText(
    'dim 0 = 0, row 2 "cat", column 3 "sat": '
  );
  const shown = (await readout.textContent())!.split(': ')[1];
  await keepScreenshot(page, testInfo, 'show-inline-viewer');
  await run(page, 1);
  expect(await page.notebook.getCellTextOutput(1)).toEqual([`${shown}\n`]);

  // the saved notebook holds the PNG beside the view, for GitHub, nbconvert, no extension
  await page.notebook.save();
  const saved = await page.request.get(
    `/api/contents/${tmpPath}/show.ipynb?content=1`
  );
  const notebook = (await saved.json()).content;
  const data = notebook.cells[0].outputs[0].data;
  expect(Object.keys(data)).toEqual(
    expect.arrayContaining(['image/png', VIEW_MIME, 'text/plain'])
  );
  expect(data['image/png'].length).toBeGreaterThan(1000);

  // a new kernel no longer holds the value: the output shows the PNG and says why
  await restartKernel(page);
  await page.reload({ waitForIsReady: false });
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  await page.locator('.lm-TabBar-tab', { hasText: 'show.ipynb' }).click();
  const fallback = page.locator('.jp-NopdbLab-viewOutput').first();
  await expect(fallback.locator('img')).toBeVisible({ timeout: 60000 });
  await expect(fallback).toContainText('Static picture: #', { timeout: 60000 });
  await expect(fallback).toContainText(
    'run the cell again for the interactive view'
  );
  await expect(fallback.locator('.jp-NopdbLab-heatmapWidget')).toHaveCount(0);
});
