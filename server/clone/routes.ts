/** Clones over HTTP: create from a dm-clone table line, inspect, message, suspend/resume, finalize, delete. */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { EngineContext } from '../engine.ts';
import { addRoute } from '../http/route.ts';
import { jsonAnswer, nameParams, NoBody } from '../http/schemas.ts';
import type { CloneRegistry } from './registry.ts';
import { Clone, CloneList, Finalized, Message, NewClone } from './schemas.ts';

const CLONE_NAME = nameParams('clone');

export function cloneRoutes(app: OpenAPIHono, clones: CloneRegistry, context: EngineContext): void {
  addRoute(app, { method: 'get', path: '/v1/clones', summary: 'Clones, with their status.', responses: { 200: jsonAnswer('Clones.', CloneList) }, errors: [401] }, (c) =>
    c.json({ clones: clones.list() }),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/clones', summary: 'Open a clone from a dm-clone table line.', body: NewClone, responses: { 201: jsonAnswer('Created.', Clone) }, errors: [400, 401, 409, 413, 503] },
    async (c, { body }) => c.json(await context.exclusive(() => clones.create(body.name, body.table)), 201),
  );
  addRoute(
    app,
    { method: 'get', path: '/v1/clones/{name}', summary: 'One clone; its metadata is committed first if it changed.', params: CLONE_NAME, responses: { 200: jsonAnswer('The clone.', Clone) }, errors: [400, 401, 404] },
    async (c, { params }) => c.json(await clones.get(params.name)),
  );
  addRoute(
    app,
    { method: 'delete', path: '/v1/clones/{name}', summary: 'Close the clone (its files stay); 409 while exported.', params: CLONE_NAME, responses: { 204: { description: 'Deleted.' } }, errors: [400, 401, 404, 409, 503] },
    async (c, { params }) => {
      await context.exclusive(() => clones.delete(params.name));
      return c.body(null, 204);
    },
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/clones/{name}/message', summary: 'Send a dm-clone message.', params: CLONE_NAME, body: Message, responses: { 200: jsonAnswer('Done.', Clone) }, errors: [400, 401, 404, 409, 413, 500, 503] },
    async (c, { params, body }) => c.json(await context.exclusive(() => clones.message(params.name, body.message))),
  );
  const action = (path: string, summary: string, answer: typeof Clone | typeof Finalized, run: (name: string) => Promise<unknown>) =>
    addRoute(
      app,
      { method: 'post', path: `/v1/clones/{name}/${path}`, summary, params: CLONE_NAME, body: NoBody, bodyOptional: true, responses: { 200: jsonAnswer('Done.', answer) }, errors: [400, 401, 404, 409, 413, 500, 503] },
      async (c, { params }) => c.json((await context.exclusive(() => run(params.name))) as object),
    );
  action('suspend', 'Stop hydration, drain I/O and commit; new I/O waits until resume.', Clone, (name) => clones.suspend(name));
  action('resume', 'Resume I/O and hydration.', Clone, (name) => clones.resume(name));
  action(
    'finalize',
    'Once hydrated: drop the clone, keeping its destination as a plain device (409 before). An export of the clone goes on serving the destination alone, its clients connected throughout.',
    Finalized,
    (name) => clones.finalize(name),
  );
}
