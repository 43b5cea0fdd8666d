/** Clones: create from a dm-clone table line, inspect, message, suspend/resume, finalize, delete. */
import { Hono, type Context } from 'hono';
import { checkObjectName } from '../names.ts';
import type { Service } from '../service.ts';
import { TABLE_CHARS_MAX } from '../state-file.ts';
import { readBody } from './body.ts';

export const MESSAGE_CHARS_MAX = 256;

export function cloneRoutes(service: Service): Hono {
  const app = new Hono();
  const name = (c: Context) => checkObjectName(c.req.param('name'), 'name');
  const noBody = (c: Context) => readBody(c, {}, true);

  app.get('/', (c) => c.json({ clones: service.listClones() }));
  app.post('/', async (c) => {
    const body = await readBody(c, { name: { type: 'string' }, table: { type: 'string', maxChars: TABLE_CHARS_MAX } });
    return c.json(await service.createClone(checkObjectName(body.name, 'name'), body.table), 201);
  });
  app.get('/:name', async (c) => c.json(await service.getClone(name(c))));
  app.delete('/:name', async (c) => {
    await service.deleteClone(name(c));
    return c.body(null, 204);
  });
  app.post('/:name/message', async (c) => {
    const target = name(c);
    const body = await readBody(c, { message: { type: 'string', maxChars: MESSAGE_CHARS_MAX } });
    return c.json(await service.messageClone(target, body.message));
  });
  app.post('/:name/suspend', async (c) => {
    const target = name(c);
    await noBody(c);
    return c.json(await service.suspendClone(target));
  });
  app.post('/:name/resume', async (c) => {
    const target = name(c);
    await noBody(c);
    return c.json(await service.resumeClone(target));
  });
  app.post('/:name/finalize', async (c) => {
    const target = name(c);
    await noBody(c);
    return c.json(await service.finalizeClone(target));
  });
  return app;
}
