/**
 * The attention-sink grid: for the layers of one forward pass or generation (the
 * attention records of one block), the mean share of each query's probability on the
 * first k tokens, per layer × head. The kernel computes it (`attention_sinks`) into a
 * view record; it opens in the heatmap viewer with the layers and heads named.
 */
import { InputDialog, Notification } from '@jupyterlab/apputils';

import { IHeatmapConnection, IHeatmapSource } from './model';

/** StreamingLLM keeps the first 4 tokens as sinks. */
export const DEFAULT_SINK_TOKENS = 4;

/** Ask for k (how many first tokens count as the sink); null when cancelled. */
export async function askSinkTokens(): Promise<number | null> {
  const answer = await InputDialog.getNumber({
    title: 'Attention sinks',
    label:
      'Share of each query’s attention on the first k tokens, per layer × head. k =',
    value: DEFAULT_SINK_TOKENS
  });
  if (!answer.button.accept || answer.value === null) {
    return null;
  }
  return answer.value;
}

/** Ask the kernel for the sink grid of `captureId`'s block; the viewer's source for it. */
export async function sinkGridSource(
  bridge: IHeatmapConnection,
  captureId: number,
  k: number
): Promise<IHeatmapSource> {
  const client = bridge.client;
  if (!client) {
    throw new Error('The kernel is not connected.');
  }
  if (!Number.isInteger(k) || k < 1) {
    throw new Error(
      `k must be a whole number of tokens, at least 1 (got ${k})`
    );
  }
  const { result } = await client.request('attention_sinks', {
    id: captureId,
    k
  });
  const [layers, heads] = result.shape;
  const first = k === 1 ? 'token 0' : `tokens 0–${k - 1}`;
  return {
    bridge,
    captureId: result.id,
    path: result.path,
    expression:
      `attention sinks (${first}) of ${layers} layers × ${heads} heads` +
      (result.steps > 1 ? `, ${result.steps} generation steps` : ''),
    shape: result.shape,
    signed: false,
    axisLabels: {
      rows: result.layers.map((name, i) => `${i} ${name}`),
      cols: Array.from({ length: heads }, (_, h) => `head ${h}`)
    }
  };
}

/** Open the sink grid of `captureId` (asking k when not given); errors as notifications. */
export async function openSinkGrid(
  bridge: IHeatmapConnection,
  captureId: number,
  k: number | null,
  open: (source: IHeatmapSource) => void
): Promise<void> {
  const tokens = k ?? (await askSinkTokens());
  if (tokens === null) {
    return;
  }
  try {
    open(await sinkGridSource(bridge, captureId, tokens));
  } catch (error) {
    Notification.error(`Attention sinks: ${(error as Error).message}`, {
      autoClose: false
    });
  }
}
