/**
 * What the viewer benchmarks share: a view counts its paints in `data-paints` and stamps
 * `data-painted-at` (performance.now() of the animation frame after a paint); a user
 * action is timed from just before it to that stamp, in the page.
 */
import { expect } from '@jupyterlab/galata';
import { Page } from '@playwright/test';

/** How many times the view matching `selector` has painted. */
export async function paints(page: Page, selector: string): Promise<number> {
  return Number(
    (await page.locator(selector).first().getAttribute('data-paints')) ?? 0
  );
}

/** Milliseconds from `act` to the view's next paint (after `before` paints). */
export async function timeUntilPainted(
  page: Page,
  selector: string,
  before: number,
  act: () => Promise<unknown>
): Promise<number> {
  const t0 = await page.evaluate(() => performance.now());
  await act();
  await expect
    .poll(() => paints(page, selector), { timeout: 60000 })
    .toBeGreaterThan(before);
  const painted = Number(
    await page.locator(selector).first().getAttribute('data-painted-at')
  );
  return painted - t0;
}

/** Both, bound to one view: what each benchmark file uses. */
export function viewTiming(selector: string): {
  paints: (page: Page) => Promise<number>;
  timeUntilPainted: (
    page: Page,
    before: number,
    act: () => Promise<unknown>
  ) => Promise<number>;
} {
  return {
    paints: page => paints(page, selector),
    timeUntilPainted: (page, before, act) =>
      timeUntilPainted(page, selector, before, act)
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** One result line: the median against its goal, with the run count and the range. */
export function resultLine(
  name: string,
  values: number[],
  goal: number,
  width = 40
): string {
  return (
    `${name.padEnd(width)} median ${median(values).toFixed(0).padStart(4)} ms` +
    `  (goal ≤ ${goal} ms, ${values.length} runs, min ${Math.min(...values).toFixed(0)}, ` +
    `max ${Math.max(...values).toFixed(0)})`
  );
}
