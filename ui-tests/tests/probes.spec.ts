/**
 * Edit, re-run, attribute (issue 13), as a user drives it: a small CNN probe's input opens
 * in the heatmap viewer's edit mode; three clicks toggle three cells, Re-run runs the
 * probe in the kernel, the "Δ vs run 1" view marks exactly those cells, the kernel's run
 * records exactly those edits, and an attribution opened before the re-run is recomputed
 * for the new run. Then a long attribution is stopped with the notebook's stop button:
 * the view says it was interrupted, the kernel still answers, nothing was recorded.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import {
  browser,
  keepScreenshot,
  openNotebook,
  run,
  value,
  valueAction
} from './notebooks';

const PROBE_CELL = `import time, torch, nopdb_lab
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(4, 2, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Flatten(), torch.nn.Linear(128, 3))
img = torch.rand(1, 1, 8, 8) + 0.1   # no zeros: a click toggles a cell to 0
probe = nopdb_lab.probe("cnn", lambda x: net(x)[:, 1], x=img)
len(probe.runs)`;

// what the kernel recorded of the newest run's edits, and its newest attribution
const EDITS_CELL = `print(len(probe.runs), sorted(probe.runs[-1].edits["x"].indices.tolist()))`;
const NEWEST_ATTRIBUTION_CELL = `print(max(r.id for r in nopdb_lab.store if getattr(r, "kind", None) == "attribution"))`;

// an objective slow enough to interrupt: 50 ms a pass, 2000 steps in passes of 2 rows
const SLOW_CELL = `def slow_objective(x):
    time.sleep(0.05)
    return net(x)[:, 1]
slow = nopdb_lab.probe("slow", slow_objective, x=img.clone())
len(slow.runs)`;
const STATE_CELL = `print(len(slow.runs), len(nopdb_lab.store), nopdb_lab.store.ids()[-1])`;

// an image probe for Attribute… from the capture browser and the patch overlay: run 1,
// then an edit and run 2
const IMAGE_CELL = `conv = torch.nn.Conv2d(3, 2, 3, padding=1)
picture = torch.rand(1, 3, 32, 32)
image_probe = nopdb_lab.probe("image", lambda x: conv(x).relu().mean(dim=(1, 2, 3)), x=picture)
image_probe.inputs["x"][0, :, 4:8, 4:8] = 0.0
image_probe.rerun()
print(image_probe.runs[0].record.id, image_probe.runs[1].record.id)`;
// the newest attribution's run, and its strongest 8×8 patch (channels and pixels summed)
const PATCH_CELL = `att = nopdb_lab.store[max(r.id for r in nopdb_lab.store if getattr(r, "kind", None) == "attribution")].attribution
scores = att.map[0].sum(0).reshape(4, 8, 4, 8).sum(dim=(1, 3))
print(att.run, divmod(int(scores.argmax()), 4))`;

// a tiny ViT-like model: CLS + 4×4 patch tokens; an attribution at its tokens, in Python
const TOKENS_CELL = `class TinyViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.patch(x).flatten(2).transpose(1, 2)], dim=1)
        return self.head((tokens.softmax(dim=1) * tokens).mean(dim=1))

tiny = TinyViT()
tiny_probe = nopdb_lab.probe("tiny", lambda x: tiny(x)[:, 2], x=torch.rand(1, 3, 32, 32))
tokens_att = nopdb_lab.attribute(tiny_probe, steps=8, at=nopdb_lab.Line(TinyViT.forward, "tokens = ..."))
scores = tokens_att.map[0].sum(-1)[1:]   # per token (summed over D), the 16 patches
print(tokens_att.record.id, tuple(tokens_att.map.shape), divmod(int(scores.argmax()), 4))`;

// Galata's kernel mock answers POSTs under /api/kernels itself; talk to the real API
test.use({ kernels: null });

const CELLS = [
  PROBE_CELL,
  EDITS_CELL,
  NEWEST_ATTRIBUTION_CELL,
  SLOW_CELL,
  STATE_CELL,
  IMAGE_CELL,
  PATCH_CELL,
  TOKENS_CELL
];

/** Run a cell of the notebook (activated first: the probe views take the focus). */
async function runCell(
  page: IJupyterLabPageFixture,
  notebook: string,
  index: number
): Promise<void> {
  await page.notebook.activate(notebook);
  await run(page, index);
}

