/** Exports: devices served over NBD under a name. */
import { Hono } from 'hono';
import { checkObjectName, formatDeviceRef, parseDeviceRef } from '../names.ts';
import type { Service } from '../service.ts';
import { DESCRIPTION_CHARS_MAX } from '../state-file.ts';
import { readBody } from './body.ts';

export function exportRoutes(service: Service): Hono {
  const app = new Hono();
  app.get('/', (c) => c.json({ exports: service.listExports() }));
  app.post('/', async (c) => {
    const body = await readBody(c, {
      name: { type: 'string' },
      device: { type: 'string' },
      readOnly: { type: 'boolean', optional: true },
      description: { type: 'string', optional: true, maxChars: DESCRIPTION_CHARS_MAX },
    });
    const record = {
      name: checkObjectName(body.name, 'name'),
      device: formatDeviceRef(parseDeviceRef(body.device, 'device')),
      readOnly: body.readOnly ?? false,
      ...(body.description === undefined ? {} : { description: body.description }),
    };
    return c.json(await service.createExport(record), 201);
  });
  app.delete('/:name', async (c) => {
    await service.deleteExport(checkObjectName(c.req.param('name'), 'name'));
    return c.body(null, 204);
  });
  return app;
}
