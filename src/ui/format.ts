/** Short human-readable text for summaries, sizes and times shown in the panel. */
import { ISummary } from '../kernel/protocol';

/** Whether a summary describes a tensor or an array (with shape and stats). */
export function isTensorLike(summary: ISummary): boolean {
  return summary.type === 'tensor' || summary.type === 'array';
}

/** Whether a summary describes a container that can be expanded. */
export function isExpandable(summary: ISummary): boolean {
  return (
    (summary.type === 'list' ||
      summary.type === 'tuple' ||
      summary.type === 'dict') &&
    (summary.length ?? 0) > 0
  );
}

/** A number in at most 4 significant digits (`null` for NaN/Inf-only data). */
export function formatNumber(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '–';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e6) {
    return String(value);
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return value.toExponential(2);
  }
  return String(Number(value.toPrecision(4)));
}

/** `float32[2, 12, 197, 197]` and the device when not the CPU. */
export function formatShape(summary: ISummary): string {
  const device =
    summary.device && summary.device !== 'cpu' ? ` ${summary.device}` : '';
  return `${summary.dtype ?? '?'}[${(summary.shape ?? []).join(', ')}]${device}`;
}

/** Statistics of a tensor summary, with NaN/Inf counts when there are any. */
export function formatStats(summary: ISummary): string {
  if (!summary.numel) {
    return 'empty';
  }
  const parts = [
    `min ${formatNumber(summary.min)}`,
    `max ${formatNumber(summary.max)}`,
    `mean ${formatNumber(summary.mean)}`,
    `std ${formatNumber(summary.std)}`
  ];
  if (summary.nan) {
    parts.push(`NaN ${summary.nan}`);
  }
  if (summary.inf) {
    parts.push(`Inf ${summary.inf}`);
  }
  return parts.join('  ');
}

/** One line for any summary. */
export function formatSummary(summary: ISummary): string {
  if (isTensorLike(summary)) {
    return `${formatShape(summary)}  ${formatStats(summary)}`;
  }
  if (summary.length !== undefined) {
    return `${summary.class ?? summary.type} of ${summary.length}`;
  }
  return summary.repr ?? summary.class ?? summary.type;
}

/** Bytes as B, kB, MB or GB. */
export function formatBytes(nbytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB'];
  let value = nbytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A time of day (HH:MM:SS.mmm, local) for epoch seconds. */
export function formatTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return (
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `.${pad(date.getMilliseconds(), 3)}`
  );
}

/** The last path component of a file name (works for `/` and `\\`). */
export function basename(file: string): string {
  const parts = file.split(/[\\/]/);
  return parts[parts.length - 1] || file;
}
