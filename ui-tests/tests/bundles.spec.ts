/**
 * Capture bundles (issue 14): save the store as a bundle, restart the kernel, open the
 * bundle from the file browser (a kernel-backed viewer), open a heatmap from it and
 * compare two captures (the painted difference equals the kernel's A − B).
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import {
  browser,
  keepScreenshot,
  openNotebook,
  restartKernel,
  rows,
  run,
  value,
  valueAction
} from './notebooks';

// A is 0..19 (max 19), B is all 0.5: A − B at [2, 3] is 12.5
const CAPTURE_CELL = `import torch, nopdb_lab
def layer(x):
    y = x * 2
    return y

with nopdb_lab.capture_calls(layer):
    layer(torch.arange(20.0).reshape(4, 5))
    layer(torch.full((4, 5), 0.5))
len(nopdb_lab.store)`;

const KERNEL_DIFF_CELL = `import nopdb_lab
r = nopdb_lab.load_captures("bundles.nopdb")
a = next(c for c in r if float(c.args["x"].max()) == 19)
b = next(c for c in r if c is not a)
print(float((a.args["x"] - b.args["x"])[2, 3]))`;

async function output(page: IJupyterLabPageFixture, index: number) {
  return (await page.notebook.getCellTextOutput(index))?.join('').trim() ?? '';
}

test.use({ kernels: null, viewport: { width: 1600, height: 1000 } });

test('save the store as a bundle, reopen it after a restart, heatmap and compare', async ({
  page,
  tmpPath
}, testInfo) => {
  await openNotebook(page, tmpPath, 'bundles.ipynb', [CAPTURE_CELL, '']);
  await run(page, 0);
  await expect(rows(page)).toHaveCount(2);

  // save everything: the dialog proposes <notebook>.nopdb next to the notebook
  await browser(page)
    .getByRole('button', { name: /^Save bundle/ })
    .click();
  const input = page.locator('.jp-Dialog .jp-NopdbLab-bundlePath');
  await expect(input).toHaveValue(`${tmpPath}/bundles.nopdb`);
  await keepScreenshot(page, testInfo, 'save-dialog');
  await page
    .locator('.jp-Dialog')
    .getByRole('button', { name: 'Save' })
    .click();
  await expect(
    page.getByText(/Saved 2 captures to .*bundles\.nopdb/)
  ).toBeVisible({ timeout: 90000 });

  // a new kernel process: the store is empty
  await restartKernel(page);
  await expect(rows(page)).toHaveCount(0, { timeout: 60000 });

  // the bundle in the file browser, with its own icon; double-click opens the viewer
  await page.filebrowser.openDirectory(tmpPath);
  const item = page.locator('.jp-DirListing-item', {
    hasText: 'bundles.nopdb'
  });
  await expect(item).toBeVisible();
  // the viewer reads the bundle in the kernel: the page asks the contents API for the
  // file's metadata only, never for its bytes (a bundle can be gigabytes)
  const contentRequests: string[] = [];
  page.on('request', request => {
    const url = request.url();
    // the file's own model (its checkpoints list carries no content anyway)
    if (
      url.includes('/api/contents/') &&
      url.includes('bundles.nopdb') &&
      !url.includes('/checkpoints')
    ) {
      contentRequests.push(url);
    }
  });
  await item.dblclick();
  const viewer = page.locator('.jp-NopdbLab-bundleViewer');
  await expect(viewer.locator('.jp-NopdbLab-bundleStatus')).toContainText(
    '2 captures from bundles.nopdb',
    { timeout: 90000 }
  );
  const viewerRows = viewer.locator('.jp-NopdbLab-captureRow');
  await expect(viewerRows).toHaveCount(2);
  await expect(viewerRows.first().locator('.jp-NopdbLab-bundleTag')).toHaveText(
    'bundles.nopdb'
  );
  await keepScreenshot(page, testInfo, 'viewer');
  expect(contentRequests.length).toBeGreaterThan(0);
  for (const url of contentRequests) {
    expect(url).toContain('content=0');
  }

  // find A (the arange capture) and B
  let aIndex = -1;
  for (const i of [0, 1]) {
    await viewerRows.nth(i).click();
    const x = value(viewer.locator('.jp-NopdbLab-details'), 'args', 'x');
    await expect(x).toContainText('[4, 5]');
    if (((await x.textContent()) ?? '').includes('19')) {
      aIndex = i;
    }
  }
  expect(aIndex).toBeGreaterThanOrEqual(0);
  const details = viewer.locator('.jp-NopdbLab-details');

  // a heatmap from the bundle
  await viewerRows.nth(aIndex).click();
  await valueAction(value(details, 'args', 'x'), 'Open as heatmap');
  const heatmaps = page.locator('.jp-NopdbLab-heatmap');
  await expect(
    heatmaps.first().locator('.jp-NopdbLab-heatmapStatus')
  ).toContainText('4×5');
  await keepScreenshot(page, testInfo, 'bundle-heatmap');

  // compare: A then B, the difference opens as a heatmap
  await page.getByRole('tab', { name: 'bundles.nopdb' }).click();
  await viewerRows.nth(aIndex).click();
  await valueAction(value(details, 'args', 'x'), 'Compare with…');
  await viewerRows.nth(1 - aIndex).click();
  await valueAction(value(details, 'args', 'x'), 'Compare with…');
  await expect(heatmaps).toHaveCount(2, { timeout: 30000 });
  const diffMap = heatmaps.last();
  await expect(diffMap.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
    '4×5'
  );
  const canvas = diffMap.locator('.jp-NopdbLab-heatmapCanvas');
  await canvas.scrollIntoViewIfNeeded();
  const box = (await canvas.boundingBox())!;
  await canvas.hover({
    position: { x: (3.5 * box.width) / 5, y: (2.5 * box.height) / 4 }
  });
  const tooltip = diffMap.locator('.jp-NopdbLab-heatmapTooltip');
  await expect(tooltip).toContainText('row 2, column 3: ');
  const shown = Number((await tooltip.textContent())!.split(': ')[1]);
  await keepScreenshot(page, testInfo, 'compare');

  // the kernel's own A − B at [2, 3], from the same bundle
  await page.notebook.activate('bundles.ipynb');
  await page.notebook.setCell(1, 'code', KERNEL_DIFF_CELL);
  await run(page, 1);
  const expected = Number(await output(page, 1));
  expect(expected).toBe(12.5);
  expect(shown).toBe(expected);
});
