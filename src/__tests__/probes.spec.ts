/** Probe front end: which cells an edit and a Δ view name, token scores, the kernel code. */
import { HeatmapModel } from '../heatmap/model';
import { boxCells, ProbeEditModel, sliceMarks } from '../probes/editModel';
import {
  isTokenMap,
  overlayLayout,
  patchScores,
  tokenScores
} from '../probes/attributionModel';
import {
  attributeCode,
  KernelRunError,
  ProbeSession,
  runInputOf
} from '../probes/session';

describe('probe edit geometry', () => {
  it('a drag spans the box between two cells, either direction', () => {
    expect(
      [...boxCells({ r: 2, c: 3 }, { r: 1, c: 1 }, 5)].sort((a, b) => a - b)
    ).toEqual([6, 7, 8, 11, 12, 13]);
    expect([...boxCells({ r: 0, c: 0 }, { r: 0, c: 0 }, 5)]).toEqual([0]);
  });

  it('the Δ view marks only changed elements on the shown slice', () => {
    // input 2×3×4, rows dim 1, cols dim 2, showing index 1 of dim 0
    const indices = [
      [1, 0, 2],
      [0, 1, 1], // another slice: not marked
      [1, 2, 3]
    ];
    expect(
      [...sliceMarks(indices, [1, 0, 0], 1, 2, 4)].sort((a, b) => a - b)
    ).toEqual([2, 11]);
  });
});

describe('attribution display', () => {
  it('sums a token map over its embedding dimensions', () => {
    const values = new Float32Array([1, 2, 3, -1, -1, -1]);
    expect(Array.from(tokenScores(values, [2, 3])!)).toEqual([6, -3]);
    expect(tokenScores(values, [6])).toBe(values);
    expect(tokenScores(values, [1, 2, 3])).toBeNull();
  });

  it('tells token maps from images', () => {
    expect(isTokenMap([1, 12])).toBe(true);
    expect(isTokenMap([1, 12, 384])).toBe(true);
    expect(isTokenMap([1, 3, 224, 224])).toBe(false);
  });
});

describe('attribution code', () => {
  it('quotes names as Python literals and passes only set options', () => {
    const code = attributeCode('t"1', 'my "probe"', {
      method: 'integrated_gradients',
      steps: 32,
      baseline: 0.5,
      internal_batch_size: 8
    });
    expect(code).toContain(
      'attribute("t\\"1", "my \\"probe\\"", method="integrated_gradients", steps=32, ' +
        'baseline=0.5, internal_batch_size=8)'
    );
    expect(attributeCode('t', 'p', { method: 'saliency' })).toContain(
      'attribute("t", "p", method="saliency")'
    );
  });

  it('says an interrupt is one', () => {
    const error = new KernelRunError('KeyboardInterrupt', '');
    expect(error.interrupted).toBe(true);
    expect(error.message).toMatch(/Interrupted/);
    expect(new KernelRunError('ProbeError', 'boom').message).toBe(
      'ProbeError: boom'
    );
  });
});

describe('edits clicked while the kernel works', () => {
  /** A kernel holding one 2×2 input; re-runs wait until the test lets them finish. */
  function fakeKernel() {
    const x = [1, 1, 1, 1];
    const edits: { cells: number[][]; value: number }[] = [];
    let finishRerun: () => void = () => undefined;
    const answer = (result: any, values?: number[]) => ({
      result,
      buffers: values ? [new DataView(new Float32Array(values).buffer)] : []
    });
    const client = {
      eventReceived: { connect: () => true, disconnect: () => true },
      request: async (op: string, args: any): Promise<any> => {
        switch (op) {
          case 'probe_list':
            return answer({
              probes: [
                {
                  name: 'p',
                  inputs: [
                    {
                      name: 'x',
                      shape: [2, 2],
                      dtype: 'float32',
                      editable: true,
                      pending: 0
                    }
                  ],
                  runs: [{ number: 1, record: 1, edited: 0, seconds: 0 }],
                  undo: edits.length
                }
              ]
            });
          case 'probe_edit':
            edits.push({ cells: args.cells, value: args.value });
            for (const [r, c] of args.cells) {
              x[r * 2 + c] = args.value;
            }
            return answer({ undo: edits.length });
          case 'probe_heatmap':
            return answer(
              {
                shape: [2, 2],
                grid: null,
                rows: 2,
                cols: 2,
                row_step: 1,
                col_step: 1,
                reduce: null,
                min: Math.min(...x),
                max: Math.max(...x),
                nan: 0,
                inf: 0,
                expression: 'x'
              },
              [...x]
            );
          default:
            throw new Error(`unexpected op ${op}`);
        }
      }
    };
    const executor = {
      requestExecute: () => ({
        done: new Promise<any>(resolve => {
          finishRerun = () =>
            resolve({
              content: {
                status: 'ok',
                user_expressions: {
                  run: { status: 'ok', data: { 'text/plain': '[2, 9]' } }
                }
              }
            });
        })
      }),
      interrupt: async () => undefined
    };
    return { client, executor, edits, finish: () => finishRerun() };
  }

  const settle = async (model: ProbeEditModel) => {
    for (let i = 0; i < 100 && (model.busy || model.queued); i++) {
      await new Promise(resolve => setTimeout(resolve, 0));
    }
  };

  it('queues them behind the re-run, in order, each on the map the one before left', async () => {
    const kernel = fakeKernel();
    const connection = {
      client: kernel.client as any,
      executor: kernel.executor as any
    };
    const session = new ProbeSession(connection);
    const heatmap = new HeatmapModel({
      bridge: connection,
      captureId: 1,
      path: ['locals', 'inputs', 'x'],
      expression: 'x',
      shape: [2, 2],
      signed: false,
      live: { probe: 'p', input: 'x' }
    });
    await heatmap.fetch();
    const model = new ProbeEditModel(session, 'p', 'x', heatmap);
    const rerun = model.rerun();
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(model.busy).toBe('rerun');
    // three clicks while the re-run runs: cell (0, 0) twice, then (1, 1)
    for (const [r, c] of [
      [0, 0],
      [0, 0],
      [1, 1]
    ]) {
      model.down(r, c);
      model.up();
    }
    expect(model.queued).toBe(3);
    expect(kernel.edits).toEqual([]);
    kernel.finish();
    await rerun;
    await settle(model);
    expect(kernel.edits).toEqual([
      { cells: [[0, 0]], value: 0 },
      { cells: [[0, 0]], value: 1 }, // toggled back: decided on the map after the first
      { cells: [[1, 1]], value: 0 }
    ]);
    expect(model.queued).toBe(0);
    expect(model.error).toBeNull();
    model.dispose();
  });
});