async function output(
  page: IJupyterLabPageFixture,
  index: number
): Promise<string> {
  return (await page.notebook.getCellTextOutput(index))?.join('').trim() ?? '';
}

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

const editView = (page: IJupyterLabPageFixture, probe: string) =>
  page
    .locator('.jp-NopdbLab-probeEdit')
    .filter({ hasText: `probe "${probe}"` });

test.describe('probes', () => {
  test('toggle three cells, re-run: the Δ view, the run and the attribution follow', async ({
    page,
    tmpPath
  }, testInfo) => {
    await page.setViewportSize({ width: 1600, height: 1000 });
    await openNotebook(page, tmpPath, 'probes.ipynb', CELLS);
    await run(page, 0);
    expect(await output(page, 0)).toBe('1');

    await command(page, 'nopdb-lab:edit-probe-input', {
      probe: 'cnn',
      input: 'x'
    });
    const view = editView(page, 'cnn');
    await expect(view).toBeVisible();
    await expect(view.locator('.jp-NopdbLab-probeRuns')).toHaveText('run 1');
    const map = view.getByLabel('Edit map');
    await expect(map).toBeVisible();
    await expect(view.locator('.jp-NopdbLab-heatmapStatus')).toContainText(
      '8×8'
    );

    // an attribution of run 1, opened before the re-run
    await command(page, 'nopdb-lab:attribute-probe', {
      probe: 'cnn',
      method: 'saliency'
    });
    const attribution = page.locator('.jp-NopdbLab-attribution');
    await expect(attribution).toBeVisible();
    const recordLabel = attribution.getByLabel('Attribution record');
    await expect(recordLabel).toHaveText(/record \d+/);
    const firstRecord = await recordLabel.textContent();
    await runCell(page, 'probes.ipynb', 2);
    expect(`record ${await output(page, 2)}`).toBe(firstRecord);

    // three clicks in a row, then Re-run at once: none may be lost while the edits
    // before them are still in flight
    const cells = [
      [1, 2],
      [4, 5],
      [6, 0]
    ];
    const box = (await map.boundingBox())!;
    for (const [r, c] of cells) {
      await map.click({
        position: {
          x: ((c + 0.5) * box.width) / 8,
          y: ((r + 0.5) * box.height) / 8
        }
      });
    }
    await view.getByRole('button', { name: 'Re-run' }).click();
    await expect(view.locator('.jp-NopdbLab-probeRuns')).toHaveText('run 2');
    await expect(view.getByRole('button', { name: 'Re-run' })).toBeEnabled();

    // the Δ view against run 1 marks exactly the three cells
    await view.getByLabel('Δ vs run').selectOption('1');
    await expect(view.getByLabel('Δ count')).toHaveText(
      '3 changed element(s) vs run 1'
    );
    await expect(map).toHaveAttribute('data-marks', '3');
    const magenta = await map.evaluate((el: HTMLCanvasElement) => {
      const data = el
        .getContext('2d')!
        .getImageData(0, 0, el.width, el.height).data;
      const found: number[][] = [];
      for (let i = 0; i < data.length / 4; i++) {
        if (
          data[i * 4] === 255 &&
          data[i * 4 + 1] === 0 &&
          data[i * 4 + 2] === 255
        ) {
          found.push([Math.floor(i / el.width), i % el.width]);
        }
      }
      return found;
    });
    expect(magenta).toEqual(cells);

    // the kernel's run 2 holds exactly these edits
    await runCell(page, 'probes.ipynb', 1);
    expect(await output(page, 1)).toBe(
      `2 ${JSON.stringify(cells.map(([r, c]) => [0, 0, r, c])).replace(/,/g, ', ')}`
    );

    // the attribution was recomputed for run 2: a new record, the kernel's newest
    await expect(attribution.locator('[data-generation]')).toHaveAttribute(
      'data-generation',
      '1'
    );
    await expect(recordLabel).not.toHaveText(firstRecord!);
    await runCell(page, 'probes.ipynb', 2);
    await expect(recordLabel).toHaveText(`record ${await output(page, 2)}`);
    await keepScreenshot(page, testInfo, 'probe-delta-and-attribution');
  });

  test('the stop button interrupts a long attribution; nothing changes', async ({
    page,
    tmpPath
  }, testInfo) => {
    await page.setViewportSize({ width: 1600, height: 1000 });
    await openNotebook(page, tmpPath, 'probes-stop.ipynb', CELLS);
    await run(page, 0);
    await run(page, 3);
    expect(await output(page, 3)).toBe('1');
    await run(page, 4);
    const before = await output(page, 4);
    expect(before).toMatch(/^1 \d+ \d+$/);

    await command(page, 'nopdb-lab:edit-probe-input', {
      probe: 'slow',
      input: 'x'
    });
    const view = editView(page, 'slow');
    await expect(view.getByLabel('Edit map')).toBeVisible();
    await view.getByRole('button', { name: 'Attribute…' }).click();
    const form = view.getByRole('form', { name: 'Attribute' });
    await form.getByLabel('Method').selectOption('integrated_gradients');
    await form.getByLabel('Steps').fill('2000');
    await form.getByLabel('Internal batch size').fill('2');
    await form.getByRole('button', { name: 'Attribute' }).click();
    const progress = view
      .getByRole('status')
      .filter({ hasText: 'Attributing' });
    await expect(progress).toContainText(/pass \d+ of \d+/);

    // the notebook's own stop button
    await page
      .locator(
        '.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]'
      )
      .click();
    const alert = view.locator('.jp-NopdbLab-probeInterrupted');
    await expect(alert).toHaveText(
      'Interrupted (the kernel is still running; nothing was recorded).'
    );
    await expect(progress).toHaveCount(0);
    await expect(view.locator('.jp-NopdbLab-probeRuns')).toHaveText('run 1');
    await keepScreenshot(page, testInfo, 'probe-attribution-interrupted');

    // the kernel answers, and the probe and the store are as they were
    await runCell(page, 'probes-stop.ipynb', 4);
    expect(await output(page, 4)).toBe(before);
  });
  test("Attribute… on a run's input in the capture browser; the map on image patches", async ({
    page,
    tmpPath
  }, testInfo) => {
    await page.setViewportSize({ width: 1600, height: 1000 });
    await openNotebook(page, tmpPath, 'probes-patches.ipynb', CELLS);
    await run(page, 0);
    await run(page, 5);
    const [first] = (await output(page, 5)).split(' ');

    // run 1's capture, its inputs → x: Attribute…
    await browser(page)
      .locator(`.jp-NopdbLab-captureRow[data-capture-id="${first}"]`)
      .click();
    const details = browser(page).locator('.jp-NopdbLab-details');
    await expect(details).toHaveAttribute('data-capture-id', first);
    await value(details, 'locals', 'inputs')
      .locator('.jp-NopdbLab-valueRow')
      .first()
      .click();
    const x = value(details, 'locals', 'inputs', 'x');
    await expect(x.locator('.jp-NopdbLab-shape')).toHaveText(
      'float32[1, 3, 32, 32]'
    );
    // the run's output is no input: no Attribute… there
    await value(details, 'locals', 'output')
      .locator('.jp-NopdbLab-valueRow')
      .first()
      .hover();
    await expect(
      value(details, 'locals', 'output').getByRole('button', {
        name: 'Attribute…'
      })
    ).toHaveCount(0);
    await valueAction(x, 'Attribute…');

    // the probe's edit view opens with the form out, for run 1
    const view = editView(page, 'image');
    const form = view.getByRole('form', { name: 'Attribute' });
    await expect(form.getByLabel('Attributed run')).toHaveText(
      'of run 1 (not the newest)'
    );
    await form.getByLabel('Method').selectOption('saliency');
    await form.getByRole('button', { name: 'Attribute' }).click();
    const attribution = page.locator('.jp-NopdbLab-attribution');
    await expect(attribution).toBeVisible();

    // on the image's 8×8 patches: a 4×4 overlay whose strongest patch is the kernel's
    await attribution.getByLabel('Patch size').fill('5');
    await expect(attribution).toContainText(
      '32 px is not a multiple of 5 px patches'
    );
    await attribution.getByLabel('Patch size').fill('8');
    await attribution
      .getByRole('button', { name: 'Show on image patches' })
      .click();
    const overlay = attribution.locator('.jp-NopdbLab-overlay');
    await expect(overlay.getByLabel('Patch overlay')).toBeVisible();
    await expect(overlay).toContainText('4×4 patches');
    await runCell(page, 'probes-patches.ipynb', 6);
    const [attributedRun, row, col] = (await output(page, 6))
      .replace(/[(),]/g, ' ')
      .trim()
      .split(/\s+/);
    expect(attributedRun).toBe('1');
    await expect(overlay).toContainText(`strongest patch (${row}, ${col})`);
    // a click on a patch reads its score
    const canvas = overlay.getByLabel('Patch overlay');
    const box = (await canvas.boundingBox())!;
    await canvas.click({
      position: { x: (2.5 * box.width) / 4, y: (1.5 * box.height) / 4 }
    });
    await expect(overlay.getByLabel('Picked patch')).toContainText(
      'Patch (1, 2): '
    );
    await keepScreenshot(page, testInfo, 'probe-attribution-patches');
  });
  test('an attribution made in Python at ViT tokens opens as a strip and on the patches', async ({
    page,
    tmpPath
  }, testInfo) => {
    await page.setViewportSize({ width: 1600, height: 1000 });
    await openNotebook(page, tmpPath, 'probes-tokens.ipynb', CELLS);
    await run(page, 0);
    await run(page, 7);
    const printed = await output(page, 7);
    const [record, shape, strongest] = printed
      .match(/^(\d+) (\(.*?\)) (\(.*\))$/)!
      .slice(1);
    expect(shape).toBe('(1, 17, 8)');

    await browser(page)
      .locator(`.jp-NopdbLab-captureRow[data-capture-id="${record}"]`)
      .click();
    const details = browser(page).locator('.jp-NopdbLab-details');
    await expect(details).toHaveAttribute('data-capture-id', record);
    await valueAction(value(details, 'locals', 'map'), 'Open as attribution');

    const attribution = page.locator('.jp-NopdbLab-attribution');
    await expect(attribution.getByLabel('Token scores')).toBeVisible();
    await expect(attribution.locator('.jp-NopdbLab-token')).toHaveCount(17);
    await expect(attribution).toContainText('as recorded');
    // tokens: no patch size to ask
    await expect(attribution.getByLabel('Patch size')).toHaveCount(0);
    await attribution
      .getByRole('button', { name: 'Show on image patches' })
      .click();
    const overlay = attribution.locator('.jp-NopdbLab-overlay');
    await expect(overlay.getByLabel('Patch overlay')).toBeVisible();
    await expect(overlay).toContainText(
      'patch tokens 1–16 (1 prefix token(s) left out)'
    );
    await expect(overlay).toContainText(`strongest patch ${strongest}`);
    await keepScreenshot(page, testInfo, 'probe-token-attribution-patches');
  });
});
