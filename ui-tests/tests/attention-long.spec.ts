/**
 * Long-context attention in JupyterLab (issue 15): a 4,096-token prompt's map opens pooled
 * in the kernel; zooming fetches the visible region at full resolution and the readout then
 * shows exact values (checked against the lazy record's own rows); hovering a pooled cell
 * gives the exact value under the mouse too; a generation's sink grid opens with its layers
 * and heads named. Plain torch (no transformers): the suite runs beside JupyterLab, torch
 * and the wheel only.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

import {
  browser,
  keepScreenshot,
  openNotebook,
  rows,
  run,
  value,
  valueAction
} from './notebooks';

const MODEL_CELL = `import torch, torch.nn.functional as F, nopdb_lab
torch.manual_seed(0)

class Attention(torch.nn.Module):
    def __init__(self, dim=64, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)

    def forward(self, x, cache=None):
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:  # a KV cache: decode steps see every key so far
            if cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        out = F.scaled_dot_product_attention(q, k, v, is_causal=N > 1)
        return out.transpose(1, 2).reshape(B, N, D)

class Decoder(torch.nn.Module):
    def __init__(self, layers=2):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 64)
        self.layers = torch.nn.ModuleList(Attention() for _ in range(layers))

    def forward(self, ids, caches=None):
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            x = x + layer(x, caches[i] if caches else None)
        return x

model = Decoder()
ids = torch.randint(0, 100, (1, 4096))
with torch.no_grad(), nopdb_lab.capture_attention() as attns:
    model(ids)
attns[0]`;

const GENERATE_CELL = `caches = [{}, {}]
with torch.no_grad(), nopdb_lab.capture_attention() as gen:
    model(ids[:, :24], caches)
    for step in range(8):
        model(torch.randint(0, 100, (1, 1)), caches)
[r.steps for r in gen]`;

test.use({ kernels: null });

const details = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-details');

/** Print a Python expression's value in a new cell and return the output. */
async function kernelValue(
  page: IJupyterLabPageFixture,
  expression: string
): Promise<string> {
  await page.notebook.activate('long.ipynb');
  const index = (await page.notebook.getCellCount()) ?? 0;
  await page.notebook.addCell('code', `print(${expression})`);
  await run(page, index);
  const output = await page.notebook.getCellTextOutput(index);
  return (output ?? []).join('').trim();
}

/** "row R, column C: V" → [R, C, V] (the first exact cell of a readout). */
function exactCell(text: string): [number, number, number] {
  const match =
    /row (\d+)(?: "[^"]*")?, column (\d+)(?: "[^"]*")?: ([-0-9.e]+)/.exec(text);
  expect(match, `an exact cell in "${text}"`).not.toBeNull();
  return [Number(match![1]), Number(match![2]), Number(match![3])];
}

async function expectClose(
  page: IJupyterLabPageFixture,
  readout: Locator,
  record: string
) {
  const [r, c, shown] = exactCell((await readout.textContent())!);
  const kernel = Number(
    await kernelValue(page, `${record}.rows(0, [${r}])[0, ${c}].item()`)
  );
  // one row computed alone vs in a block: float32 matmuls may differ in the last bits
  expect(Math.abs(shown - kernel)).toBeLessThanOrEqual(
    1e-6 * Math.max(1, Math.abs(kernel))
  );
}

