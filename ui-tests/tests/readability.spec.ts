/**
 * What a user reads at a common 1600×1000 window (issue 17): hits of a notebook cell
 * named by the cell (`Cell 1 [1], line 2`), never ipykernel's temporary file, in the
 * list, the details and the stack; the kernel's machinery frames folded behind one
 * line; evaluated expressions as `expression → value`; hit totals kept across an edit
 * of the breakpoint and a page reload.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

import { browser, keepScreenshot, openNotebook, rows, run } from './notebooks';

const DEFINE = `def scale(x):
    y = x * 10
    return y + 1`;
const CALL = `import torch
out = scale(torch.arange(3.0))`;

const section = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-breakpointsView');
const bpRows = (page: IJupyterLabPageFixture) =>
  section(page).locator('.jp-NopdbLab-bpRow');
const cellEditor = (page: IJupyterLabPageFixture, index: number) =>
  page.locator('.jp-Notebook .jp-CodeCell').nth(index).locator('.cm-editor');
const marker = (editor: Locator, line: number) =>
  editor.locator(`.jp-NopdbLab-bp[data-line="${line}"]`);

/** Click the breakpoint gutter left of a line of a cell's editor. */
async function clickGutter(
  page: IJupyterLabPageFixture,
  editor: Locator,
  line: number
): Promise<void> {
  const gutter = await editor
    .locator('.jp-NopdbLab-breakpointGutter')
    .boundingBox();
  const box = await editor
    .locator('.cm-line')
    .nth(line - 1)
    .boundingBox();
  if (!gutter || !box) {
    throw new Error('the gutter or the line is not visible');
  }
  await page.mouse.click(gutter.x + gutter.width / 2, box.y + box.height / 2);
}

test.use({ kernels: null, viewport: { width: 1600, height: 1000 } });

test('cells by name, folded kernel frames, expression → value, hit totals', async ({
  page,
  tmpPath
}, testInfo) => {
  await openNotebook(page, tmpPath, 'readable.ipynb', [DEFINE, CALL]);
  const editor = cellEditor(page, 0);
  await run(page, 0);
  await clickGutter(page, editor, 2);
  await expect(marker(editor, 2)).toHaveAttribute('data-status', 'active');
  await bpRows(page).first().locator('.jp-NopdbLab-bpStatus').click();
  const newExpression = section(page).getByLabel('New expression');
  await newExpression.fill('x * 10');
  await newExpression.press('Enter');
  await expect(
    section(page).getByRole('textbox', { name: 'Expression 1' })
  ).toHaveValue('x * 10');
  await run(page, 1);

  // the list names the cell, not ipykernel's /tmp/ipykernel_…/<hash>.py
  await expect(rows(page)).toHaveCount(1);
  const row = rows(page).first();
  await expect(row).toContainText('Cell 1 [1], line 2');
  await expect(row).not.toContainText(/\d+\.py/);
  await row.click();
  const details = browser(page).locator('.jp-NopdbLab-details');
  await expect(
    details.locator('.jp-NopdbLab-detailsHeader .jp-NopdbLab-place')
  ).toHaveText('Cell 1 [1], line 2');

  // expression → value, a tensor summary on two lines
  const evaluated = details.locator(
    `.jp-NopdbLab-value[data-path='["evals","x * 10"]'] .jp-NopdbLab-valueRow`
  );
  await expect(evaluated.locator('.jp-NopdbLab-evalArrow')).toHaveText('→');
  await expect(evaluated).toContainText('x * 10→float32[3]');
  const summary = evaluated.locator('.jp-NopdbLab-tensorSummary');
  const lineHeight = await summary
    .locator('.jp-NopdbLab-shape')
    .evaluate(e => e.getBoundingClientRect().height);
  const height = (await summary.boundingBox())?.height ?? 0;
  expect(height).toBeLessThanOrEqual(2 * lineHeight + 2);

  // the stack: the user's cells by name, the kernel's machinery folded behind one line
  const stack = details.locator('.jp-NopdbLab-stack').first();
  const frames = stack.locator(':scope > li > .jp-NopdbLab-frame');
  await expect(frames.first()).toContainText('scale');
  await expect(frames.first()).toContainText('Cell 1 [1], line 2');
  await expect(frames.nth(1)).toContainText('Cell 2 [2], line 2');
  await expect(stack).not.toContainText(/\d+\.py/);
  const fold = stack.locator('.jp-NopdbLab-foldToggle');
  await expect(fold).toHaveCount(1);
  await expect(fold).toContainText(/\d+ kernel frames/);
  await expect(stack).not.toContainText('interactiveshell.py');
  await keepScreenshot(page, testInfo, 'cell-names-folded-stack');
  await fold.click();
  await expect(stack).toContainText('interactiveshell.py');
  await keepScreenshot(page, testInfo, 'kernel-frames-unfolded');
  await fold.click();

  // the capture list has room for more than four rows at 1000 px
  const list = browser(page).locator('.jp-NopdbLab-captureList');
  const listHeight = (await list.boundingBox())?.height ?? 0;
  const rowHeight = (await row.boundingBox())?.height ?? 1;
  expect(listHeight / rowHeight).toBeGreaterThan(5);

  // big captures open in the main area, named the same way
  await details.getByRole('button', { name: 'Open in the main area' }).click();
  const mainDetails = page.locator('.jp-NopdbLab-detailsMain');
  await expect(
    mainDetails.locator('.jp-NopdbLab-detailsHeader .jp-NopdbLab-place')
  ).toHaveText('Cell 1 [1], line 2');
  await keepScreenshot(page, testInfo, 'details-in-main-area');
  // the sidebar's details did not scroll sideways: the title starts at its left edge
  const title = details.locator('.jp-NopdbLab-detailsTitle');
  const titleBox = (await title.boundingBox())!;
  const sidebarBox = (await browser(page).boundingBox())!;
  expect(titleBox.x).toBeGreaterThanOrEqual(sidebarBox.x);
  await page.locator('.lm-TabBar-tab', { hasText: 'readable.ipynb' }).click();

  // moving the cells: the names follow the cell
  await page.notebook.selectCells(1);
  await page.keyboard.press('Escape');
  await page.menu.clickMenuItem('Edit>Move Cell Up');
  await expect(row).toContainText('Cell 2 [1], line 2');

  // hit totals: an edit re-sets the breakpoint in the kernel, the count does not drop
  const count = bpRows(page).first().locator('.jp-NopdbLab-bpHitCount');
  await expect(count).toHaveText('1');
  const condition = section(page).getByLabel('Condition');
  await condition.fill('x.sum() > 0');
  await condition.press('Enter');
  await expect(count).toHaveText('1 (0 new)');
  const moved = cellEditor(page, 1); // the definition is the second cell now
  await expect(marker(moved, 2).locator('.jp-NopdbLab-bpHits')).toHaveText('1');
  await run(page, 0); // the call cell is first now
  await expect(rows(page)).toHaveCount(2);
  await expect(count).toHaveText('2 (1 new)');
  await expect(marker(moved, 2).locator('.jp-NopdbLab-bpHits')).toHaveText('2');
  await keepScreenshot(page, testInfo, 'hit-totals-after-edit');

  // a reload: the front end re-syncs its breakpoints, the kernel keeps the totals
  await page.notebook.save();
  await page.reload({ waitForIsReady: false });
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  await page.locator('.lm-TabBar-tab', { hasText: 'readable.ipynb' }).click();
  await page.sidebar.openTab('jp-nopdb-lab-browser');
  await expect(rows(page)).toHaveCount(2, { timeout: 60000 });
  await expect(
    bpRows(page).first().locator('.jp-NopdbLab-bpHitCount')
  ).toHaveText('2 (0 new)', { timeout: 60000 });
  await expect(
    marker(cellEditor(page, 1), 2).locator('.jp-NopdbLab-bpHits')
  ).toHaveText('2');
  await keepScreenshot(page, testInfo, 'hit-totals-after-reload');
});

