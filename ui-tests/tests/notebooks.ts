/** Helpers shared by the UI tests and the viewer benchmark. */
import { IJupyterLabPageFixture } from '@jupyterlab/galata';

/** Upload a notebook made of these code cells (Python 3 kernel) and open it. */
export async function openCodeNotebook(
  page: IJupyterLabPageFixture,
  path: string,
  cells: string[]
): Promise<void> {
  const notebook = {
    cells: cells.map(source => ({
      cell_type: 'code',
      execution_count: null,
      metadata: {},
      outputs: [],
      source
    })),
    metadata: {
      kernelspec: {
        name: 'python3',
        display_name: 'Python 3 (ipykernel)',
        language: 'python'
      }
    },
    nbformat: 4,
    nbformat_minor: 5
  };
  await page.contents.uploadContent(JSON.stringify(notebook), 'text', path);
  await page.notebook.openByPath(path);
}
