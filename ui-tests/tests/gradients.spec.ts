/**
 * Gradients in the capture browser (issue 11): a cell captures Attention.forward with
 * grads=True, the next runs a backward; the capture gets its ∇ live, the gradient opens as
 * a painted heatmap whose readout is the kernel's gradient value, and the layer strip has
 * one bar per layer.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import {
  browser,
  colourCount,
  keepScreenshot,
  openNotebook,
  rows,
  run
} from './notebooks';

const MODEL_CELL = `import torch, nopdb_lab
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

model = torch.nn.Sequential(Attention(), Attention(), Attention())`;

const CAPTURE_CELL = `with nopdb_lab.capture_calls(Attention.forward, grads=True) as calls:
    out = model(torch.randn(1, 5, 16))
len(calls)`;

const BACKWARD_CELL = 'out.pow(2).sum().backward()';

// Galata's kernel mock answers POSTs under /api/kernels itself; talk to the real API
test.use({ kernels: null });

const details = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-details');

test.describe('gradients', () => {
  test('marks captures with ∇, paints a gradient, shows the layer strip', async ({
    page,
    tmpPath
  }, testInfo) => {
    await page.setViewportSize({ width: 1600, height: 1000 });
    await openNotebook(page, tmpPath, 'gradients.ipynb', [
      MODEL_CELL,
      CAPTURE_CELL,
      BACKWARD_CELL
    ]);
    await run(page, 0);
    await run(page, 1);
    await expect(rows(page)).toHaveCount(3);
    // captured with grads, no backward yet: a pending ∇ on every row
    const marks = rows(page).locator('.jp-NopdbLab-gradMark');
    await expect(marks).toHaveCount(3);
    await expect(marks.first()).toHaveClass(/jp-mod-pending/);

    // select the first layer's call, then run the backward: the ∇ updates live
    await rows(page).last().click();
    const attnRow = details(page).locator(
      `.jp-NopdbLab-gradRow[data-path='["locals","attn"]']`
    );
    await expect(attnRow).toContainText('pending');
    // the model's input does not require grad: its row says so
    await expect(
      details(page).locator(`.jp-NopdbLab-gradRow[data-path='["args","x"]']`)
    ).toContainText('no grad: a leaf tensor without requires_grad');
    await run(page, 2);
    for (let i = 0; i < 3; i++) {
      await expect(marks.nth(i)).not.toHaveClass(/jp-mod-pending/);
    }
    const id = await details(page).getAttribute('data-capture-id');
    await expect(attnRow).toContainText('‖g‖₂');

    // the layer strip: one bar per layer (three Attention calls)
    await attnRow.getByRole('button', { name: 'Layer strip (attn)' }).click();
    const strip = attnRow.locator('.jp-NopdbLab-layerStrip');
    await expect(strip.locator('.jp-NopdbLab-layerBar')).toHaveCount(3);
    await strip.locator('.jp-NopdbLab-layerBar').nth(1).hover();
    await expect(
      strip.locator('.jp-NopdbLab-layerStrip-readout')
    ).toContainText(
      /layer 1 \(#\d+\): ‖g‖₂ [0-9.e-]+ · mean \|g\| .* NaN 0 · Inf 0/
    );
    await keepScreenshot(page, testInfo, 'gradients-details');

    // open the gradient of attn as a heatmap
    await attnRow
      .getByRole('button', { name: 'Open the gradient as a heatmap (attn)' })
      .click();
    const viewer = page.locator('.jp-NopdbLab-heatmap');
    await expect(viewer).toBeVisible();
    await expect(viewer.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      '5×5'
    );
    await viewer.getByLabel('Index of dim 1').fill('1');
    await expect(viewer.getByLabel('Index of dim 1')).toHaveValue('1');
    const canvas = viewer.locator('.jp-NopdbLab-heatmapCanvas');
    await canvas.scrollIntoViewIfNeeded();
    // painted: the canvas holds more than one colour
    await expect.poll(() => colourCount(canvas)).toBeGreaterThan(3);
    const box = (await canvas.boundingBox())!;
    await canvas.hover({
      position: { x: (3.5 * box.width) / 5, y: (2.5 * box.height) / 5 }
    });
    const tooltip = viewer.locator('.jp-NopdbLab-heatmapTooltip');
    await expect(tooltip).toContainText('row 2, column 3: ');
    const shown = (await tooltip.textContent())!.split(': ')[1];
    await keepScreenshot(page, testInfo, 'gradient-heatmap');

    // the value shown is the kernel's gradient at [0, 1, 2, 3], exactly
    await page.notebook.activate('gradients.ipynb');
    await page.notebook.addCell(
      'code',
      `print(nopdb_lab.store[${id}].grads['locals']['attn'][0, 1, 2, 3].item())`
    );
    await run(page, 3);
    expect(await page.notebook.getCellTextOutput(3)).toEqual([`${shown}\n`]);

    // the Gradients switch beside Capture attention
    const toggle = browser(page).getByRole('button', {
      name: /Gradients: off/
    });
    await toggle.click();
    await expect(
      browser(page).getByRole('button', { name: /Gradients: on/ })
    ).toHaveAttribute('aria-pressed', 'true');
    await page.notebook.addCell(
      'code',
      'print(nopdb_lab.gradient_capture_active())'
    );
    await run(page, 4);
    expect(await page.notebook.getCellTextOutput(4)).toEqual(['True\n']);

    // a stack of the three layers' attn shows the same layer strip (its sources)
    await rows(page).last().click();
    const attnValue = details(page).locator(
      `.jp-NopdbLab-value[data-path='["locals","attn"]']`
    );
    await attnValue.locator('.jp-NopdbLab-valueRow').first().hover();
    await attnValue
      .getByRole('button', { name: 'Stack across captures' })
      .first()
      .click();
    await expect(details(page)).toContainText(
      'Stacked across captures of Attention.forward'
    );
    await details(page)
      .getByRole('button', { name: 'Layer strip (stack)' })
      .click();
    const stackStrip = details(page).locator('.jp-NopdbLab-layerStrip');
    await expect(stackStrip.locator('.jp-NopdbLab-layerBar')).toHaveCount(3);
    await stackStrip.locator('.jp-NopdbLab-layerBar').nth(2).hover();
    await expect(
      stackStrip.locator('.jp-NopdbLab-layerStrip-readout')
    ).toContainText(/layer 2 \(#\d+\): ‖g‖₂ [0-9.e-]+/);
    // the toolbar's rows (five items, two rows at this width) stay above the section
    // title: no item is drawn over it
    const items = browser(page).locator(
      '.jp-SidePanel-toolbar > .jp-Toolbar-item'
    );
    await expect(items).toHaveCount(5);
    const titleTop = (await browser(page)
      .locator('.jp-AccordionPanel-title')
      .first()
      .boundingBox())!.y;
    for (const item of await items.all()) {
      const b = (await item.boundingBox())!;
      expect(b.y + b.height).toBeLessThanOrEqual(titleTop + 1);
    }
    await keepScreenshot(page, testInfo, 'stack-layer-strip');
  });
});