const HEATMAP_CELLS = [
  `import torch, nopdb_lab

def attend(q, k):
    attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    return attn`,
  `with nopdb_lab.capture_calls(attend):
    attend(torch.randn(2, 24, 8), torch.randn(2, 24, 8))`
];

/** Whether an element is wholly inside the window. */
async function inViewport(
  page: IJupyterLabPageFixture,
  element: Locator
): Promise<boolean> {
  const box = await element.boundingBox();
  const size = page.viewportSize()!;
  return (
    !!box &&
    box.y >= 0 &&
    box.x >= 0 &&
    box.y + box.height <= size.height &&
    box.x + box.width <= size.width
  );
}

test('the heatmap in a right split keeps map, colour bar and readout in view', async ({
  page,
  tmpPath
}, testInfo) => {
  await openNotebook(page, tmpPath, 'heatmap-fit.ipynb', HEATMAP_CELLS);
  await run(page, 0);
  await run(page, 1);
  await expect(rows(page)).toHaveCount(1);
  await rows(page).first().click();
  const details = browser(page).locator('.jp-NopdbLab-details');
  const attn = details.locator(
    `.jp-NopdbLab-value[data-path='["locals","attn"]']`
  );
  await attn.locator('.jp-NopdbLab-valueRow').first().hover();
  await attn.getByRole('button', { name: 'Open as heatmap' }).click();

  // the viewer opens split to the right of the notebook
  const viewer = page.locator('.jp-NopdbLab-heatmap');
  await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
    '24×24'
  );
  const notebookBox = (await page
    .locator('.jp-NotebookPanel')
    .first()
    .boundingBox())!;
  const viewerBox = (await viewer.boundingBox())!;
  expect(viewerBox.x).toBeGreaterThan(notebookBox.x + notebookBox.width / 2);

  const canvas = viewer.locator('.jp-NopdbLab-heatmapCanvas');
  const box = (await canvas.boundingBox())!;
  await page.mouse.move(
    box.x + (5.5 * box.width) / 24,
    box.y + (20.5 * box.height) / 24
  );
  const readout = viewer.locator('.jp-NopdbLab-heatmapTooltip');
  await expect(readout).toContainText('row 20, column 5: ');
  // all three in the window together, without scrolling
  expect(await inViewport(page, canvas)).toBe(true);
  expect(await inViewport(page, viewer.getByLabel('Colour bar'))).toBe(true);
  expect(await inViewport(page, readout)).toBe(true);
  expect(box.width).toBeGreaterThan(200); // scaled to fit, not shrunk to a stamp
  await keepScreenshot(page, testInfo, 'heatmap-right-split');
});
