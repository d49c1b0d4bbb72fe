/**
 * Gutter breakpoints, the way a user sets them: click left of the softmax line of a small
 * torch attention module, run the model, read the hit in the capture browser; add
 * `attn = attn * 3` as code to execute and see the output change; open
 * torch.nn.functional by name and break inside it; reload the page and find every
 * breakpoint again.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

import { browser, keepScreenshot, openNotebook, rows, run } from './notebooks';

const MODEL_CELL = `import torch
import torch.nn.functional as F

class Attention(torch.nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.qkv = torch.nn.Linear(dim, dim * 3)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        attn = F.softmax(attn, dim=-1)
        return attn @ v

torch.manual_seed(0)
model = Attention()
x = torch.randn(1, 4, 8)`;
const SOFTMAX_LINE = 12;

const RUN_CELL = `with torch.no_grad():
    out = model(x)
print(f"sum={out.sum().item():.4f}")`;

const section = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-breakpointsView');
const bpRows = (page: IJupyterLabPageFixture) =>
  section(page).locator('.jp-NopdbLab-bpRow');

/** The gutter marker of a line in an editor. */
const marker = (editor: Locator, line: number) =>
  editor.locator(`.jp-NopdbLab-bp[data-line="${line}"]`);

/** Click the breakpoint gutter left of an editor line (a `.cm-line` element). */
async function clickGutter(
  page: IJupyterLabPageFixture,
  editor: Locator,
  line: Locator
): Promise<void> {
  // scroll vertically only: a wide line scrolled into view would shift the text sideways
  await line.evaluate(element => {
    const scroller = element.closest('.cm-scroller');
    if (scroller) {
      const offset =
        element.getBoundingClientRect().top -
        scroller.getBoundingClientRect().top;
      scroller.scrollTop += offset - scroller.clientHeight / 2;
    }
  });
  const gutter = await editor
    .locator('.jp-NopdbLab-breakpointGutter')
    .boundingBox();
  const box = await line.boundingBox();
  if (!gutter || !box) {
    throw new Error('the gutter or the line is not visible');
  }
  await page.mouse.click(gutter.x + gutter.width / 2, box.y + box.height / 2);
}

/**
 * Scroll a long editor down until `line` is rendered (CodeMirror only renders the lines
 * in view).
 */
async function scrollUntilRendered(
  page: IJupyterLabPageFixture,
  editor: Locator,
  line: Locator
): Promise<void> {
  for (let step = 0; step < 40 && (await line.count()) === 0; step++) {
    await editor.locator('.cm-scroller').evaluate(scroller => {
      scroller.scrollTop += scroller.clientHeight / 2;
    });
    await page.waitForTimeout(100);
  }
}

const cellEditor = (page: IJupyterLabPageFixture, index: number) =>
  page.locator('.jp-Notebook .jp-CodeCell').nth(index).locator('.cm-editor');

async function output(
  page: IJupyterLabPageFixture,
  index: number
): Promise<string> {
  return (await page.notebook.getCellTextOutput(index))?.join('').trim() ?? '';
}

// the restart-free flow still uses the real kernels API, like the other UI tests
test.use({ kernels: null });

