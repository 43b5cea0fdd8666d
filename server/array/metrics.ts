/** The array engine's /metrics families: legs in use, resync progress, write-intent bits, messages. */
import type { PromText, Sample } from '../prometheus.ts';
import type { ArrayInfo } from './registry.ts';

export function arrayMetrics(out: PromText, arrays: readonly ArrayInfo[]): void {
  const open = arrays.filter((array) => array.state !== null);
  const per = (pick: (array: ArrayInfo) => number): Sample[] => open.map((array) => ({ labels: { array: array.name }, value: pick(array) }));
  out.family('blockcore_array_assembled', 'gauge', '1 when the array is assembled on this node, 0 when it could not be.', arrays.map((array) => ({ labels: { array: array.name }, value: array.state === null ? 0 : 1 })));
  out.family('blockcore_array_active_legs', 'gauge', 'Legs in use.', per((array) => array.legs.filter((leg) => leg.state === 'active').length));
  out.family('blockcore_array_failed_legs', 'gauge', 'Legs marked faulty.', per((array) => array.legs.filter((leg) => leg.state === 'faulty').length));
  out.family('blockcore_array_resync_done_chunks', 'gauge', 'Chunks the current or last resync of this node brought in sync.', per((array) => array.resync!.doneChunks));
  out.family('blockcore_array_resync_chunks', 'gauge', 'Chunks the current or last resync of this node had to do.', per((array) => array.resync!.totalChunks));
  out.family('blockcore_array_dirty_chunks', 'gauge', "Bits set in this node's write-intent bitmap.", per((array) => array.dirtyChunks!));
  out.family('blockcore_array_bitmap_commits_total', 'counter', 'Bitmap page commits (each a write per page and leg, and a flush per leg).', per((array) => array.bitmapCommits!));
  out.family('blockcore_array_messages_sent_total', 'counter', 'Cluster messages this node sent.', per((array) => array.messages!.sent));
}
