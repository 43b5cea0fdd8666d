/**
 * An array's status as /proc/mdstat prints it, for the API's `state` and the CLI:
 *
 *   c1 : active raid1 leg1.img[1] leg0.img[0]
 *         64512 blocks super 1.2 [2/2] [UU]
 *         [====>................]  resync = 22.5% (14/62 chunks)
 *         bitmap: 3 dirty chunks, 64KB chunk, clustered, node slot 0 of 4
 *
 * `resync=PENDING` while another node holds the resync lock ("recovery" while a new or re-added
 * leg is rebuilt; it does not count in [n/m] until in sync); a failed leg is marked (F), a spare (S).
 */
import type { ArrayStatus } from './array-device.ts';

const BAR_CELLS = 20;

export function mdstatText(name: string, status: ArrayStatus): string {
  const legs = [...status.legs].reverse().map((leg) => `${leg.device}[${leg.devNumber}]${leg.state === 'faulty' ? '(F)' : leg.state === 'spare' ? '(S)' : ''}`);
  const active = status.legs.filter((leg) => leg.state === 'active' && !leg.recovering).length;
  const what = status.legs.some((leg) => leg.state === 'active' && leg.recovering) ? 'recovery' : 'resync';
  const lines = [
    `${name} : active ${status.level} ${legs.join(' ')}`,
    `      ${status.sizeBytes / 1024} blocks super 1.2 [${status.raidDisks}/${active}] ${status.picture}`,
  ];
  const { resync } = status;
  if (resync.state === 'pending') lines.push(`        ${what}=PENDING`);
  else if (resync.state === 'running') {
    const fraction = resync.totalChunks === 0 ? 0 : resync.doneChunks / resync.totalChunks;
    const done = Math.min(BAR_CELLS - 1, Math.floor(fraction * BAR_CELLS));
    lines.push(`      [${'='.repeat(done)}>${'.'.repeat(BAR_CELLS - 1 - done)}]  ${what} = ${(fraction * 100).toFixed(1)}% (${resync.doneChunks}/${resync.totalChunks} chunks)`);
  }
  if (status.bitmap === 'clustered') lines.push(`      bitmap: ${status.dirtyChunks} dirty chunks, ${status.chunkBytes / 1024}KB chunk, clustered, node slot ${status.slot} of ${status.nodes}`);
  else if (status.bitmap === 'internal') lines.push(`      bitmap: ${status.dirtyChunks} dirty chunks, ${status.chunkBytes / 1024}KB chunk, internal`);
  else lines.push(`      bitmap: none (${status.dirtyChunks > 0 ? 'dirty: a crash resyncs all' : 'clean'})`);
  return lines.join('\n');
}
