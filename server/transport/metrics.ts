/** The transport engine's /metrics families: per client path its state and IO counts, and the RTRS server's sessions. */
import type { PromText } from '../prometheus.ts';
import type { SessionInfo } from './registry.ts';
import type { ListenerInfo } from './rnbd-listener.ts';

export function transportMetrics(out: PromText, sessions: readonly SessionInfo[], server: ListenerInfo | null): void {
  const paths = sessions.flatMap((session) => session.pathStats.map((path) => ({ labels: { session: session.name, path: path.name }, stats: path.stats })));
  const each = (pick: (stats: (typeof paths)[number]['stats']) => number) => paths.map((path) => ({ labels: path.labels, value: pick(path.stats) }));
  out.family('blockcore_remote_session_open', 'gauge', '1 when the client session is open (some path may be reconnecting), 0 when not.',
    sessions.map((session) => ({ labels: { session: session.name }, value: session.state === 'closed' ? 0 : 1 })));
  out.family('blockcore_remote_path_connected', 'gauge', '1 when the path is CONNECTED.', each((stats) => (stats.state === 'CONNECTED' ? 1 : 0)));
  out.family('blockcore_remote_path_reads_total', 'counter', 'Read requests sent on the path (since the last reset).', each((stats) => stats.readCount));
  out.family('blockcore_remote_path_read_bytes_total', 'counter', 'Bytes read over the path.', each((stats) => stats.readBytes));
  out.family('blockcore_remote_path_writes_total', 'counter', 'Write requests sent on the path.', each((stats) => stats.writeCount));
  out.family('blockcore_remote_path_write_bytes_total', 'counter', 'Bytes written over the path.', each((stats) => stats.writeBytes));
  out.family('blockcore_remote_path_inflight', 'gauge', 'Requests in flight on the path.', each((stats) => stats.inflight));
  out.family('blockcore_remote_path_failovers_total', 'counter', 'Requests moved to another path when this one failed.', each((stats) => stats.failoverCount));
  out.family('blockcore_remote_path_reconnects_total', 'counter', 'Reconnect attempts of the path, by result.',
    paths.flatMap((path) => [{ labels: { ...path.labels, result: 'ok' }, value: path.stats.reconnects.ok }, { labels: { ...path.labels, result: 'failed' }, value: path.stats.reconnects.failed }]));
  out.family('blockcore_remote_path_latency_seconds', 'gauge', 'Heartbeat round trip of the path.', each((stats) => stats.curLatencyMs / 1000));
  out.family('blockcore_rtrs_server_sessions', 'gauge', 'Client sessions connected to our RTRS server.', server === null ? [] : [{ value: server.sessions.length }]);
}
