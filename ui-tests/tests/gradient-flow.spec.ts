/**
 * The gradient-flow view, as a user drives it: capture two convolutions with gradients,
 * open their flow from the capture browser, move the node slider and the threshold, click
 * a heatmap cell, apply a region, and display(flow) in a cell. What the Sankey and the
 * heatmaps hold is compared with the kernel's own numbers (read back with expressions).
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import { browser, keepScreenshot, openNotebook, rows, run } from './notebooks';

let NOTEBOOK = 'flow.ipynb';

const MODEL_CELL = `import torch, nopdb_lab
from torch import nn
from nopdb_lab.analysis.flow import gradient_flow
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.Conv2d(4, 3, 3, padding=1)).double()
x = torch.rand(1, 2, 16, 16, dtype=torch.float64, requires_grad=True)
with nopdb_lab.capture_calls(nn.Conv2d.forward, grads=True) as calls:
    net(x).square().sum().backward()
flow = gradient_flow(calls)
len(calls)`;

/** The open flow view's state, read from its widget. */
async function viewState(page: IJupyterLabPageFixture, selector: string) {
  return page.evaluate(sel => {
    const node = document.querySelector(sel) as any;
    const m = node.nopdbFlow.model;
    const visible = m.visible() as number[];
    return {
      layer: m.layer,
      threshold: m.threshold,
      selection: m.selection,
      srcRegion: m.srcRegion,
      dstRegion: m.dstRegion,
      linkRequests: m.linkRequests,
      src: Array.from(m.links.src as Int32Array),
      dst: Array.from(m.links.dst as Int32Array),
      value: Array.from(m.links.value as Float32Array),
      visible,
      shown: Number(node.dataset.links)
    };
  }, selector);
}

/** Evaluate a Python expression in the notebook's kernel (cell 1) and parse its JSON. */
async function kernel(
  page: IJupyterLabPageFixture,
  code: string
): Promise<any> {
  await page.notebook.activate(NOTEBOOK);
  await page.notebook.setCell(
    1,
    'code',
    `import json\nprint(json.dumps(${code}))`
  );
  await page.notebook.runCell(1, { inplace: true });
  const out = await page.notebook.getCellTextOutput(1);
  return JSON.parse((out ?? [''])[0].trim());
}

