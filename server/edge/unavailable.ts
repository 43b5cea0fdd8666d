/**
 * The service's routes a host does not serve: each answered 501 with a JSON error naming the route
 * (code ENOSYS, field "route"), and in the host's OpenAPI document as "not on this host", so a
 * client learns what it cannot do here instead of a 404 that reads like a typo.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { errorJson } from '../http/errors.ts';
import { documentRoute } from '../http/route.ts';
import { SERVICE_ROUTES } from './service-routes.ts';

type Method = 'get' | 'head' | 'post' | 'put' | 'delete';

/** `METHOD /path` of every route `app` has in its document now. */
export function documentedRoutes(app: OpenAPIHono): Set<string> {
  const routes = new Set<string>();
  for (const definition of app.openAPIRegistry.definitions) {
    if (definition.type === 'route') routes.add(`${definition.route.method.toUpperCase()} ${definition.route.path}`);
  }
  return routes;
}

export function unavailableRoutes(app: OpenAPIHono, reason: string): void {
  const served = documentedRoutes(app);
  for (const route of SERVICE_ROUTES) {
    if (served.has(route)) continue;
    const [method, path] = route.split(' ') as [string, string];
    documentRoute(app, { method: method.toLowerCase() as Method, path, summary: `Not on this host (${reason}): answers 501.`, responses: {}, errors: [501] });
    if (method === 'HEAD') continue;
    app.on(method, path.replace(/\{(\w+)\}/g, ':$1'), (c) => errorJson(c, 'ENOSYS', `${route} is not served on this host: ${reason}`, 'route'));
  }
}
