/** Sizes in and out (binary units), durations, and plain column tables for the CLI. */
import { UsageError } from './args.ts';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;
const SUFFIX_POWER: Record<string, number> = { '': 0, K: 1, M: 2, G: 3, T: 4, P: 5 };

/** "4096", "512K", "10M", "1.5G", "2GiB", "1T": bytes, binary multiples. */
export function parseSize(text: string, field: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`${field} "${text}" is not a size (e.g. 4096, 512M, 10G, 1T)`);
  const bytes = Number(match[1]) * 1024 ** SUFFIX_POWER[match[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${field} "${text}" is not a whole number of bytes`);
  return bytes;
}

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, '0')}m`;
  if (minutes > 0) return `${minutes}m${String(rest).padStart(2, '0')}s`;
  return `${rest}s`;
}

/** Left-aligned columns separated by two spaces; the header row first. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