describe('attributions on image patches', () => {
  it('lays token maps and square image maps on a patch grid', () => {
    // ViT-S/16 tokens: CLS + 14×14 patches, with embeddings or one score each
    expect(overlayLayout([1, 197, 384], 16)).toEqual({ prefix: 1, side: 14 });
    expect(overlayLayout([1, 197], 16)).toEqual({ prefix: 1, side: 14 });
    expect(overlayLayout([1, 3, 224, 224], 16)).toEqual({
      prefix: 0,
      side: 14
    });
    expect(overlayLayout([1, 1, 8, 8], 4)).toEqual({ prefix: 0, side: 2 });
    expect(overlayLayout([1, 3, 224, 224], 15)).toBeNull(); // 224 is not 15·k
    expect(overlayLayout([1, 3, 224, 224], 224)).toBeNull(); // one patch: no grid
    expect(overlayLayout([1, 3, 224, 160], 16)).toBeNull(); // not square
    expect(overlayLayout([1, 14, 10], 16)).toBeNull(); // 14 − (0…4) is no square
  });

  it('sums an image map over channels and each patch', () => {
    // 2 channels × 4×4, patch 2: channel 0 holds 0..15, channel 1 holds 100 everywhere
    const values = new Float32Array(32);
    for (let i = 0; i < 16; i++) {
      values[i] = i;
      values[16 + i] = 100;
    }
    expect(Array.from(patchScores(values, [2, 4, 4], 2))).toEqual([
      0 + 1 + 4 + 5 + 400,
      2 + 3 + 6 + 7 + 400,
      8 + 9 + 12 + 13 + 400,
      10 + 11 + 14 + 15 + 400
    ]);
  });

  it("offers Attribute… on a run's per-input values only", () => {
    expect(runInputOf(['locals', 'inputs', 'x'])).toBe('x');
    expect(runInputOf(['locals', 'gradients', 'x'])).toBe('x');
    expect(runInputOf(['locals', 'output'])).toBeNull();
    expect(runInputOf(['locals', 'inputs', 'x', 0])).toBeNull();
    expect(runInputOf(['locals', 'edited', 'x'])).toBeNull();
  });

  it('attributes an older run when asked', () => {
    expect(attributeCode('t', 'p', { method: 'saliency', run: 2 })).toContain(
      'attribute("t", "p", method="saliency", run=2)'
    );
  });
});

describe('an attribution record opened from the capture browser', () => {
  it('reads its probe, method and run as JSON from a silent execute', async () => {
    const requests: any[] = [];
    const executor = {
      requestExecute: (content: any) => {
        requests.push(content);
        return {
          done: Promise.resolve({
            content: {
              status: 'ok',
              user_expressions: {
                info: {
                  status: 'ok',
                  data: {
                    'text/plain': '<IPython.core.display.JSON object>',
                    'application/json': {
                      probe: 'it\'s "odd"',
                      method: 'integrated_gradients',
                      run: 3
                    }
                  }
                }
              }
            }
          } as any)
        };
      },
      interrupt: async () => undefined
    };
    const session = new ProbeSession({ client: null, executor });
    expect(await session.attributionOf(12)).toEqual({
      probe: 'it\'s "odd"',
      method: 'integrated_gradients',
      run: 3
    });
    expect(requests[0].silent).toBe(true);
    expect(requests[0].user_expressions.info).toContain(
      '__import__("nopdb_lab").store[12].attribution'
    );
  });
});
