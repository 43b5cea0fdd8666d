/** Exports: devices served over NBD under a name. */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import { ENGINE_KINDS } from '../engines.ts';
import { formatDeviceRef, parseDeviceRef } from '../names.ts';
import type { Service } from '../service.ts';
import { DESCRIPTION_CHARS_MAX } from '../state-file.ts';
import { addRoute } from './route.ts';
import { byCheck, Count, jsonAnswer, Name, nameParams } from './schemas.ts';

const DeviceRef = z.string().superRefine(byCheck((value, field) => parseDeviceRef(value, field, ENGINE_KINDS))).openapi({
  description: `A device name in the data directory, or <kind>:<name> for an engine device (${ENGINE_KINDS.map((kind) => `${kind}:<name>`).join(', ')}).`,
});

const NewExport = z
  .strictObject({
    name: Name,
    device: DeviceRef,
    readOnly: z.boolean().optional().openapi({ default: false }),
    description: z.string().max(DESCRIPTION_CHARS_MAX).optional(),
  })
  .openapi('NewExport');

const Export = z
  .strictObject({
    name: Name,
    device: z.string(),
    readOnly: z.boolean(),
    description: z.string().optional(),
    sizeBytes: Count.nullable(),
    error: z.string().nullable(),
    clients: z.array(z.strictObject({ id: Count, remote: z.string(), connectedAtMs: Count })),
    io: z.strictObject({ reads: Count, writes: Count, flushes: Count, discards: Count, bytesRead: Count, bytesWritten: Count, errors: Count }),
  })
  .openapi('Export');

export function exportRoutes(app: OpenAPIHono, service: Service): void {
  addRoute(
    app,
    { method: 'get', path: '/v1/exports', summary: 'NBD exports, with connected clients and I/O counts.', responses: { 200: jsonAnswer('Exports.', z.strictObject({ exports: z.array(Export) })) }, errors: [401] },
    (c) => c.json({ exports: service.listExports() }),
  );
  addRoute(
    app,
    { method: 'post', path: '/v1/exports', summary: 'Export a device over NBD.', body: NewExport, responses: { 201: jsonAnswer('Created.', Export) }, errors: [400, 401, 404, 409, 413, 503] },
    async (c, { body }) => {
      const record = {
        name: body.name,
        device: formatDeviceRef(parseDeviceRef(body.device, 'device', ENGINE_KINDS)),
        readOnly: body.readOnly ?? false,
        ...(body.description === undefined ? {} : { description: body.description }),
      };
      return c.json(await service.createExport(record), 201);
    },
  );
  addRoute(
    app,
    { method: 'delete', path: '/v1/exports/{name}', summary: 'Stop exporting (409 while clients are connected).', params: nameParams('export'), responses: { 204: { description: 'Deleted.' } }, errors: [400, 401, 404, 409, 503] },
    async (c, { params }) => {
      await service.deleteExport(params.name);
      return c.body(null, 204);
    },
  );
}
