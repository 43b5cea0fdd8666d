/** The clone engine's /metrics families: hydration bytes and regions, rate, commits, mode. */
import type { PromText, Sample } from '../prometheus.ts';
import type { CloneInfo } from './entry.ts';

const CLONE_MODES = ['rw', 'ro', 'Fail'] as const;

export function cloneMetrics(out: PromText, clones: readonly CloneInfo[]): void {
  const open = clones.filter((clone) => clone.status !== null);
  const perClone = (pick: (clone: CloneInfo) => number): Sample[] => open.map((clone) => ({ labels: { clone: clone.name }, value: pick(clone) }));
  out.family('blockcore_clone_open', 'gauge', '1 when the clone is open, 0 when it could not be reopened.', clones.map((clone) => ({ labels: { clone: clone.name }, value: clone.status === null ? 0 : 1 })));
  out.family('blockcore_clone_hydrated_bytes', 'gauge', 'Bytes of the clone copied to its destination.', perClone((clone) => clone.bytesHydrated!));
  out.family('blockcore_clone_size_bytes', 'gauge', 'Size of the clone.', perClone((clone) => clone.totalBytes!));
  out.family('blockcore_clone_hydrated_regions', 'gauge', 'Regions of the clone hydrated.', perClone((clone) => clone.hydratedRegions!));
  out.family('blockcore_clone_regions', 'gauge', 'Regions in the clone.', perClone((clone) => clone.totalRegions!));
  out.family('blockcore_clone_hydration_rate_bytes_per_second', 'gauge', 'Recent hydration rate.', perClone((clone) => clone.rateBytesPerSecond!));
  out.family('blockcore_clone_commits_total', 'counter', 'Metadata commits since the clone was opened.', perClone((clone) => clone.commits!));
  out.family('blockcore_clone_mode', 'gauge', '1 for the mode the clone is in (rw, ro, Fail).',
    open.flatMap((clone) => CLONE_MODES.map((mode) => ({ labels: { clone: clone.name, mode }, value: clone.mode === mode ? 1 : 0 }))));
}
