/**
 * The HTTP API as any host assembles it: an OpenAPIHono app over the parts that host has. The
 * service (app.ts) gives all of them; an edge host (server/edge/) gives the devices it stores, the
 * clone engine and the data plane, and answers the rest 501 (unavailable.ts). Middleware, in
 * order: count the request (for /metrics), check the bearer token (every route but /v1/health, when
 * the host has one), cap the body. Every route is defined once with its schemas (route.ts), and
 * the OpenAPI document at /v1/openapi.json is generated from those definitions. Errors from
 * anywhere become JSON (errors.ts).
 */
import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { DataDevices } from '../data-plane/data-devices.ts';
import type { Engine } from '../engine.ts';
import { ServiceError } from '../errors.ts';
import type { EventHub } from '../event-hub.ts';
import { tokenChecker } from '../token-check.ts';
import { dataRoutes, DEFAULT_DATA_PLANE_LIMITS, type DataPlaneLimits } from './data.ts';
import { deviceRoutes, type DeviceCatalog } from './devices.ts';
import { answerError, errorJson } from './errors.ts';
import { eventRoutes } from './events.ts';
import { addRoute, isDataPut, MAX_BODY_BYTES } from './route.ts';
import { jsonAnswer } from './schemas.ts';

export const UNAUTHENTICATED_PATHS = new Set(['/v1/health']);

export interface HttpCounters {
  byStatus: Map<number, number>;
}

export interface ApiParts {
  /** When set, every route but /v1/health needs `Authorization: Bearer <token>`. */
  token: string | null;
  devices: DeviceCatalog;
  data: DataDevices;
  engines: Iterable<Engine>;
  events: EventHub;
  /** `<kind>.<type>` of the events the engines publish, for the document. */
  engineEventTypes: readonly string[];
  /** What the document says the API controls. */
  description: string;
  /** For /v1/health and the document: the package's version and the host (`node`, `workerd`). */
  version: string;
  runtime: string;
  /** The data plane's PUT limits (default DEFAULT_DATA_PLANE_LIMITS). */
  dataLimits?: DataPlaneLimits;
  /** Route groups beyond the common ones (the service's exports, cluster, metrics). */
  more?(app: OpenAPIHono, counters: HttpCounters): void;
}

const Health = z.strictObject({ status: z.literal('ok'), version: z.string(), runtime: z.string() }).openapi('Health');

export function assembleApp(parts: ApiParts): OpenAPIHono {
  const { token } = parts;
  const dataLimits = parts.dataLimits ?? DEFAULT_DATA_PLANE_LIMITS;
  const counters: HttpCounters = { byStatus: new Map() };
  const tokenMatches = token === null ? null : tokenChecker(token);
  const app = new OpenAPIHono();
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  app.use(async (c, next) => {
    await next();
    counters.byStatus.set(c.res.status, (counters.byStatus.get(c.res.status) ?? 0) + 1);
  });
  app.use(async (c, next) => {
    if (token !== null && !UNAUTHENTICATED_PATHS.has(c.req.path)) {
      const presented = /^Bearer +(\S+) *$/i.exec(c.req.header('authorization') ?? '')?.[1];
      if (presented === undefined || !tokenMatches!(presented)) {
        c.header('www-authenticate', 'Bearer realm="blockcore"');
        return errorJson(c, 'EACCES', presented === undefined ? 'missing Authorization: Bearer <token>' : 'wrong token');
      }
    }
    const declared = Number(c.req.header('content-length'));
    const limitBytes = isDataPut(c.req.method, c.req.path) ? dataLimits.putBytesMax : MAX_BODY_BYTES;
    if (declared > limitBytes) throw new ServiceError('E2BIG', `request body larger than ${limitBytes} bytes`, 'body');
    await next();
  });

  addRoute(app, { method: 'get', path: '/v1/health', summary: 'Liveness; needs no token.', unauthenticated: true, responses: { 200: jsonAnswer('Up.', Health) }, errors: [] }, (c) =>
    c.json({ status: 'ok', version: parts.version, runtime: parts.runtime }),
  );
  let document: unknown = null;
  addRoute(app, { method: 'get', path: '/v1/openapi.json', summary: 'This document.', responses: { 200: jsonAnswer('OpenAPI 3.1 document.', z.object({}).passthrough()) }, errors: [401] }, (c) =>
    c.json((document ??= openApiDocument(app, parts.description, parts.version)) as object),
  );
  deviceRoutes(app, parts.devices);
  dataRoutes(app, parts.data, dataLimits);
  for (const engine of parts.engines) engine.routes(app);
  parts.more?.(app, counters);
  eventRoutes(app, parts.events, parts.engineEventTypes);

  app.notFound((c) => errorJson(c, 'ENOENT', `no route ${c.req.method} ${c.req.path}`));
  app.onError(answerError);
  return app;
}

/** The OpenAPI 3.1 document, generated from the routes' definitions. */
export function openApiDocument(app: OpenAPIHono, description: string, version: string) {
  return app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: {
      title: 'blockcore',
      version,
      description:
        `${description} ` +
        'Every route but /v1/health needs `Authorization: Bearer <token>` when the service has a token. ' +
        `Errors are JSON {error, code, field?}. Request bodies are JSON objects of at most ${MAX_BODY_BYTES} bytes (device data: see the data routes); unknown fields are refused.`,
    },
    security: [{ bearer: [] }],
  });
}
