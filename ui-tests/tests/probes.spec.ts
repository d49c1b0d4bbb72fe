/**
 * Probes, as a user drives them: open a probe's input in the heatmap viewer's edit mode,
 * toggle three cells, re-run (a silent execute in the notebook's kernel), see exactly
 * those three in the "Δ vs run 1" view and the open attribution refresh. Interrupting a
 * long attribution from the UI is not covered here yet (its Python side is tested in
 * tests/test_probe_ops.py).
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

import { keepScreenshot, openNotebook, run } from './notebooks';

const SETUP = `import time, torch, nopdb_lab
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
    torch.nn.Linear(4 * 8 * 8, 3))
x = torch.rand(1, 1, 8, 8) + 0.1  # no zero cell: a click sets a cell to 0
probe = nopdb_lab.probe("cls", lambda x: net(x)[:, 1], x=x)

def slow_logit(x):
    time.sleep(0.5)
    return net(x)[:, 1]

slow = nopdb_lab.probe("slow", slow_logit, x=x)
len(probe.runs)`;

const ALIVE = '21 * 2';

async function command(
  page: IJupyterLabPageFixture,
  id: string,
  args: Record<string, unknown>
): Promise<void> {
  await page.evaluate(
    ({ id, args }) => (window as any).jupyterapp.commands.execute(id, args),
    { id, args }
  );
}

/** Click cell (r, c) of a rows × cols map canvas. */
async function clickCell(
  canvas: Locator,
  r: number,
  c: number,
  rows: number,
  cols: number
): Promise<void> {
  await canvas.scrollIntoViewIfNeeded();
  const box = (await canvas.boundingBox())!;
  await canvas
    .page()
    .mouse.click(
      box.x + ((c + 0.5) * box.width) / cols,
      box.y + ((r + 0.5) * box.height) / rows
    );
}

test.use({ kernels: null });
test.setTimeout(400000);

test('edit three cells, re-run, Δ shows exactly them, the attribution refreshes', async ({
  page,
  tmpPath
}, testInfo) => {
  await page.setViewportSize({ width: 1600, height: 1000 });
  await openNotebook(page, tmpPath, 'probes.ipynb', [SETUP, ALIVE]);
  await run(page, 0);
  await command(page, 'nopdb-lab:edit-probe-input', {
    probe: 'cls',
    input: 'x'
  });
  const editor = page.locator('.jp-NopdbLab-probeEdit');
  await expect(editor).toBeVisible();
  const canvas = editor.getByLabel('Edit map');
  await expect(canvas).toBeVisible({ timeout: 90000 });
  await expect(editor.locator('.jp-NopdbLab-probeRuns')).toHaveText('run 1');

  // an attribution of run 1, open beside the editor
  await editor.getByRole('button', { name: 'Attribute…' }).click();
  await editor.getByLabel('Method').selectOption('saliency');
  await editor.getByRole('button', { name: 'Attribute', exact: true }).click();
  const attribution = page.locator('.jp-NopdbLab-attribution');
  await expect(attribution).toBeVisible();
  await expect(attribution.locator('canvas').first()).toBeVisible();
  const firstRecord = await attribution
    .getByLabel('Attribution record')
    .textContent();

  for (const [r, c] of [
    [1, 1],
    [2, 5],
    [6, 3]
  ]) {
    await clickCell(canvas, r, c, 8, 8);
  }
  await expect(editor.locator('.jp-NopdbLab-probeRuns')).toContainText(
    '3 edited, not re-run'
  );
  await keepScreenshot(page, testInfo, 'probe-edited');

  await editor.getByRole('button', { name: 'Re-run' }).scrollIntoViewIfNeeded();
  await editor.getByRole('button', { name: 'Re-run' }).click();
  await expect(editor.locator('.jp-NopdbLab-probeRuns')).toHaveText('run 2');
  await editor.getByLabel('Δ vs run').selectOption('1');
  await expect(editor.getByLabel('Δ count')).toHaveText(
    '3 changed element(s) vs run 1'
  );
  await expect(canvas).toHaveAttribute('data-marks', '3');
  // the attribution was recomputed for run 2 and repainted
  await expect(
    attribution.locator('[data-generation]').first()
  ).toHaveAttribute('data-generation', '1', { timeout: 60000 });
  await expect(attribution.getByLabel('Attribution record')).not.toHaveText(
    firstRecord ?? ''
  );
  await keepScreenshot(page, testInfo, 'probe-delta');

  // Ctrl+Enter re-runs too (no edits: run 3, Δ vs run 1 still the three cells)
  await canvas.click({ position: { x: 1, y: 1 }, trial: true });
  await editor.focus();
  await page.keyboard.press('Control+Enter');
  await expect(editor.locator('.jp-NopdbLab-probeRuns')).toHaveText('run 3');
});
