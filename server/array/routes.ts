/** Arrays over HTTP: create or assemble, list, inspect, manage legs, resize, stop. */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { z } from '@hono/zod-openapi';
import type { EngineContext } from '../engine.ts';
import { addRoute } from '../http/route.ts';
import { jsonAnswer, Name, nameParams, NoBody } from '../http/schemas.ts';
import type { ArrayRegistry } from './registry.ts';
import { ArrayInfo, ArrayList, NewArray, NewLeg, ResizeArray, ResyncSpeed, SwitchBitmap } from './schemas.ts';

const ARRAY_NAME = nameParams('array');
const LEG_PARAMS = z.strictObject({
  name: Name.openapi({ param: { name: 'name', in: 'path' }, description: "The array's name." }),
  slot: z.string().regex(/^\d{1,5}$/).openapi({ param: { name: 'slot', in: 'path' }, description: "The leg's slot (device number) as GET lists it." }),
});

export function arrayRoutes(app: OpenAPIHono, arrays: ArrayRegistry, context: EngineContext): void {
  addRoute(app, { method: 'get', path: '/v1/arrays', summary: 'Arrays, each with its mdstat-like state.', responses: { 200: jsonAnswer('Arrays.', ArrayList) }, errors: [401] }, (c) =>
    c.json({ arrays: arrays.list() }),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays',
      summary: 'Create a clustered raid1/raid10 array on device files (formats them: md v1.2 superblock, clustered bitmap) and assemble it on this node; with assemble: true, assemble the array the legs hold.',
      body: NewArray, responses: { 201: jsonAnswer('Created or assembled.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { body }) => c.json(await context.exclusive(() => arrays.create(body)), 201),
  );
  addRoute(
    app,
    { method: 'get', path: '/v1/arrays/{name}', summary: 'One array: legs, state as /proc/mdstat prints it, resync, suspended ranges, bitmap.', params: ARRAY_NAME, responses: { 200: jsonAnswer('The array.', ArrayInfo) }, errors: [400, 401, 404] },
    (c, { params }) => c.json(arrays.get(params.name)),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/legs/{slot}/fail',
      summary: 'Fail a leg (mdadm --fail): no node writes it again; every node is told before this answers.',
      params: LEG_PARAMS, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Failed.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params }) => c.json(await context.exclusive(() => arrays.fail(params.name, Number(params.slot)))),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/legs',
      summary: 'Add a leg (mdadm --add): a device file of the data directory; it takes a vacant role and is recovered, or stays a spare. Every node must see it (else 409).',
      params: ARRAY_NAME, body: NewLeg, responses: { 200: jsonAnswer('Added.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params, body }) => c.json(await context.exclusive(() => arrays.addLeg(params.name, body.device, body.spare ?? false, body.grow ?? false))),
  );
  addRoute(
    app,
    {
      method: 'delete', path: '/v1/arrays/{name}/legs/{slot}',
      summary: 'Remove a spare or failed leg (mdadm --remove); 409 for an active one.',
      params: LEG_PARAMS, responses: { 200: jsonAnswer('Removed.', ArrayInfo) }, errors: [400, 401, 404, 409, 503],
    },
    async (c, { params }) => c.json(await context.exclusive(() => arrays.removeLeg(params.name, Number(params.slot)))),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/legs/{slot}/re-add',
      summary: 'Re-add a failed leg (mdadm --re-add): back in its role, only the chunks written meanwhile recovered.',
      params: LEG_PARAMS, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Re-added.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params }) => c.json(await context.exclusive(() => arrays.readdLeg(params.name, Number(params.slot)))),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/resize',
      summary: "Change the array's size on every node (mdadm --grow --size): a grow resyncs only the new part; 409 while exported or in use, or while a resync runs.",
      params: ARRAY_NAME, body: ResizeArray, responses: { 200: jsonAnswer('Resized.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params, body }) => c.json(await context.exclusive(() => arrays.resize(params.name, body.sizeBytes, body.assumeClean ?? false))),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/bitmap',
      summary: "Switch the array's bitmap (mdadm --grow --bitmap): clustered, internal or none, removing one before making another; the array must be whole and in sync, and only this node may have it; it is assembled again with the new bitmap. 409 while exported or in use.",
      params: ARRAY_NAME, body: SwitchBitmap, responses: { 200: jsonAnswer('Switched.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params, body }) => c.json(await context.exclusive(() => arrays.switchBitmap(params.name, body))),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/resync-speed',
      summary: "Set this node's resync and recovery rate limit (md's sync_speed_max), or lift it with null; kept across restarts. Other nodes keep their own.",
      params: ARRAY_NAME, body: ResyncSpeed, responses: { 200: jsonAnswer('Set.', ArrayInfo) }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params, body }) => c.json(await context.exclusive(() => arrays.setResyncSpeed(params.name, body.maxBytesPerSecond))),
  );
  addRoute(
    app,
    {
      method: 'post', path: '/v1/arrays/{name}/stop',
      summary: 'Stop the array on this node (mdadm --stop): dirty bits stay for the next node or assembly; 409 while exported.',
      params: ARRAY_NAME, body: NoBody, bodyOptional: true, responses: { 204: { description: 'Stopped.' } }, errors: [400, 401, 404, 409, 413, 503],
    },
    async (c, { params }) => {
      await context.exclusive(() => arrays.stop(params.name));
      return c.body(null, 204);
    },
  );
}
