/** Mirrors and dirty logs over HTTP: create, list, inspect, fail a leg, resync, swap tables, suspend, resume, delete; the log server's instances. */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { z } from '@hono/zod-openapi';
import type { EngineContext } from '../engine.ts';
import { addRoute } from '../http/route.ts';
import { DeviceName, jsonAnswer, Name, nameParams, NoBody } from '../http/schemas.ts';
import type { MirrorRegistry } from './registry.ts';
import { LogList, MirrorInfo, MirrorList, NewMirror, ReplaceTable } from './schemas.ts';

const MIRROR_NAME = nameParams('mirror');
const LEG_PARAMS = z.strictObject({
  name: Name.openapi({ param: { name: 'name', in: 'path' }, description: "The mirror's name." }),
  leg: DeviceName.openapi({ param: { name: 'leg', in: 'path' }, description: 'The leg\'s device file, as the table names it.' }),
});

export function mirrorRoutes(app: OpenAPIHono, mirrors: MirrorRegistry, context: EngineContext): void {
  addRoute(app, { method: 'get', path: '/v1/logs', summary: "The dirty-log server's instances (uuid, luid, type, regions, in sync, live or inactive) and its socket.", responses: { 200: jsonAnswer('Logs.', LogList) }, errors: [401] }, (c) =>
    c.json({ socket: mirrors.socketPath, logs: mirrors.logs.list() }),
  );
  addRoute(app, { method: 'get', path: '/v1/mirrors', summary: 'Mirrors, each with its dm status line and sync progress.', responses: { 200: jsonAnswer('Mirrors.', MirrorList) }, errors: [401] }, async (c) =>
    c.json({ mirrors: await mirrors.list() }),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/mirrors', summary: 'Create a mirror from a dm mirror table line over device files; it resyncs in the background unless its log says the legs agree (nosync, a disk log with clean bits).', body: NewMirror, responses: { 201: jsonAnswer('Created.', MirrorInfo) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { body }) => c.json(await context.exclusive(() => mirrors.create(body)), 201),
  );
  addRoute(
    app,
    { method: 'get', path: '/v1/mirrors/{name}', summary: 'One mirror: its table, dm status line, sync progress, legs with their health.', params: MIRROR_NAME, responses: { 200: jsonAnswer('The mirror.', MirrorInfo) }, errors: [400, 401, 404] },
    async (c, { params }) => c.json(await mirrors.get(params.name)),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/mirrors/{name}/legs/{leg}/fail', summary: 'Fail a leg as a write error would; the leg fault policy applies (remove, or replace with a spare).', params: LEG_PARAMS, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Failed.', MirrorInfo) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { params }) => c.json(await context.exclusive(() => mirrors.failLeg(params.name, params.leg))),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/mirrors/{name}/resync', summary: 'Resync every region from the default leg (lvchange --resync), while the mirror stays in use.', params: MIRROR_NAME, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Resyncing.', MirrorInfo) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { params }) => c.json(await context.exclusive(() => mirrors.resync(params.name))),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/mirrors/{name}/replace-table', summary: "Load a new table beside the live one (dm's inactive table; its log constructed, not resumed); the next resume swaps it in under the mirror's exports.", params: MIRROR_NAME, body: ReplaceTable, responses: { 200: jsonAnswer('Loaded.', MirrorInfo) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { params, body }) => c.json(await context.exclusive(() => mirrors.replaceTable(params.name, body.table))),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/mirrors/{name}/suspend', summary: 'Suspend: new I/O waits; what is in flight and the resync finish, the log is flushed.', params: MIRROR_NAME, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Suspended.', MirrorInfo) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { params }) => c.json(await context.exclusive(() => mirrors.suspend(params.name))),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/mirrors/{name}/resume', summary: 'Resume; with a table loaded by replace-table, swap it in first.', params: MIRROR_NAME, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Resumed.', MirrorInfo) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { params }) => c.json(await context.exclusive(() => mirrors.resume(params.name))),
  );
  addRoute(
    app,
    { method: 'delete', path: '/v1/mirrors/{name}', summary: 'Close and forget the mirror (its legs and disk log keep their bytes); 409 while exported or in use.', params: MIRROR_NAME, responses: { 204: { description: 'Deleted.' } }, errors: [400, 401, 404, 409, 503] },
    async (c, { params }) => {
      await context.exclusive(() => mirrors.remove(params.name));
      return c.body(null, 204);
    },
  );
}
