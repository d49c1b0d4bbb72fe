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

import { openCodeNotebook } from '../tests/notebooks';
import { resultLine, viewTiming } from './timing';

const VIEW = '.jp-NopdbLab-heatmap';
const { paints, timeUntilPainted } = viewTiming(VIEW);

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
    resultLine(name, values, goal, 40);
  console.log(
    [
      `long attention, one lazy record of ${TOKENS} tokens × 4 heads (causal)`,
      line(`open: click → ${TOKENS}² head painted`, open, 300),
      line('switch head: slider → repainted', head, 300)
    ].join('\n')
  );
});
