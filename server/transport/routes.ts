/** Transport over HTTP: the RTRS server, client sessions and their paths, remote devices. */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { EngineContext } from '../engine.ts';
import { addRoute } from '../http/route.ts';
import { jsonAnswer, nameParams, NoBody } from '../http/schemas.ts';
import type { TransportRegistry } from './registry.ts';
import { NewDevice, NewSession, PathParams, PathSpec, RemoteDevice, RemoteDeviceList, ServerInfo, Session, SessionList } from './schemas.ts';

const SESSION_NAME = nameParams('session');
const DEVICE_NAME = nameParams('remote device');

export function transportRoutes(app: OpenAPIHono, transport: TransportRegistry, context: EngineContext): void {
  addRoute(app, { method: 'get', path: '/v1/transport/server', summary: 'The RTRS server: where it listens, and the sessions connected to it with their paths and open devices.', responses: { 200: jsonAnswer('The server.', ServerInfo) }, errors: [401] }, (c) =>
    c.json(transport.serverInfo()),
  );

  addRoute(app, { method: 'get', path: '/v1/transport/sessions', summary: 'Client sessions, each path with its stats.', responses: { 200: jsonAnswer('Sessions.', SessionList) }, errors: [401] }, (c) =>
    c.json({ sessions: transport.listSessions() }),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/transport/sessions', summary: 'Open an RTRS session to a server over one or more paths (connected when it answers).', body: NewSession, responses: { 201: jsonAnswer('Connected.', Session) }, errors: [400, 401, 404, 409, 413, 502, 503] },
    async (c, { body }) => {
      const record = { type: 'session' as const, name: body.name, paths: body.paths, policy: body.policy ?? 'min-inflight', keyFile: body.keyFile ?? null, digest: body.digest ?? false, alwaysInvalidate: body.alwaysInvalidate ?? false };
      return c.json(await context.exclusive(() => transport.createSession(record)), 201);
    },
  );
  addRoute(app, { method: 'get', path: '/v1/transport/sessions/{name}', summary: 'One session, each path with its stats.', params: SESSION_NAME, responses: { 200: jsonAnswer('The session.', Session) }, errors: [400, 401, 404] }, (c, { params }) =>
    c.json(transport.getSession(params.name)),
  );
  addRoute(
    app,
    { method: 'delete', path: '/v1/transport/sessions/{name}', summary: 'Close the session; 409 while devices are mapped on it.', params: SESSION_NAME, responses: { 204: { description: 'Closed.' } }, errors: [400, 401, 404, 409, 503] },
    async (c, { params }) => {
      await context.exclusive(() => transport.deleteSession(params.name));
      return c.body(null, 204);
    },
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/transport/sessions/{name}/paths', summary: 'Add a path (add_path): connected when it answers.', params: SESSION_NAME, body: PathSpec, responses: { 200: jsonAnswer('The session.', Session) }, errors: [400, 401, 404, 409, 413, 502, 503] },
    async (c, { params, body }) => c.json(await context.exclusive(() => transport.addPath(params.name, body))),
  );
  addRoute(
    app,
    { method: 'delete', path: '/v1/transport/sessions/{name}/paths/{path}', summary: 'Remove a path (remove_path): its IO fails over first; the last path stays.', params: PathParams, responses: { 200: jsonAnswer('The session.', Session) }, errors: [400, 401, 404, 409, 503] },
    async (c, { params }) => c.json(await context.exclusive(() => transport.removePath(params.name, params.path))),
  );
  for (const action of ['reconnect', 'disconnect'] as const) {
    addRoute(
      app,
      {
        method: 'post', path: `/v1/transport/sessions/{name}/paths/{path}/${action}`,
        summary: action === 'reconnect' ? 'Drop the path and connect it again now (its IO fails over meanwhile).' : 'Close the path and keep it closed until reconnect (its IO fails over).',
        params: PathParams, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('The session.', Session) }, errors: [400, 401, 404, 409, 413, 503],
      },
      async (c, { params }) => c.json(await context.exclusive(async () => transport.pathAction(params.name, params.path, action))),
    );
  }
  addRoute(
    app,
    { method: 'post', path: '/v1/transport/sessions/{name}/stats/reset', summary: "Zero the session's path stats (reset_all).", params: SESSION_NAME, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('The session.', Session) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { params }) => c.json(await context.exclusive(async () => transport.resetStats(params.name))),
  );

  addRoute(app, { method: 'get', path: '/v1/transport/devices', summary: 'Remote devices mapped here.', responses: { 200: jsonAnswer('Remote devices.', RemoteDeviceList) }, errors: [401] }, (c) =>
    c.json({ devices: transport.listDevices() }),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/transport/devices', summary: "Map a server's device over a session (RNBD OPEN): usable as remote:<name>.", body: NewDevice, responses: { 201: jsonAnswer('Mapped.', RemoteDevice) }, errors: [400, 401, 404, 409, 413, 502, 503] },
    async (c, { body }) => c.json(await context.exclusive(() => transport.mapDevice({ type: 'device', name: body.name, session: body.session, device: body.device, access: body.access ?? 'rw' })), 201),
  );
  addRoute(app, { method: 'get', path: '/v1/transport/devices/{name}', summary: 'One remote device.', params: DEVICE_NAME, responses: { 200: jsonAnswer('The device.', RemoteDevice) }, errors: [400, 401, 404] }, (c, { params }) =>
    c.json(transport.getDevice(params.name)),
  );
  addRoute(
    app,
    { method: 'delete', path: '/v1/transport/devices/{name}', summary: 'Unmap (RNBD CLOSE); 409 while exported.', params: DEVICE_NAME, responses: { 204: { description: 'Unmapped.' } }, errors: [400, 401, 404, 409, 503] },
    async (c, { params }) => {
      await context.exclusive(() => transport.unmapDevice(params.name));
      return c.body(null, 204);
    },
  );
}
