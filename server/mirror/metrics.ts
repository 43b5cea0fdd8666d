/** The mirror engine's /metrics families: regions in sync, legs, log commits, and the log server's requests. */
import type { LogServer } from '../../runtime/dirty-log/log-server.ts';
import type { MirrorStatus } from '../../runtime/mirror/mirror-device.ts';
import type { PromText, Sample } from '../prometheus.ts';

export function mirrorMetrics(out: PromText, mirrors: ReadonlyArray<{ name: string; status: MirrorStatus | null }>, logs: LogServer): void {
  const open = mirrors.filter((mirror) => mirror.status !== null) as Array<{ name: string; status: MirrorStatus }>;
  const per = (pick: (status: MirrorStatus) => number): Sample[] => open.map((mirror) => ({ labels: { mirror: mirror.name }, value: pick(mirror.status) }));
  out.family('blockcore_mirror_open', 'gauge', '1 when the mirror is open, 0 when it could not be.', mirrors.map((mirror) => ({ labels: { mirror: mirror.name }, value: mirror.status === null ? 0 : 1 })));
  out.family('blockcore_mirror_regions', 'gauge', 'Regions of the mirror (the log\'s region size).', per((status) => status.regionCount));
  out.family('blockcore_mirror_live_legs', 'gauge', 'Legs not failed.', per((status) => status.legs.filter((leg) => leg.state !== 'failed').length));
  out.family('blockcore_mirror_marked_regions', 'gauge', 'Regions marked dirty in the log by writes.', per((status) => status.markedRegions));
  out.family('blockcore_mirror_log_commits_total', 'counter', 'Log FLUSHes the mirror waited for (one serves many writes).', per((status) => status.logCommits));
  out.family('blockcore_mirror_resync_bytes_total', 'counter', 'Bytes copied by resync.', per((status) => status.bytesResynced));
  out.family('blockcore_ulog_requests_total', 'counter', 'Requests the dirty-log server served (in process and over its socket).', [{ labels: {}, value: logs.requests }]);
  out.family('blockcore_ulog_refusals_total', 'counter', 'Requests the dirty-log server refused with an errno.', [{ labels: {}, value: logs.refusals }]);
  out.family('blockcore_ulog_logs', 'gauge', 'Log instances the server holds.', [{ labels: {}, value: logs.list().length }]);
}
