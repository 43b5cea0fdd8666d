/**
 * GET /metrics: Prometheus text. Devices (size, allocation), each engine's families (clones:
 * hydration bytes and regions, rate, commits, mode), exports (I/O operations, bytes, errors,
 * clients), the NBD server's counters, HTTP requests by status and events by type.
 */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import { CONTENT_TYPE, PromText } from '../prometheus.ts';
import type { Service } from '../service.ts';
import { RUNTIME, VERSION } from '../version.ts';
import type { HttpCounters } from './api.ts';
import { addRoute } from './route.ts';
const EXPORT_IO = [
  ['reads', 'blockcore_export_reads_total', 'Read requests served by the export.'],
  ['writes', 'blockcore_export_writes_total', 'Write requests served by the export.'],
  ['flushes', 'blockcore_export_flushes_total', 'Flush requests served by the export.'],
  ['discards', 'blockcore_export_discards_total', 'Discard (trim) requests served by the export.'],
  ['bytesRead', 'blockcore_export_read_bytes_total', 'Bytes read through the export.'],
  ['bytesWritten', 'blockcore_export_written_bytes_total', 'Bytes written through the export.'],
  ['errors', 'blockcore_export_errors_total', 'Requests through the export that failed.'],
] as const;

export function metricsRoutes(app: OpenAPIHono, service: Service, http: HttpCounters): void {
  addRoute(
    app,
    { method: 'get', path: '/metrics', summary: 'Prometheus text format.', responses: { 200: { description: 'Metrics.', content: { 'text/plain': { schema: z.string() } } } }, errors: [401] },
    (c) => c.body(render(service, http), 200, { 'content-type': CONTENT_TYPE }),
  );
}

export function render(service: Service, http: HttpCounters): string {
  const out = new PromText();
  out.family('blockcore_info', 'gauge', 'Version and runtime of this blockcore.', [{ labels: { version: VERSION, runtime: RUNTIME }, value: 1 }]);
  out.family('blockcore_uptime_seconds', 'gauge', 'Seconds since the service started.', [{ value: (Date.now() - service.startedAtMs) / 1000 }]);

  const devices = service.listDevices();
  out.family('blockcore_device_size_bytes', 'gauge', 'Size of each device file.', devices.map((d) => ({ labels: { device: d.name }, value: d.sizeBytes })));
  out.family('blockcore_device_allocated_bytes', 'gauge', 'Disk space each device file occupies.', devices.map((d) => ({ labels: { device: d.name }, value: d.allocatedBytes })));

  for (const engine of service.engines.values()) engine.metrics(out);

  const exports = service.listExports();
  for (const [key, name, help] of EXPORT_IO) {
    out.family(name, 'counter', help, exports.map((e) => ({ labels: { export: e.name, device: e.device }, value: e.io[key] })));
  }
  out.family('blockcore_export_clients', 'gauge', 'NBD clients connected to the export.', exports.map((e) => ({ labels: { export: e.name }, value: e.clients.length })));

  const nbd = service.nbdCounters;
  if (nbd) {
    out.family('blockcore_nbd_connections_total', 'counter', 'NBD connections accepted.', [{ value: nbd.connections }]);
    out.family('blockcore_nbd_requests_total', 'counter', 'NBD requests handled.', [{ value: nbd.requests }]);
    out.family('blockcore_nbd_read_bytes_total', 'counter', 'Bytes sent to NBD clients by reads.', [{ value: nbd.bytesRead }]);
    out.family('blockcore_nbd_written_bytes_total', 'counter', 'Bytes written by NBD clients.', [{ value: nbd.bytesWritten }]);
    out.family('blockcore_nbd_errors_total', 'counter', 'NBD requests answered with an error.', [{ value: nbd.errors }]);
  }

  out.family('blockcore_http_requests_total', 'counter', 'HTTP API requests by status code.',
    [...http.byStatus].sort(([a], [b]) => a - b).map(([status, count]) => ({ labels: { code: String(status) }, value: count })));
  out.family('blockcore_events_total', 'counter', 'Events published, by type.',
    [...service.events.countsByType].sort(([a], [b]) => (a < b ? -1 : 1)).map(([type, count]) => ({ labels: { type }, value: count })));
  out.family('blockcore_event_subscribers', 'gauge', 'Open event streams.', [{ value: service.events.subscriberCount }]);
  return out.toString();
}
