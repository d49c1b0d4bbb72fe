/**
 * Long-attention viewer latency (run by benchmarks/heatmap_viewer.sh, not by the suite).
 * A lazy attention record of a 2,048-token prompt (4 heads): the map exists only as the
 * queries and keys SDPA received; the kernel computes the asked head block by block and
 * pools it to 512×512. Medians of repeated runs of:
 *   open    click "Open as heatmap" → first head painted        (goal ≤ 300 ms)
 *   head    move the head slider    → the next head repainted   (goal ≤ 300 ms)
 * Times are taken in the page (performance.now) from the user's action to the animation
 * frame after the canvas was painted.
 */
import { expect, test } from '@jupyterlab/galata';
import { Page } from '@playwright/test';

import { openCodeNotebook } from '../tests/notebooks';

const RUNS = Number(process.env.BENCH_RUNS ?? 9);
const TOKENS = 2048;
const CELL = `import torch, torch.nn.functional as F, nopdb_lab
torch.manual_seed(0)
q, k, v = (torch.randn(1, 4, ${TOKENS}, 64) for _ in range(3))
with torch.no_grad(), nopdb_lab.capture_attention() as attns:
    F.scaled_dot_product_attention(q, k, v, is_causal=True)
attns[0]`;

test.use({ kernels: null });
test.setTimeout(600000);

async function paints(page: Page): Promise<number> {
  return Number(
    (await page.locator('.jp-NopdbLab-heatmap').getAttribute('data-paints')) ??
      0
  );
}

async function timeUntilPainted(
  page: Page,
  before: number,
  act: () => Promise<unknown>
) {
  const t0 = await page.evaluate(() => performance.now());
  await act();
  await expect
    .poll(() => paints(page), { timeout: 60000 })
    .toBeGreaterThan(before);
  const painted = Number(
    await page.locator('.jp-NopdbLab-heatmap').getAttribute('data-painted-at')
  );
  return painted - t0;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

test('long attention viewer latency', async ({ page, tmpPath }) => {
  await openCodeNotebook(page, `${tmpPath}/attention-bench.ipynb`, [CELL]);
  await page.sidebar.openTab('jp-nopdb-lab-browser');
  const browser = page.locator('#jp-nopdb-lab-browser');
  await expect(browser.locator('.jp-NopdbLab-status')).toHaveAttribute(
    'data-status',
    'ready',
    { timeout: 60000 }
  );
  await page.notebook.runCell(0, { inplace: true });
  await browser.locator('.jp-NopdbLab-captureRow').first().click();
  const weights = browser.locator(
    '.jp-NopdbLab-value[data-path=\'["locals","weights"]\']'
  );

  const open: number[] = [];
  const head: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    await weights.locator('.jp-NopdbLab-valueRow').first().hover();
    open.push(
      await timeUntilPainted(page, 0, () =>
        weights.getByRole('button', { name: 'Open as heatmap' }).first().click()
      )
    );
    const viewer = page.locator('.jp-NopdbLab-heatmap');
    await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      `512×512 (max-pooled from ${TOKENS}×${TOKENS}`
    );
    for (const h of [1, 2, 3]) {
      head.push(
        await timeUntilPainted(page, await paints(page), () =>
          viewer.getByLabel('Index of dim 1').fill(String(h))
        )
      );
    }
    await page
      .locator('.lm-TabBar-tab', { hasText: 'store[' })
      .locator('.lm-TabBar-tabCloseIcon')
      .click();
    await expect(viewer).toHaveCount(0);
  }
  const line = (name: string, values: number[], goal: number) =>
    `${name.padEnd(40)} median ${median(values).toFixed(0).padStart(4)} ms` +
    `  (goal ≤ ${goal} ms, ${values.length} runs, min ${Math.min(...values).toFixed(0)}, ` +
    `max ${Math.max(...values).toFixed(0)})`;
  console.log(
    [
      `long attention, one lazy record of ${TOKENS} tokens × 4 heads (causal)`,
      line(`open: click → ${TOKENS}² head painted`, open, 300),
      line('switch head: slider → repainted', head, 300)
    ].join('\n')
  );
});
