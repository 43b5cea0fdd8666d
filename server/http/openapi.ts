/**
 * The OpenAPI 3 document, written by hand next to the routes it describes and served at
 * /v1/openapi.json. test/api-openapi.test.ts checks that every route the app answers is here and
 * everything here is a route.
 */
import { DEVICE_BYTES_MAX } from '../device-files.ts';
import { DESCRIPTION_CHARS_MAX, TABLE_CHARS_MAX } from '../state-file.ts';
import { VERSION } from '../version.ts';
import { MAX_BODY_BYTES } from './body.ts';
import { MESSAGE_CHARS_MAX } from './clones.ts';

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Json) => ({ 'application/json': { schema } });
const object = (properties: Json, required = Object.keys(properties)) => ({ type: 'object', additionalProperties: false, required, properties });
const NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' };
const DEVICE_NAME = { type: 'string', maxLength: 1024, description: 'A path inside the data directory: segments of [A-Za-z0-9._-], no "." or ".." segment, not under .blockcore/.' };
const INTEGER = { type: 'integer', minimum: 0 };

const errors = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [String(status), { description: ERROR_TEXT[status], content: json(ref('Error')) }]));
const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input; `field` names what to fix.',
  401: 'Missing or wrong bearer token.',
  404: 'No such name.',
  409: 'Conflict: the name exists, or the thing is in use.',
  413: `Body larger than ${MAX_BODY_BYTES} bytes.`,
  503: 'The service is stopping.',
};
const ok = (description: string, schema?: Json, status = 200) => ({
  [String(status)]: schema ? { description, content: json(schema) } : { description },
});
const body = (schema: Json, required = true) => ({ required, content: json(schema) });
const nameParameter = (what: string, schema: Json = NAME) => [{ name: 'name', in: 'path', required: true, description: `The ${what}'s name.`, schema }];

const cloneAction = (summary: string, result: Json) => ({
  post: {
    summary,
    parameters: nameParameter('clone'),
    requestBody: body({ type: 'object', additionalProperties: false, properties: {} }, false),
    responses: { ...ok('Done.', result), ...errors(400, 401, 404, 409, 413, 503) },
  },
});

