/**
 * The capture browser, as a user drives it: run a cell that captures calls of a small
 * torch attention module, watch the captures arrive, open one, read its locals and tensor
 * summary, open a stack frame's source, and survive a kernel restart.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { Locator, Page } from '@playwright/test';

import {
  browser,
  keepScreenshot,
  openNotebook,
  restartKernel,
  rows,
  run,
  status,
  value,
  valueAction
} from './notebooks';

const MODEL_CELL = `import time, torch, nopdb_lab
torch.manual_seed(0)

class Attention(torch.nn.Module):
    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, dim * 3)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))

model = torch.nn.Sequential(Attention(), Attention())`;

const CAPTURE_CELL = `with torch.no_grad(), nopdb_lab.capture_calls(Attention.forward) as calls:
    model(torch.randn(1, 5, 16))
len(calls)`;

// fused attention has no `attn` local; capture_attention records its probabilities
const FUSED_CELL = `class Fused(Attention):
    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

fused = torch.nn.Sequential(Fused(), Fused())
with torch.no_grad(), nopdb_lab.capture_attention() as attns:
    fused(torch.randn(1, 5, 16))
[a.module for a in attns]`;

// captures must show up while the cell is still running
const SLOW_CELL = `with torch.no_grad(), nopdb_lab.capture_calls(Attention.forward):
    for _ in range(3):
        model(torch.randn(1, 5, 16))
        time.sleep(1.5)
    time.sleep(8)`;

const listView = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-listView');

/** Run the notebook's first `count` cells, in order. */
async function runCells(
  page: IJupyterLabPageFixture,
  count: number
): Promise<void> {
  for (let index = 0; index < count; index++) {
    await run(page, index);
  }
}

/** Select the oldest capture in the list; returns the details view. */
async function selectOldestCapture(
  page: IJupyterLabPageFixture
): Promise<Locator> {
  await rows(page).last().click();
  return browser(page).locator('.jp-NopdbLab-details');
}

// Galata's kernel-tracking mock answers every POST under /api/kernels with 201, which
// JupyterLab rejects for a restart ("Invalid response: 201 Created"); these tests restart
// kernels, so they talk to the real kernels API.
test.use({ kernels: null });

