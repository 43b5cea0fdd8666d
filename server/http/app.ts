/**
 * The HTTP API: a Hono app over one Service. Middleware, in order: count the request (for
 * /metrics), check the bearer token (every route but /v1/health, when the service has one), cap
 * the body. Routes live one group per file; errors from anywhere become JSON (errors.ts).
 */
import { Hono } from 'hono';
import { ServiceError } from '../errors.ts';
import type { Service } from '../service.ts';
import { tokenChecker } from '../token.ts';
import { RUNTIME, VERSION } from '../version.ts';
import { MAX_BODY_BYTES } from './body.ts';
import { cloneRoutes } from './clones.ts';
import { deviceRoutes } from './devices.ts';
import { answerError, errorJson } from './errors.ts';
import { eventRoutes } from './events.ts';
import { exportRoutes } from './exports.ts';
import { metricsRoutes } from './metrics.ts';
import { openApiDocument } from './openapi.ts';

export const UNAUTHENTICATED_PATHS = new Set(['/v1/health']);

export interface HttpCounters {
  byStatus: Map<number, number>;
}

export interface AppOptions {
  service: Service;
  /** When set, every route but /v1/health needs `Authorization: Bearer <token>`. */
  token: string | null;
}

export function createApp({ service, token }: AppOptions): Hono {
  const counters: HttpCounters = { byStatus: new Map() };
  const tokenMatches = token === null ? null : tokenChecker(token);
  const app = new Hono();
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
    if (declared > MAX_BODY_BYTES) throw new ServiceError('E2BIG', `request body larger than ${MAX_BODY_BYTES} bytes`);
    await next();
  });

  app.get('/v1/health', (c) => c.json({ status: 'ok', version: VERSION, runtime: RUNTIME }));
  app.get('/v1/openapi.json', (c) => c.json(openApiDocument));
  app.route('/v1/devices', deviceRoutes(service));
  app.route('/v1/clones', cloneRoutes(service));
  app.route('/v1/exports', exportRoutes(service));
  app.route('/v1/events', eventRoutes(service));
  app.route('/metrics', metricsRoutes(service, counters));

  app.notFound((c) => errorJson(c, 'ENOENT', `no route ${c.req.method} ${c.req.path}`));
  app.onError(answerError);
  return app;
}