test.describe('gradient flow', () => {
  test.use({ viewport: { width: 1600, height: 1000 } });

  test('opens from captures, follows the sliders, heatmaps and regions', async ({
    page,
    tmpPath
  }, testInfo) => {
    test.setTimeout(240000);
    NOTEBOOK = 'flow.ipynb';
    await openNotebook(page, tmpPath, NOTEBOOK, [MODEL_CELL, '']);
    await run(page, 0);
    await expect(rows(page)).toHaveCount(2, { timeout: 60000 });

    await rows(page).first().click();
    await browser(page).getByRole('button', { name: 'Gradient flow' }).click();
    const view = '.jp-MainAreaWidget .jp-NopdbLab-flow';
    await expect(page.locator(view)).toHaveAttribute('data-state', 'ready', {
      timeout: 60000
    });
    await expect(page.locator(view)).toContainText('links shown');

    // the links are the kernel's top-k, strongest first
    let state = await viewState(page, view);
    const ref = await kernel(
      page,
      '[t.tolist() for t in flow.links(0, 2000)] + [flow.link_count(0)]'
    );
    expect(state.src).toEqual(ref[0]);
    expect(state.dst).toEqual(ref[1]);
    state.value.forEach((v, i) => expect(v).toBeCloseTo(ref[2][i], 5));
    expect(state.shown).toBe(ref[0].length);
    await keepScreenshot(page, testInfo, 'flow-opened');

    // the node slider: only the links of that source node
    const requests = state.linkRequests;
    await page.locator(view).getByLabel('Node', { exact: true }).fill('100');
    state = await viewState(page, view);
    expect(state.selection).toEqual({ role: 'src', node: 100 });
    const fromNode = await kernel(
      page,
      '[int(d) for s, d in zip(*flow.links(0, 2000)[:2]) if int(s) == 100]'
    );
    expect(state.visible.map(i => state.dst[i]).sort()).toEqual(
      fromNode.sort()
    );
    expect(state.shown).toBe(fromNode.length);

    // the threshold (log slider): repaints locally, agrees with the kernel's threshold
    await page.locator(view).getByLabel('Node', { exact: true }).fill('-1');
    await page.locator(view).getByLabel('Threshold').fill('80');
    state = await viewState(page, view);
    expect(state.threshold).toBeGreaterThan(0);
    const above = await kernel(
      page,
      `len(flow.links(0, 2000, threshold=${state.threshold})[0])`
    );
    expect(state.shown).toBe(above);
    expect(state.linkRequests).toBe(requests); // no kernel round trip
    await keepScreenshot(page, testInfo, 'flow-threshold');
    await page.locator(view).getByLabel('Threshold').fill('0');

    // a click on the output layer's heatmap selects a target node (roles swap)
    const output = page.locator(`${view} [data-heat="output"] canvas`);
    const box = (await output.boundingBox())!;
    const cell = box.width / 8; // the output layer is 8x8 (16x16 input, stride 2)
    await output.click({ position: { x: cell * 2.5, y: cell * 1.5 } });
    state = await viewState(page, view);
    const node = 1 * 8 + 2; // row 1, column 2
    expect(state.selection).toEqual({ role: 'dst', node });
    const intoNode = await kernel(
      page,
      `sorted(int(s) for s, d in zip(*flow.links(0, 2000)[:2]) if int(d) == ${node})`
    );
    expect(state.visible.map(i => state.src[i]).sort((a, b) => a - b)).toEqual(
      intoNode
    );
    await keepScreenshot(page, testInfo, 'flow-target-node');

    // a click on the target (the last layer) picks, through the offsets, the output
    // layer's node that reads the same place of the input; the transition stays
    const target = page.locator(`${view} [data-heat="target"] canvas`);
    const tbox = (await target.boundingBox())!;
    const tcell = tbox.width / 8; // conv2's 8x8 sits on conv1's places (stride 1)
    await target.click({ position: { x: tcell * 5.5, y: tcell * 3.5 } });
    state = await viewState(page, view);
    expect(state.layer).toBe(0);
    expect(state.selection).toEqual({ role: 'dst', node: 3 * 8 + 5 });
    // and a click on the input picks the selected layer's node reading that pixel
    const inputHeat = page.locator(`${view} [data-heat="input"] canvas`);
    const ibox = (await inputHeat.boundingBox())!;
    const icell = ibox.width / 16;
    await inputHeat.click({ position: { x: icell * 9.5, y: icell * 5.5 } });
    state = await viewState(page, view);
    expect(state.selection).toEqual({ role: 'src', node: 5 * 16 + 9 });

    // the input's representation (its values, channels summed per pixel) beside its
    // gradient: what the view holds is the kernel's flow.node_values(0)
    await page.locator(view).getByLabel('Input shows').selectOption('value');
    await expect(inputHeat).toHaveAttribute('data-shows', 'value');
    await expect(
      page.locator(`${view} [data-heat="input"] .jp-NopdbLab-flowHeatTitle`)
    ).toContainText('Input values');
    const shownValues = await page.evaluate(
      sel =>
        Array.from(
          (document.querySelector(sel) as any).nopdbFlow.model
            .nodeValues[0] as Float32Array
        ),
      view
    );
    const kernelValues = await kernel(page, 'flow.node_values(0).tolist()');
    expect(shownValues.length).toBe(256);
    shownValues.forEach((v, i) => expect(v).toBeCloseTo(kernelValues[i], 5));
    await keepScreenshot(page, testInfo, 'flow-input-values');

    // a region on the selected layer, applied in the kernel before the top-k
    const inputs = page.locator(`${view} input[aria-label^="Selected layer"]`);
    await inputs.nth(0).fill('2');
    await inputs.nth(1).fill('6');
    await inputs.nth(2).fill('4');
    await inputs.nth(3).fill('9');
    await page
      .locator(view)
      .getByRole('button', { name: 'Apply regions' })
      .click();
    await expect(page.locator(view)).toContainText('regions applied');
    state = await viewState(page, view);
    expect(state.srcRegion).toEqual([2, 6, 4, 9]);
    const regional = await kernel(
      page,
      '[t.tolist() for t in flow.links(0, 2000, src_region=(2, 6, 4, 9))]'
    );
    expect(state.src).toEqual(regional[0]);
    expect(state.dst).toEqual(regional[1]);
    await keepScreenshot(page, testInfo, 'flow-region');
  });

  test('display(flow) renders the view inline', async ({
    page,
    tmpPath
  }, testInfo) => {
    test.setTimeout(180000);
    NOTEBOOK = 'flow-display.ipynb';
    await openNotebook(page, tmpPath, NOTEBOOK, [MODEL_CELL, '', 'flow']);
    await run(page, 0);
    await run(page, 2);
    const inline = page.locator('.jp-OutputArea .jp-NopdbLab-flow');
    await expect(inline).toHaveAttribute('data-state', 'ready', {
      timeout: 60000
    });
    const state = await viewState(page, '.jp-OutputArea .jp-NopdbLab-flow');
    await keepScreenshot(page, testInfo, 'flow-inline');
    const ref = await kernel(page, 'flow.links(0, 2000)[1].tolist()');
    expect(state.dst).toEqual(ref);
  });
});
