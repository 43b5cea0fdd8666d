/**
 * Every route of the full service (method and OpenAPI path), so a host that serves fewer answers
 * the others 501 and documents them as absent (unavailable.ts). test/edge-app.test.ts compares
 * this list with the service's own document, so it cannot drift.
 */
export const SERVICE_ROUTES: readonly string[] = [
  'DELETE /v1/arrays/{name}/legs/{slot}', 'DELETE /v1/clones/{name}', 'DELETE /v1/devices/{name}', 'DELETE /v1/exports/{name}',
  'DELETE /v1/mirrors/{name}', 'DELETE /v1/transport/devices/{name}', 'DELETE /v1/transport/sessions/{name}',
  'DELETE /v1/transport/sessions/{name}/paths/{path}', 'GET /metrics', 'GET /v1/arrays', 'GET /v1/arrays/{name}', 'GET /v1/clones',
  'GET /v1/clones/{name}', 'GET /v1/cluster', 'GET /v1/devices', 'GET /v1/devices/{ref}/data', 'GET /v1/events', 'GET /v1/exports',
  'GET /v1/health', 'GET /v1/logs', 'GET /v1/mirrors', 'GET /v1/mirrors/{name}', 'GET /v1/openapi.json', 'GET /v1/transport/devices',
  'GET /v1/transport/devices/{name}', 'GET /v1/transport/server', 'GET /v1/transport/sessions', 'GET /v1/transport/sessions/{name}',
  'HEAD /v1/devices/{ref}/data', 'POST /v1/arrays', 'POST /v1/arrays/{name}/bitmap', 'POST /v1/arrays/{name}/legs',
  'POST /v1/arrays/{name}/legs/{slot}/fail', 'POST /v1/arrays/{name}/legs/{slot}/re-add', 'POST /v1/arrays/{name}/resize',
  'POST /v1/arrays/{name}/resync-speed', 'POST /v1/arrays/{name}/stop', 'POST /v1/clones', 'POST /v1/clones/{name}/finalize',
  'POST /v1/clones/{name}/message', 'POST /v1/clones/{name}/resume', 'POST /v1/clones/{name}/suspend', 'POST /v1/devices',
  'POST /v1/exports', 'POST /v1/mirrors', 'POST /v1/mirrors/{name}/legs/{leg}/fail', 'POST /v1/mirrors/{name}/replace-table',
  'POST /v1/mirrors/{name}/resume', 'POST /v1/mirrors/{name}/resync', 'POST /v1/mirrors/{name}/suspend', 'POST /v1/transport/devices',
  'POST /v1/transport/sessions', 'POST /v1/transport/sessions/{name}/paths', 'POST /v1/transport/sessions/{name}/paths/{path}/disconnect',
  'POST /v1/transport/sessions/{name}/paths/{path}/reconnect', 'POST /v1/transport/sessions/{name}/stats/reset', 'PUT /v1/devices/{ref}/data',
];
