/** Devices: files in the data directory. A name may hold "/" (a file in a subdirectory). */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import { checkDeviceSize, DEVICE_BYTES_MAX } from '../device-size.ts';
import type { DeviceInfo } from '../service.ts';
import { addRoute } from './route.ts';
import { byCheck, Count, DeviceName, jsonAnswer, nameParams } from './schemas.ts';

const Device = z
  .strictObject({ name: DeviceName, sizeBytes: Count, allocatedBytes: Count, inUse: z.boolean(), usedBy: z.array(z.string()) })
  .openapi('Device');

const NewDevice = z
  .strictObject({
    name: DeviceName,
    sizeBytes: z.number().int().superRefine(byCheck((value, field) => checkDeviceSize(value, field))).openapi({ minimum: 512, maximum: DEVICE_BYTES_MAX, multipleOf: 512 }),
  })
  .openapi('NewDevice');

/** The devices a host has: the data directory's files (the service), or an edge host's storage. */
export interface DeviceCatalog {
  listDevices(): DeviceInfo[] | Promise<DeviceInfo[]>;
  createDevice(name: string, sizeBytes: number): Promise<DeviceInfo>;
  deleteDevice(name: string): Promise<void>;
}

export function deviceRoutes(app: OpenAPIHono, service: DeviceCatalog): void {
  addRoute(
    app,
    { method: 'get', path: '/v1/devices', summary: 'Device files in the data directory.', responses: { 200: jsonAnswer('Devices.', z.strictObject({ devices: z.array(Device) })) }, errors: [401] },
    async (c) => c.json({ devices: await service.listDevices() }),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/devices', summary: 'Create a sparse device file.', body: NewDevice, responses: { 201: jsonAnswer('Created.', Device) }, errors: [400, 401, 409, 413, 503] },
    async (c, { body }) => c.json(await service.createDevice(body.name, body.sizeBytes), 201),
  );
  addRoute(
    app,
    {
      method: 'delete',
      path: '/v1/devices/{name}',
      honoPath: '/v1/devices/:name{.+}',
      summary: 'Delete a device file (409 while an engine or export uses it).',
      params: nameParams('device', DeviceName),
      responses: { 204: { description: 'Deleted.' } },
      errors: [400, 401, 404, 409, 503],
    },
    async (c, { params }) => {
      await service.deleteDevice(params.name);
      return c.body(null, 204);
    },
  );
}
