/**
 * Schemas every route group shares: the error body, names, device names, and the helpers that
 * turn a schema into an OpenAPI response. An engine's own schemas live in its folder
 * (server/clone/schemas.ts). Each schema is the validation and the documentation at once
 * (route.ts).
 */
import { z } from '@hono/zod-openapi';
import { checkDeviceFileName, checkObjectName } from '../names.ts';
import { ServiceError } from '../errors.ts';

export const ERROR_CODES = ['EINVAL', 'ERANGE', 'ENOTSUP', 'EACCES', 'ENOENT', 'EEXIST', 'EBUSY', 'EROFS', 'EBADF', 'E2BIG', 'EAGAIN', 'ENOTCONN', 'EIO', 'ESTALE', 'ENXIO', 'ENOSYS'] as const;

export const ErrorBody = z
  .strictObject({ error: z.string(), code: z.enum(ERROR_CODES), field: z.string().optional().openapi({ description: 'The field to fix, for bad input.' }) })
  .openapi('Error');

const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input; `field` names what to fix.',
  401: 'Missing or wrong bearer token.',
  404: 'No such name.',
  409: 'Conflict: the name exists, or the thing is in use.',
  412: 'A precondition failed: If-Match names a version that is not the current one (someone wrote since).',
  413: 'Body larger than the limit.',
  416: 'The range lies past the end of the device; Content-Range says its size.',
  500: 'The host failed (a disk, the state file); the message says what is in effect.',
  502: 'A remote side (an RTRS server) could not be reached, or refused.',
  501: 'This host cannot serve the route (no files or sockets here).',
  503: 'The service is stopping.',
};

export function errorResponses(statuses: readonly number[]) {
  return Object.fromEntries(statuses.map((status) => [String(status), { description: ERROR_TEXT[status] ?? 'Error.', content: { 'application/json': { schema: ErrorBody } } }]));
}

/** A JSON answer. */
export function jsonAnswer(description: string, schema: z.ZodType) {
  return { description, content: { 'application/json': { schema } } };
}

/** Clone, export and other object names: a letter or digit, then up to 63 of [A-Za-z0-9._-]. */
export const Name = z.string().superRefine(byCheck(checkObjectName)).openapi({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' });

export const DeviceName = z.string().superRefine(byCheck(checkDeviceFileName)).openapi({
  maxLength: 1024,
  description: 'A path inside the data directory: segments of [A-Za-z0-9._-], no "." or ".." segment, not under .blockcore/.',
});

export const Count = z.number().int().min(0);

/** The path parameter `name` of `what`. */
export function nameParams(what: string, schema: z.ZodString = Name) {
  return z.strictObject({ name: schema.openapi({ param: { name: 'name', in: 'path' }, description: `The ${what}'s name.` }) });
}

/** An action that takes no input: an empty body or `{}`. */
export const NoBody = z.strictObject({});

/** A zod refinement from one of the service's checks (`check(value, field)` throwing `invalid`): its message, without the field. */
export function byCheck<T>(check: (value: T, field: string) => unknown) {
  return (value: T, context: z.RefinementCtx<T>): void => {
    try {
      check(value, FIELD_MARK);
    } catch (error) {
      if (!(error instanceof ServiceError) || error.code !== 'EINVAL') throw error;
      context.addIssue({ code: 'custom', message: error.message.startsWith(`${FIELD_MARK}: `) ? error.message.slice(FIELD_MARK.length + 2) : error.message, input: value });
    }
  };
}

const FIELD_MARK = '\u0000field';
