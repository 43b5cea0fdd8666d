/**
 * `blockcore clone status NAME --watch`: polls the clone until hydration completes. On a terminal,
 * one line redrawn in place: a bar, percent, bytes, rate and ETA. Otherwise (a pipe, a log) a plain
 * line whenever something changed. Ends 0 when hydrated, 1 when hydration stopped on errors or
 * the clone failed.
 */
import { CliError, type ApiClient } from '../cli/client.ts';
import { formatBytes, formatDuration } from '../cli/format.ts';
import type { CloneInfo } from './entry.ts';

export const BAR_CELLS = 30;

export interface WatchOptions {
  tty: boolean;
  intervalMs: number;
  write(text: string): void;
}

export function progressLine(clone: CloneInfo, tty: boolean): string {
  const total = clone.totalBytes ?? 0;
  const done = clone.bytesHydrated ?? 0;
  const fraction = total === 0 ? 1 : done / total;
  const percent = `${(fraction * 100).toFixed(1)}%`;
  const rate = `${formatBytes(Math.round(clone.rateBytesPerSecond ?? 0))}/s`;
  const eta = clone.hydrationComplete ? 'done' : clone.hydrationEnabled ? `ETA ${formatDuration(clone.etaSeconds ?? null)}` : 'hydration disabled';
  const fields = [percent.padStart(6), `${formatBytes(done)}/${formatBytes(total)}`, rate, eta, clone.mode ?? ''];
  if (!tty) return [clone.name, ...fields.map((field) => field.trim())].join(' ');
  const filled = Math.floor(fraction * BAR_CELLS);
  return `${clone.name} [${'#'.repeat(filled)}${'.'.repeat(BAR_CELLS - filled)}] ${fields.join('  ')}`;
}

export async function watchClone(client: ApiClient, name: string, options: WatchOptions): Promise<number> {
  let last = '';
  for (;;) {
    const clone = await client.request<CloneInfo>('GET', `/v1/clones/${encodeURIComponent(name)}`);
    if (clone.status === null) throw new CliError(`clone ${name} is not open: ${clone.error}`);
    const line = progressLine(clone, options.tty);
    if (options.tty) options.write(`\r${line}\x1b[K`);
    else if (line !== last) options.write(`${line}\n`);
    last = line;
    if (clone.hydrationComplete) {
      if (options.tty) options.write('\n');
      return 0;
    }
    if (clone.mode === 'Fail' || clone.hydrationError) {
      if (options.tty) options.write('\n');
      throw new CliError(`clone ${name}: ${clone.mode === 'Fail' ? 'the clone failed' : `hydration stopped: ${clone.hydrationError}`}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
  }
}