const CLONE_STATUS_FIELDS: Json = {
  metadataBlockSectors: INTEGER, metadataUsedBlocks: INTEGER, metadataTotalBlocks: INTEGER, regionSectors: INTEGER,
  hydratedRegions: INTEGER, totalRegions: INTEGER, hydratingRegions: INTEGER,
  features: { type: 'array', items: { type: 'string', enum: ['no_hydration', 'no_discard_passdown'] } },
  hydrationThreshold: INTEGER, hydrationBatchSize: INTEGER, mode: { type: 'string', enum: ['rw', 'ro', 'Fail'] },
  hydrationEnabled: { type: 'boolean' }, hydrationAdaptive: { type: 'boolean' }, hydrationComplete: { type: 'boolean' }, hydrationError: { type: ['string', 'null'] },
  bytesHydrated: INTEGER, totalBytes: INTEGER, rateBytesPerSecond: { type: 'number' }, etaSeconds: { type: ['number', 'null'] }, commits: INTEGER,
};

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'blockcore',
    version: VERSION,
    description:
      'Control API of a blockcore service: device files in its data directory, dm-clone style clones, and NBD exports. ' +
      'Every route but /v1/health needs `Authorization: Bearer <token>` when the service has a token. ' +
      `Errors are JSON {error, code, field?}. Request bodies are JSON objects of at most ${MAX_BODY_BYTES} bytes; unknown fields are refused.`,
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: object({ error: { type: 'string' }, code: { type: 'string', enum: ['EINVAL', 'ERANGE', 'ENOTSUP', 'EACCES', 'ENOENT', 'EEXIST', 'EBUSY', 'EROFS', 'EBADF', 'E2BIG', 'EAGAIN', 'EIO'] }, field: { type: 'string' } }, ['error', 'code']),
      Health: object({ status: { type: 'string', enum: ['ok'] }, version: { type: 'string' }, runtime: { type: 'string' } }),
      Device: object({ name: DEVICE_NAME, sizeBytes: INTEGER, allocatedBytes: INTEGER, inUse: { type: 'boolean' }, usedBy: { type: 'array', items: { type: 'string' } } }),
      NewDevice: object({ name: DEVICE_NAME, sizeBytes: { type: 'integer', minimum: 512, maximum: DEVICE_BYTES_MAX, multipleOf: 512 } }),
      Clone: object({
        name: NAME,
        table: { type: 'string', description: 'The effective dm-clone table line (messages included); the clone reopens from it after a restart.' },
        suspended: { type: 'boolean' },
        error: { type: ['string', 'null'], description: 'Why the clone could not be reopened after a restart.' },
        exports: { type: 'array', items: NAME },
        status: { type: ['string', 'null'], description: "dm-clone's status line; null when the clone is not open. The fields below are that line parsed, plus progress." },
        ...CLONE_STATUS_FIELDS,
      }, ['name', 'table', 'suspended', 'error', 'exports', 'status']),
      NewClone: object({
        name: NAME,
        table: { type: 'string', maxLength: TABLE_CHARS_MAX, description: '[0 <length>] clone <metadata dev> <destination dev> <source dev> <region size> [<#features> <feature>*] [<#core args> <key> <value>*]; devices are names in the data directory, the source may be an http(s) URL.' },
      }),
      Message: object({ message: { type: 'string', maxLength: MESSAGE_CHARS_MAX, description: 'disable_hydration, enable_hydration, hydration_threshold N or hydration_batch_size N.' } }),
      Finalized: object({ clone: NAME, device: DEVICE_NAME }),
      Export: object({
        name: NAME, device: { type: 'string' }, readOnly: { type: 'boolean' }, description: { type: 'string' },
        sizeBytes: { type: ['integer', 'null'] }, error: { type: ['string', 'null'] },
        clients: { type: 'array', items: object({ id: INTEGER, remote: { type: 'string' }, connectedAtMs: INTEGER }) },
        io: object({ reads: INTEGER, writes: INTEGER, flushes: INTEGER, discards: INTEGER, bytesRead: INTEGER, bytesWritten: INTEGER, errors: INTEGER }),
      }, ['name', 'device', 'readOnly', 'sizeBytes', 'error', 'clients', 'io']),
      NewExport: object({
        name: NAME,
        device: { type: 'string', description: 'A device name in the data directory, or <kind>:<name> for an engine device (clone:c1).' },
        readOnly: { type: 'boolean', default: false },
        description: { type: 'string', maxLength: DESCRIPTION_CHARS_MAX },
      }, ['name', 'device']),
      Event: {
        type: 'object',
        required: ['id', 'type', 'timeMs'],
        properties: {
          id: INTEGER,
          type: {
            type: 'string',
            description:
              'device.created, device.removed; clone.created, clone.removed, clone.finalized, clone.message, clone.suspended, clone.resumed; ' +
              'clone.commit (hydration progress: hydratedRegions, totalRegions, bytesHydrated, totalBytes), clone.mode (mode, previous, reason), ' +
              'clone.hydration-complete, clone.hydration-stopped (error), clone.hydration (enabled); export.added, export.removed, ' +
              'export.connect, export.disconnect (connectionId, remote); nbd.protocol-error.',
          },
          timeMs: INTEGER,
        },
        additionalProperties: true,
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/v1/health': { get: { summary: 'Liveness; needs no token.', security: [], responses: ok('Up.', ref('Health')) } },
    '/v1/openapi.json': { get: { summary: 'This document.', responses: { ...ok('OpenAPI 3 document.', { type: 'object' }), ...errors(401) } } },
    '/v1/devices': {
      get: { summary: 'Device files in the data directory.', responses: { ...ok('Devices.', object({ devices: { type: 'array', items: ref('Device') } })), ...errors(401) } },
      post: { summary: 'Create a sparse device file.', requestBody: body(ref('NewDevice')), responses: { ...ok('Created.', ref('Device'), 201), ...errors(400, 401, 409, 413, 503) } },
    },
    '/v1/devices/{name}': {
      delete: { summary: 'Delete a device file (409 while a clone or export uses it).', parameters: nameParameter('device', DEVICE_NAME), responses: { ...ok('Deleted.', undefined, 204), ...errors(400, 401, 404, 409, 503) } },
    },
    '/v1/clones': {
      get: { summary: 'Clones, with their status.', responses: { ...ok('Clones.', object({ clones: { type: 'array', items: ref('Clone') } })), ...errors(401) } },
      post: { summary: 'Open a clone from a dm-clone table line.', requestBody: body(ref('NewClone')), responses: { ...ok('Created.', ref('Clone'), 201), ...errors(400, 401, 409, 413, 503) } },
    },
    '/v1/clones/{name}': {
      get: { summary: 'One clone; its metadata is committed first if it changed.', parameters: nameParameter('clone'), responses: { ...ok('The clone.', ref('Clone')), ...errors(400, 401, 404) } },
      delete: { summary: 'Close the clone (its files stay); 409 while exported.', parameters: nameParameter('clone'), responses: { ...ok('Deleted.', undefined, 204), ...errors(400, 401, 404, 409, 503) } },
    },
    '/v1/clones/{name}/message': {
      post: {
        summary: "Send a dm-clone message.",
        parameters: nameParameter('clone'),
        requestBody: body(ref('Message')),
        responses: { ...ok('Done.', ref('Clone')), ...errors(400, 401, 404, 409, 413, 503) },
      },
    },
    '/v1/clones/{name}/suspend': cloneAction('Stop hydration, drain I/O and commit; new I/O waits until resume.', ref('Clone')),
    '/v1/clones/{name}/resume': cloneAction('Resume I/O and hydration.', ref('Clone')),
    '/v1/clones/{name}/finalize': cloneAction('Once hydrated: drop the clone, keeping its destination as a plain device (409 before, or while exported).', ref('Finalized')),
    '/v1/exports': {
      get: { summary: 'NBD exports, with connected clients and I/O counts.', responses: { ...ok('Exports.', object({ exports: { type: 'array', items: ref('Export') } })), ...errors(401) } },
      post: { summary: 'Export a device over NBD.', requestBody: body(ref('NewExport')), responses: { ...ok('Created.', ref('Export'), 201), ...errors(400, 401, 404, 409, 413, 503) } },
    },
    '/v1/exports/{name}': {
      delete: { summary: 'Stop exporting (409 while clients are connected).', parameters: nameParameter('export'), responses: { ...ok('Deleted.', undefined, 204), ...errors(400, 401, 404, 409, 503) } },
    },
    '/v1/events': {
      get: {
        summary: 'Server-Sent Events: one `event: <type>` / `data: <Event JSON>` per change, with `id:`.',
        parameters: [
          { name: 'since', in: 'query', required: false, description: 'Replay kept events after this id first (an id from an earlier run, or one not given yet, replays every kept event: ids keep rising across restarts).', schema: INTEGER },
          { name: 'Last-Event-ID', in: 'header', required: false, description: 'As `since`, set by EventSource on reconnect.', schema: { type: 'string' } },
        ],
        responses: { '200': { description: 'An event stream.', content: { 'text/event-stream': { schema: ref('Event') } } }, ...errors(400, 401) },
      },
    },
    '/metrics': {
      get: { summary: 'Prometheus text format.', responses: { '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } }, ...errors(401) } },
    },
  },
} as const;