test('gutter breakpoints in a cell and in library source, kept across a reload', async ({
  page,
  tmpPath
}, testInfo) => {
  await openNotebook(page, tmpPath, 'breakpoints.ipynb', [
    MODEL_CELL,
    RUN_CELL
  ]);
  const editor = cellEditor(page, 0);
  await expect(editor.locator('.jp-NopdbLab-breakpointGutter')).toBeVisible();

  // set before the cell ever ran: pending, then active once it runs
  await clickGutter(
    page,
    editor,
    editor.locator('.cm-line').nth(SOFTMAX_LINE - 1)
  );
  await expect(marker(editor, SOFTMAX_LINE)).toHaveAttribute(
    'data-status',
    'pending'
  );
  await run(page, 0);
  await expect(marker(editor, SOFTMAX_LINE)).toHaveAttribute(
    'data-status',
    'active'
  );

  // a hit with attn in its locals, and the counter on the marker
  await run(page, 1);
  const plain = await output(page, 1);
  expect(plain).toMatch(/^sum=/);
  await expect(rows(page)).toHaveCount(1);
  await expect(rows(page).first()).toContainText('Attention.forward');
  await rows(page).first().click();
  const details = browser(page).locator('.jp-NopdbLab-details');
  await expect(
    details.locator(`.jp-NopdbLab-value[data-path='["locals","attn"]']`)
  ).toContainText('[1, 4, 4]');
  await expect(
    marker(editor, SOFTMAX_LINE).locator('.jp-NopdbLab-bpHits')
  ).toHaveText('1');
  await keepScreenshot(page, testInfo, 'breakpoint-hit');

  // exec at the hit: the assignment changes what forward computes next
  await bpRows(page).first().click();
  const execField = section(page).getByLabel('Execute at each hit');
  await execField.fill('attn = attn * 3');
  await execField.blur();
  await expect(bpRows(page).first()).toHaveAttribute('data-status', 'active');
  await run(page, 1);
  await expect.poll(() => output(page, 1)).not.toEqual(plain);
  expect(await output(page, 1)).toMatch(/^sum=/);
  const changed = await output(page, 1);

  // expressions evaluated at each hit; one that raises is recorded on the hit and the
  // cell runs on
  const newExpression = section(page).getByLabel('New expression');
  await newExpression.fill('attn.shape[-1]');
  await newExpression.press('Enter');
  await newExpression.fill('no_such_name + 1');
  await newExpression.press('Enter');
  await expect(
    section(page).getByRole('textbox', { name: 'Expression 2' })
  ).toHaveValue('no_such_name + 1');
  await run(page, 1);
  await expect.poll(() => output(page, 1)).toEqual(changed);
  await expect(rows(page)).toHaveCount(3);
  await rows(page).first().click();
  await expect(
    details.locator(
      `.jp-NopdbLab-value[data-path='["evals","attn.shape[-1]"]']`
    )
  ).toContainText('4');
  await expect(details).toContainText(
    "NameError: name 'no_such_name' is not defined"
  );
  await keepScreenshot(page, testInfo, 'hit-evals-and-errors');

  // a syntax error in an action is shown where it was typed, before anything runs
  const condition = section(page).getByLabel('Condition');
  await condition.fill('attn.max( > 0');
  await condition.press('Enter');
  await expect(bpRows(page).first()).toHaveAttribute('data-status', 'error');
  await expect(section(page).locator('.jp-NopdbLab-bpEditor')).toContainText(
    "syntax error in breakpoint condition 'attn.max( > 0'"
  );
  await expect(marker(editor, SOFTMAX_LINE)).toHaveAttribute(
    'data-status',
    'error'
  );
  await condition.fill('');
  await condition.press('Enter');
  await expect(bpRows(page).first()).toHaveAttribute('data-status', 'active');
  await keepScreenshot(page, testInfo, 'breakpoint-editor');

  // library source by dotted name, with the same gutter
  const openByName = section(page).getByLabel('Open source by name');
  await openByName.fill('torch.nn.functional.no_such_function');
  await openByName.press('Enter');
  await expect(section(page).locator('[role=alert]')).toContainText(
    "torch.nn.functional has no attribute 'no_such_function'"
  );
  await openByName.fill('torch.nn.functional.softmax');
  await openByName.press('Enter');
  const source = page.locator('.jp-NopdbLab-source .cm-editor');
  await expect(source).toBeVisible();
  // the view scrolled to the definition; its return statement is a few lines below
  const definition = source
    .locator('.cm-line')
    .filter({ hasText: /^def softmax\($/ });
  await expect(definition).toBeVisible();
  const returnLine = definition.locator(
    "xpath=following-sibling::div[normalize-space(.)='return ret'][1]"
  );
  await scrollUntilRendered(page, source, returnLine);
  await clickGutter(page, source, returnLine);
  await expect(
    source.locator('.jp-NopdbLab-bp[data-status="active"]')
  ).toHaveCount(1);
  await expect(bpRows(page)).toHaveCount(2);
  await expect(bpRows(page).nth(1)).toContainText('functional.py');
  await expect(bpRows(page).nth(1)).toContainText('softmax');
  await keepScreenshot(page, testInfo, 'library-breakpoint');

  await page
    .locator('.lm-TabBar-tab', { hasText: 'breakpoints.ipynb' })
    .click();
  await run(page, 1);
  await expect(rows(page).filter({ hasText: 'softmax' })).toHaveCount(1);
  await expect(
    bpRows(page).nth(1).locator('.jp-NopdbLab-bpHitCount')
  ).toHaveText('1');

  // saved in the notebook: a reload brings every breakpoint back
  await page.notebook.save();
  // the restored layout shows the notebook, not the Launcher that Galata waits for
  await page.reload({ waitForIsReady: false });
  await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
  await page
    .locator('.lm-TabBar-tab', { hasText: 'breakpoints.ipynb' })
    .click();
  await page.sidebar.openTab('jp-nopdb-lab-browser');
  await expect(bpRows(page)).toHaveCount(2);
  const reloaded = cellEditor(page, 0);
  // the kernel kept running and has this cell's code: active again at once
  await expect(marker(reloaded, SOFTMAX_LINE)).toHaveAttribute(
    'data-status',
    'active',
    { timeout: 60000 }
  );
  await expect(bpRows(page).nth(1)).toContainText('functional.py');
  await keepScreenshot(page, testInfo, 'breakpoints-restored');

  // F9 toggles a breakpoint at the cursor, as in most debuggers
  const runEditor = cellEditor(page, 1);
  await runEditor.locator('.cm-line').nth(1).click();
  await page.keyboard.press('F9');
  await expect(marker(runEditor, 2)).toHaveAttribute('data-status', 'active');
  await expect(bpRows(page)).toHaveCount(3);
  await page.keyboard.press('F9');
  await expect(marker(runEditor, 2)).toHaveCount(0);
  await expect(bpRows(page)).toHaveCount(2);
});
