/** Devices: files in the data directory. A name may hold "/" (a file in a subdirectory). */
import { Hono } from 'hono';
import { checkDeviceSize } from '../device-files.ts';
import { checkDeviceFileName } from '../names.ts';
import type { Service } from '../service.ts';
import { readBody } from './body.ts';

export function deviceRoutes(service: Service): Hono {
  const app = new Hono();
  app.get('/', (c) => c.json({ devices: service.listDevices() }));
  app.post('/', async (c) => {
    const body = await readBody(c, { name: { type: 'string' }, sizeBytes: { type: 'integer' } });
    const name = checkDeviceFileName(body.name, 'name');
    const device = await service.createDevice(name, checkDeviceSize(body.sizeBytes, 'sizeBytes'));
    return c.json(device, 201);
  });
  app.delete('/:name{.+}', async (c) => {
    await service.deleteDevice(checkDeviceFileName(c.req.param('name'), 'name'));
    return c.body(null, 204);
  });
  return app;
}
