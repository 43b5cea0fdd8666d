/**
 * The service's HTTP API: every part (api.ts) over one Service, plus what only the service has:
 * NBD exports, the cluster node, /metrics.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { ENGINES } from '../engines.ts';
import type { Service } from '../service.ts';
import { RUNTIME, VERSION } from '../version.ts';
import { assembleApp, openApiDocument as documentOf } from './api.ts';
import { clusterRoutes } from './cluster.ts';
import { exportRoutes } from './exports.ts';
import { metricsRoutes } from './metrics.ts';

export { UNAUTHENTICATED_PATHS, type HttpCounters } from './api.ts';

export interface AppOptions {
  service: Service;
  /** When set, every route but /v1/health needs `Authorization: Bearer <token>`. */
  token: string | null;
}

export const SERVICE_DESCRIPTION = 'Control API of a blockcore service: device files in its data directory and their bytes, engines (dm-clone style clones, ...), and NBD exports.';

/** `<kind>.<type>` of every engine's events. */
export const ENGINE_EVENT_TYPES = ENGINES.flatMap((engine) => engine.eventTypes.map((type) => `${engine.kind}.${type}`));

export function createApp({ service, token }: AppOptions): OpenAPIHono {
  return assembleApp({
    token,
    devices: service,
    data: service.data,
    engines: service.engines.values(),
    events: service.events,
    engineEventTypes: ENGINE_EVENT_TYPES,
    description: SERVICE_DESCRIPTION,
    version: VERSION,
    runtime: RUNTIME,
    more(app, counters) {
      exportRoutes(app, service);
      clusterRoutes(app, service);
      metricsRoutes(app, service, counters);
    },
  });
}

/** The OpenAPI 3.1 document of the service's app. */
export function openApiDocument(app: OpenAPIHono) {
  return documentOf(app, SERVICE_DESCRIPTION, VERSION);
}