test.describe('capture browser', () => {
  test('lists captures, shows locals with tensor summaries, opens source', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'captures.ipynb', [
      MODEL_CELL,
      CAPTURE_CELL,
      'len(nopdb_lab.store)'
    ]);
    await run(page, 0);
    await expect(listView(page)).toContainText('Nothing captured yet');

    await run(page, 1);
    await expect(rows(page)).toHaveCount(2);
    await expect(rows(page).first()).toContainText('Attention.forward');
    await expect(status(page)).toContainText('2 captures');

    // newest first: the second layer's call is on top
    const ids = await rows(page).evaluateAll(els =>
      els.map(el => Number(el.getAttribute('data-capture-id')))
    );
    expect(ids[0]).toBeGreaterThan(ids[1]);

    await rows(page).last().click();
    const details = browser(page).locator('.jp-NopdbLab-details');
    await expect(details).toContainText('Attention.forward');
    const attn = value(details, 'locals', 'attn');
    await expect(attn.locator('.jp-NopdbLab-shape')).toHaveText(
      'float32[1, 2, 5, 5]'
    );
    await expect(attn.locator('.jp-NopdbLab-stats')).toContainText('min ');
    await expect(attn.locator('.jp-NopdbLab-stats')).toContainText('mean ');
    const x = value(details, 'args', 'x');
    await expect(x.locator('.jp-NopdbLab-shape')).toHaveText(
      'float32[1, 5, 16]'
    );
    await expect(
      details.locator('section[aria-label="Return value"]')
    ).toContainText('float32[1, 5, 16]');
    await keepScreenshot(page, testInfo, 'capture-details');

    // "insert below" puts the expression that reaches the value into a new cell
    await valueAction(attn, 'Insert in a cell below');
    expect(await page.notebook.getCellCount()).toBe(4);
    const inserted = await page.notebook.getCellTextInput(2);
    expect(inserted).toMatch(/^nopdb_lab\.store\[\d+\]\.locals\['attn'\]$/);
    await run(page, 2);
    expect((await page.notebook.getCellTextOutput(2))?.join('')).toContain(
      'tensor('
    );

    // a stack frame in a cell goes to that cell; a library frame opens read-only
    await details
      .locator('.jp-NopdbLab-frame', { hasText: 'forward' })
      .first()
      .click();
    await expect(
      page.locator('.jp-Notebook .jp-Cell.jp-mod-active')
    ).toContainText('class Attention(torch.nn.Module)');
    await details
      .locator('.jp-NopdbLab-frame', { hasText: '_call_impl' })
      .first()
      .click();
    const source = page.locator('.jp-NopdbLab-source');
    await expect(source).toBeVisible();
    await expect(source).toContainText('return forward_call(*args, **kwargs)');
    await source.locator('.cm-content').click();
    await page.keyboard.type('edited');
    await expect(source).not.toContainText('edited');
    await keepScreenshot(page, testInfo, 'frame-source');

    // search by id
    const search = browser(page).getByLabel('Search captures');
    await search.fill(`#${ids[0]}`);
    await expect(rows(page)).toHaveCount(1);
    await search.fill('');
    await expect(rows(page)).toHaveCount(2);

    // delete one, then clear all; the kernel's store follows
    await details.getByRole('button', { name: 'Delete capture' }).click();
    await expect(rows(page)).toHaveCount(1);
    await browser(page)
      .locator('.jp-Toolbar-item', { hasText: 'Clear all' })
      .click();
    await page.locator('.jp-Dialog .jp-Dialog-button.jp-mod-warn').click();
    await expect(rows(page)).toHaveCount(0);
    await page.notebook.activate('captures.ipynb');
    await run(page, 3);
    expect(await page.notebook.getCellTextOutput(3)).toEqual(['0']);
  });

  test('shows captures while the cell still runs', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'live.ipynb', [MODEL_CELL, SLOW_CELL]);
    await run(page, 0);
    await page.notebook.runCell(1, { inplace: true, wait: false });
    await expect(rows(page)).toHaveCount(6, { timeout: 15000 }); // 3 runs x 2 layers
    // the cell sleeps 8 s after its last capture: it is still running
    await expect(
      page.locator('.jp-Notebook-cell').nth(1).locator('.jp-InputPrompt')
    ).toHaveText('[*]:');
    await keepScreenshot(page, testInfo, 'live-captures');
  });

  test('recovers after a kernel restart', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'restart.ipynb', [
      MODEL_CELL,
      CAPTURE_CELL
    ]);
    await run(page, 0);
    await run(page, 1);
    await expect(rows(page)).toHaveCount(2);

    await restartKernel(page);
    await expect(status(page)).toHaveAttribute('data-status', 'connecting');
    await expect(status(page)).toHaveAttribute('data-status', 'ready', {
      timeout: 60000
    });
    await expect(rows(page)).toHaveCount(0);

    await run(page, 0);
    await run(page, 1);
    await expect(rows(page)).toHaveCount(2);
    await keepScreenshot(page, testInfo, 'after-restart');
  });

  test('opens a captured tensor as a heatmap', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'heatmap.ipynb', [
      MODEL_CELL,
      CAPTURE_CELL
    ]);
    await runCells(page, 2);
    await expect(rows(page)).toHaveCount(2);
    const details = await selectOldestCapture(page);
    const id = await details.getAttribute('data-capture-id');
    const attn = value(details, 'locals', 'attn');
    await valueAction(attn, 'Open as heatmap');

    const viewer = page.locator('.jp-NopdbLab-heatmap');
    await expect(viewer).toBeVisible();
    await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      '5×5'
    );
    // batch and head get sliders; switch to head 1
    await viewer.getByLabel('Index of dim 1').fill('1');
    await expect(viewer.getByLabel('Index of dim 1')).toHaveValue('1');
    const canvas = viewer.locator('.jp-NopdbLab-heatmapCanvas');
    await canvas.scrollIntoViewIfNeeded();
    const box = (await canvas.boundingBox())!;
    await canvas.hover({
      position: { x: (3.5 * box.width) / 5, y: (2.5 * box.height) / 5 }
    });
    const tooltip = viewer.locator('.jp-NopdbLab-heatmapTooltip');
    await expect(tooltip).toContainText('row 2, column 3: ');
    const shown = (await tooltip.textContent())!.split(': ')[1];

    // the value shown is the kernel's value at [0, 1, 2, 3], exactly
    await page.notebook.activate('heatmap.ipynb');
    await page.notebook.addCell(
      'code',
      'tokens = list("abcde")\n' +
        `print(nopdb_lab.store[${id}].locals['attn'][0, 1, 2, 3].item())`
    );
    await run(page, 2);
    expect(await page.notebook.getCellTextOutput(2)).toEqual([`${shown}\n`]);

    // token labels from an expression in the kernel name rows and columns
    await page.locator('.lm-TabBar-tab', { hasText: 'store[' }).first().click();
    await viewer.getByLabel('Labels expression').fill('tokens');
    await viewer.getByLabel('Labels expression').press('Enter');
    await expect(viewer.getByLabel('Row labels')).toHaveText('abcde');
    await expect(viewer.getByLabel('Column labels')).toHaveText('abcde');
    await canvas.hover({
      position: { x: (3.5 * box.width) / 5, y: (2.5 * box.height) / 5 }
    });
    await expect(tooltip).toContainText('row 2 "c", column 3 "d": ');
    await viewer.getByLabel('Labels expression').fill('undefined_tokens');
    await viewer.getByRole('button', { name: 'Apply' }).click();
    await expect(viewer).toContainText(
      "undefined_tokens raised NameError: name 'undefined_tokens' is not defined"
    );

    // every head as a small map, then the mean over heads
    await viewer.getByLabel('Show dim 1').selectOption('grid');
    await expect(viewer.locator('.jp-NopdbLab-heatmapTile')).toHaveCount(2);
    await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      '2 maps of 5×5'
    );
    await keepScreenshot(page, testInfo, 'heads-grid');
    await viewer.getByLabel('Show dim 1').selectOption('mean');
    await expect(viewer.locator('.jp-NopdbLab-heatmapTile')).toHaveCount(0);
    await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toHaveText(
      '5×5'
    );
    await keepScreenshot(page, testInfo, 'heatmap');
    const download = page.waitForEvent('download');
    await viewer.getByRole('button', { name: 'Export PNG' }).click();
    const file = await download;
    expect(file.suggestedFilename()).toMatch(/attn.*\.png$/);
    const saved = testInfo.outputPath(file.suggestedFilename());
    await file.saveAs(saved);
    const fs = await import('fs');
    const bytes = fs.readFileSync(saved);
    expect(bytes.subarray(1, 4).toString()).toBe('PNG');
  });

  test('overlays patch attention on the input image', async ({
    page,
    tmpPath
  }, testInfo) => {
    // 5 tokens = CLS + a 2×2 grid of patches, as in a tiny ViT
    await openNotebook(page, tmpPath, 'overlay.ipynb', [
      MODEL_CELL,
      CAPTURE_CELL,
      'image = torch.rand(3, 16, 16)'
    ]);
    await runCells(page, 3);
    const details = await selectOldestCapture(page);
    const attn = value(details, 'locals', 'attn');
    await valueAction(attn, 'Open as heatmap');
    const viewer = page.locator('.jp-NopdbLab-heatmap');

    await viewer.getByLabel('Image expression').fill('torch.zeros(5, 5, 5, 5)');
    await viewer.getByRole('button', { name: 'Overlay' }).click();
    await expect(viewer).toContainText(
      'has shape [5, 5, 5, 5]; an image is C×H×W'
    );

    await viewer.getByLabel('Image expression').fill('image');
    await viewer.getByRole('button', { name: 'Overlay' }).click();
    const overlay = viewer.locator('.jp-NopdbLab-overlay');
    await expect(overlay).toContainText('query token 0 (CLS) → 2×2 patches');
    const canvas = overlay.getByLabel('Patch overlay');
    await canvas.scrollIntoViewIfNeeded();
    const box = (await canvas.boundingBox())!;
    await canvas.click({
      position: { x: box.width * 0.75, y: box.height * 0.75 }
    });
    await expect(overlay).toContainText('query token 4 (a patch)');
    await viewer.getByLabel('Overlay opacity').fill('0.3');
    await keepScreenshot(page, testInfo, 'patch-overlay');
  });

  test('stacks layers into one capture and shows a layer × head grid', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'layers.ipynb', [
      MODEL_CELL,
      CAPTURE_CELL
    ]);
    await runCells(page, 2);
    await expect(rows(page)).toHaveCount(2);
    const details = await selectOldestCapture(page);
    const attn = value(details, 'locals', 'attn');
    await valueAction(attn, 'Stack across captures');

    // the stacked capture is listed and selected, with the rollout of both layers
    await expect(rows(page)).toHaveCount(3);
    await expect(rows(page).first()).toContainText('stack');
    await expect(details).toContainText(
      'Stacked across captures of Attention.forward'
    );
    const stacked = value(details, 'locals', 'stacked');
    await expect(stacked.locator('.jp-NopdbLab-shape')).toHaveText(
      'float32[2, 1, 2, 5, 5]'
    );
    const rollout = value(details, 'locals', 'rollout');
    await expect(rollout.locator('.jp-NopdbLab-shape')).toHaveText(
      'float32[1, 5, 5]'
    );
    for (const fusion of ['rollout_max', 'rollout_min']) {
      const row = value(details, 'locals', fusion);
      await expect(row.locator('.jp-NopdbLab-shape')).toHaveText(
        'float32[1, 5, 5]'
      );
    }

    await valueAction(stacked, 'Open as heatmap');
    const viewer = page.locator('.jp-NopdbLab-heatmap');
    await viewer.getByLabel('Show dim 0').selectOption('grid');
    await viewer.getByLabel('Show dim 2').selectOption('grid');
    await expect(viewer.locator('.jp-NopdbLab-heatmapTile')).toHaveCount(4);
    await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      '2 × 2 = 4 maps of 5×5'
    );
    await expect(
      viewer.locator('.jp-NopdbLab-heatmapTile').nth(2)
    ).toContainText('dim 0 = 1, dim 2 = 0');
    await keepScreenshot(page, testInfo, 'layer-head-grid');
  });

  test('shows attention captured from fused SDPA calls', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'sdpa.ipynb', [MODEL_CELL, FUSED_CELL]);
    await run(page, 0);
    await run(page, 1);
    expect(await page.notebook.getCellTextOutput(1)).toEqual(["['0', '1']"]);
    await browser(page).getByLabel('Kind').selectOption('attention');
    await expect(rows(page)).toHaveCount(2);
    await expect(rows(page).first()).toContainText('attn');
    await rows(page).last().click();
    const details = browser(page).locator('.jp-NopdbLab-details');
    await expect(details).toContainText('Attention (SDPA) in Fused.forward');
    const weights = value(details, 'locals', 'weights');
    await expect(weights.locator('.jp-NopdbLab-shape')).toHaveText(
      'float32[1, 2, 5, 5]'
    );
    await expect(value(details, 'locals', 'module')).toContainText("'0'");
    await keepScreenshot(page, testInfo, 'sdpa-attention');

    // the panel's switch records SDPA calls across cells, without a with-block
    const toggle = browser(page).getByRole('button', {
      name: /Capture attention: off/
    });
    await toggle.click();
    await expect(
      browser(page).getByRole('button', { name: /Capture attention: on/ })
    ).toHaveAttribute('aria-pressed', 'true');
    await page.notebook.activate('sdpa.ipynb');
    await page.notebook.addCell(
      'code',
      '_ = fused(torch.randn(1, 5, 16)); len(nopdb_lab.store)'
    );
    await run(page, 2);
    expect(await page.notebook.getCellTextOutput(2)).toEqual(['4']);
    await expect(rows(page)).toHaveCount(4);
    await browser(page)
      .getByRole('button', { name: /Capture attention: on/ })
      .click();
    await expect(
      browser(page).getByRole('button', { name: /Capture attention: off/ })
    ).toBeVisible();
    await run(page, 2);
    await page.waitForTimeout(500);
    await expect(rows(page)).toHaveCount(4);
  });

  test('stays usable with 10,000 captures (dark theme)', async ({
    page,
    tmpPath
  }, testInfo) => {
    await openNotebook(page, tmpPath, 'many.ipynb', [
      'import nopdb_lab\n' +
        'def step(i):\n' +
        '    return i * 2\n' +
        'with nopdb_lab.capture_calls(step):\n' +
        '    for i in range(10_000):\n' +
        '        step(i)\n' +
        'len(nopdb_lab.store)'
    ]);
    await page.theme.setDarkTheme();
    await run(page, 0);
    expect(await page.notebook.getCellTextOutput(0)).toEqual(['10000']);
    await expect(listView(page).locator('.jp-NopdbLab-count')).toHaveText(
      '10000 captures',
      {
        timeout: 60000
      }
    );
    // virtualised: only the rows in view (plus a few) are in the page
    expect(await rows(page).count()).toBeLessThan(60);
    const ids = await rows(page).evaluateAll(els =>
      els.map(el => Number(el.getAttribute('data-capture-id')))
    );
    expect(Math.max(...ids)).toBe(ids[0]); // newest first

    // filtering 10,000 rows by id still answers at once
    await browser(page)
      .getByLabel('Search captures')
      .fill(`#${ids[0] - 9999}`);
    await expect(rows(page)).toHaveCount(1);
    await rows(page).first().click();
    await expect(browser(page).locator('.jp-NopdbLab-details')).toContainText(
      'step'
    );
    await keepScreenshot(page, testInfo, 'ten-thousand-dark');
  });

  test('a kernel without nopdb_lab shows how to install it', async ({
    page,
    tmpPath
  }) => {
    // shadow the package with a module that fails to import (the kernel's working
    // directory comes first on sys.path), then restart so the panel bootstraps again
    await openNotebook(page, tmpPath, 'missing.ipynb', [
      'open("nopdb_lab.py", "w").write("raise ImportError(\'hidden for this test\')")'
    ]);
    await run(page, 0);
    await restartKernel(page);
    await expect(status(page)).toHaveAttribute('data-status', 'missing', {
      timeout: 60000
    });
    await expect(status(page)).toContainText(
      'nopdb-lab is not importable in this kernel'
    );
    await expect(status(page)).toContainText('hidden for this test');
    await expect(status(page).locator('code')).toContainText('%pip install');
    await keepScreenshot(page, test.info(), 'missing-package');
  });
});
