/**
 * Opening a notebook never runs code (issue 16): a notebook whose saved breakpoints carry
 * code (an exec on the JSON encoder's line, which the kernel runs by itself for every
 * message; a hidden exec in an innocent-looking cell) opens with them disabled and their
 * code shown; running a cell runs none of it; JupyterLab's Trust command enables them.
 */
import { execSync } from 'child_process';

import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import { browser, keepScreenshot, status } from './notebooks';

const section = (page: IJupyterLabPageFixture) =>
  browser(page).locator('.jp-NopdbLab-breakpointsView');
const bpRow = (page: IJupyterLabPageFixture, id: string) =>
  section(page).locator(`.jp-NopdbLab-bpRow[data-breakpoint-id="${id}"]`);

/** The JSON encoder's line that every message the kernel sends goes through. */
function encoderLine(): { file: string; line: number } {
  const code = [
    'import inspect, json, json.encoder as e',
    'lines, start = inspect.getsourcelines(e.JSONEncoder.encode)',
    'n = next(i for i, l in enumerate(lines) if "iterencode(o, _one_shot=True)" in l)',
    'print(json.dumps({"file": e.__file__, "line": start + n}))'
  ].join('\n');
  return JSON.parse(execSync('python3 -', { input: code, encoding: 'utf-8' }));
}

const CELL = 'def f(x):\n    y = x + 1\n    return y\n\nprint(f(1))';

test('breakpoints with code from an untrusted notebook stay disabled until it is trusted', async ({
  page,
  tmpPath
}, testInfo) => {
  await page.setViewportSize({ width: 1600, height: 1000 });
  const encoder = encoderLine();
  const notebook = {
    cells: [
      { id: 'innocent', source: CELL },
      { id: 'later', source: 'z = 3' }
    ].map(cell => ({
      cell_type: 'code',
      execution_count: null,
      metadata: {},
      outputs: [],
      ...cell
    })),
    metadata: {
      kernelspec: {
        name: 'python3',
        display_name: 'Python 3 (ipykernel)',
        language: 'python'
      },
      'nopdb-lab': {
        breakpoints: [
          {
            id: 'bp-encoder',
            file: encoder.file,
            line: encoder.line,
            keep_locals: false,
            exec: "open('pwned-encoder.txt', 'w').write('ran')"
          },
          {
            id: 'bp-hidden',
            cell: 'innocent',
            line: 2,
            exec: "open('pwned-cell.txt', 'w').write('ran')"
          },
          { id: 'bp-plain', cell: 'innocent', line: 3 }
        ]
      }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  const name = 'untrusted.ipynb';
  await page.contents.uploadContent(
    JSON.stringify(notebook),
    'text',
    `${tmpPath}/${name}`
  );
  await page.notebook.openByPath(`${tmpPath}/${name}`);
  await page.notebook.activate(name);
  await page.sidebar.openTab('jp-nopdb-lab-browser');
  await expect(status(page)).toHaveAttribute('data-status', 'ready', {
    timeout: 60000
  });

  // loaded disabled, with the code they would run shown
  await expect(section(page).locator('.jp-NopdbLab-bpTrustNote')).toContainText(
    '2 breakpoints with code from an untrusted notebook are disabled'
  );
  for (const [id, code] of [
    ['bp-encoder', "open('pwned-encoder.txt', 'w').write('ran')"],
    ['bp-hidden', "open('pwned-cell.txt', 'w').write('ran')"]
  ]) {
    const row = bpRow(page, id);
    await expect(row).toContainText('from an untrusted notebook');
    await expect(row.locator('.jp-NopdbLab-bpUntrustedCode')).toContainText(
      code
    );
    await expect(row.getByLabel('Enabled')).not.toBeChecked();
    await expect(row).toHaveAttribute('data-status', 'disabled');
  }
  await expect(bpRow(page, 'bp-plain').getByLabel('Enabled')).toBeChecked();
  const cellMarker = page
    .locator('.jp-Notebook .jp-Cell')
    .first()
    .locator('.jp-NopdbLab-bp[data-line="2"]');
  await expect(cellMarker).toHaveAttribute('title', /untrusted notebook/);
  await expect(cellMarker).toHaveAttribute('title', /pwned-cell\.txt/);

  // running the innocent cell runs none of the stored code; the plain one still fires
  await page.notebook.runCell(0, { inplace: true });
  await expect(page.locator('.jp-OutputArea-output').first()).toContainText(
    '2'
  );
  await expect(
    bpRow(page, 'bp-plain').locator('.jp-NopdbLab-bpHitCount')
  ).toHaveText('1');
  expect(await page.contents.fileExists(`${tmpPath}/pwned-cell.txt`)).toBe(
    false
  );
  expect(await page.contents.fileExists(`${tmpPath}/pwned-encoder.txt`)).toBe(
    false
  );
  await expect(
    bpRow(page, 'bp-hidden').getByLabel('Enabled')
  ).not.toBeChecked();
  await section(page).scrollIntoViewIfNeeded();
  await keepScreenshot(page, testInfo, 'untrusted-breakpoints');

  // JupyterLab's Trust command enables them as saved
  void page.evaluate(() =>
    (window as any).jupyterapp.commands.execute('notebook:trust')
  );
  await page.locator('.jp-Dialog .jp-mod-warn').click();
  await expect(section(page).locator('.jp-NopdbLab-bpTrustNote')).toHaveCount(
    0
  );
  await expect(bpRow(page, 'bp-hidden').getByLabel('Enabled')).toBeChecked();
  await expect(bpRow(page, 'bp-encoder').getByLabel('Enabled')).toBeChecked();
  await page.notebook.runCell(0, { inplace: true });
  await expect
    .poll(() => page.contents.fileExists(`${tmpPath}/pwned-cell.txt`))
    .toBe(true);
  await expect
    .poll(() => page.contents.fileExists(`${tmpPath}/pwned-encoder.txt`))
    .toBe(true);
  await keepScreenshot(page, testInfo, 'trusted-breakpoints');
});