test.describe('long-context attention', () => {
  test('a 4,096-token head: pooled, zoomed at full resolution, exact readout; the sink grid of a generation', async ({
    page,
    tmpPath
  }, testInfo) => {
    test.setTimeout(240000);
    await page.setViewportSize({ width: 1600, height: 1000 });
    await openNotebook(page, tmpPath, 'long.ipynb', [
      MODEL_CELL,
      GENERATE_CELL
    ]);
    await run(page, 0);
    await expect(rows(page)).toHaveCount(2);
    await rows(page).last().click(); // the first layer (newest first)
    const id = await details(page).getAttribute('data-capture-id');
    const record = `nopdb_lab.store[${id}]`;
    await valueAction(
      value(details(page), 'locals', 'weights'),
      'Open as heatmap'
    );

    const viewer = page.locator('.jp-NopdbLab-heatmap');
    const status = viewer.locator('.jp-NopdbLab-heatmapStatus');
    await expect(status).toContainText(
      '512×512 (max-pooled from 4096×4096 over 8×8 blocks)'
    );
    const map = viewer.getByLabel('Map', { exact: true });
    const readout = viewer.locator('.jp-NopdbLab-heatmapTooltip');

    // a pooled cell: its block's max at once, the exact source cell after a pause
    const box = (await map.boundingBox())!;
    await map.hover({ position: { x: box.width * 0.3, y: box.height * 0.7 } });
    await expect(readout).toContainText(
      /^max of rows \d+–\d+, columns \d+–\d+/
    );
    await expect(readout).toContainText(
      /^row \d+, column \d+: [-0-9.e]+ · max of rows/
    );
    await expectClose(page, readout, record);

    // zoom in below the diagonal (causal: the upper triangle is 0) until cells are single
    // tokens; a log scale shows the structure of 1/N-sized probabilities
    await page.notebook.activate('long.ipynb');
    const heatmapTab = page.locator('.lm-TabBar-tab', { hasText: 'store[' });
    await heatmapTab.click();
    await viewer.getByLabel('Scale').selectOption('log');
    const mapBox = (await map.boundingBox())!;
    const at = {
      x: mapBox.x + mapBox.width * 0.3,
      y: mapBox.y + mapBox.height * 0.6
    };
    await page.mouse.move(at.x, at.y);
    for (let i = 0; i < 20; i++) {
      await page.mouse.wheel(0, -100);
    }
    await expect(status).toContainText('zoom 38.3×');
    const region = viewer.getByLabel('Zoomed region at full resolution');
    await expect(region).toBeVisible();
    await expect(status).toContainText(
      /rows \d+–\d+, columns \d+–\d+ at full resolution/
    );
    // the region is exact (one token per cell): the cell under the zoom's centre is the
    // one 60% down and 30% across the map (to a pixel of the unzoomed map: 8.4 tokens)
    await page.mouse.move(at.x + 1, at.y + 1);
    await page.mouse.move(at.x, at.y);
    await expect(readout).toContainText(/^row \d+, column \d+: [-0-9.e]+$/);
    const [r, c, v] = exactCell((await readout.textContent())!);
    expect(Math.abs(r - 0.6 * 4096)).toBeLessThan(10);
    expect(Math.abs(c - 0.3 * 4096)).toBeLessThan(10);
    expect(v).toBeGreaterThan(0);
    await keepScreenshot(page, testInfo, 'long-attention-zoomed');
    await expectClose(page, readout, record);

    // a generation: one growing record per layer, and its sink grid
    await run(page, 1);
    expect(await page.notebook.getCellTextOutput(1)).toEqual(['[9, 9]']);
    await expect(rows(page)).toHaveCount(4);
    await rows(page).first().click();
    await details(page)
      .getByRole('button', { name: 'Attention sinks' })
      .click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText('first k tokens');
    await dialog.locator('input').fill('2');
    await dialog.getByRole('button', { name: 'Ok' }).click();
    const sinks = page.locator('.jp-NopdbLab-heatmap').last();
    await expect(sinks.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      '2×4'
    );
    await expect(sinks.getByLabel('Row labels')).toContainText('0 layers.0');
    await expect(sinks.getByLabel('Column labels')).toContainText('head 3');
    const grid = sinks.getByLabel('Map', { exact: true });
    const gridBox = (await grid.boundingBox())!;
    await grid.hover({
      position: { x: gridBox.width * (2.5 / 4), y: gridBox.height * 0.75 }
    });
    const sinkReadout = sinks.locator('.jp-NopdbLab-heatmapTooltip');
    await expect(sinkReadout).toContainText(
      /^row 1 "1 layers.1", column 2 "head 2": [0-9.e-]+$/
    );
    await keepScreenshot(page, testInfo, 'attention-sink-grid');
    const shown = Number((await sinkReadout.textContent())!.split(': ')[1]);
    const want = Number(
      await kernelValue(
        page,
        'nopdb_lab.attention_sinks(gen, k=2)[1, 2].item()'
      )
    );
    expect(Math.abs(shown - want)).toBeLessThan(1e-6);
  });
});
