/**
 * Errors as the API answers them: JSON `{ error, code, field? }` with the HTTP status the code
 * maps to. Bad input is 400 and names the field, unknown names 404, conflicts 409, oversized bodies
 * 413, missing credentials 401, a failed If-Match 412, a range past the end 416, a route this host
 * cannot serve 501. Anything unexpected is logged and answered 500 without details:
 * only the host's own failures may end there, never something a client sent (test/api-fuzz).
 */
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { BlockError } from '../../runtime/errors.ts';
import { ServiceError } from '../errors.ts';

const STATUS_BY_CODE: Record<string, ContentfulStatusCode> = {
  EINVAL: 400,
  ERANGE: 400,
  ENOTSUP: 400,
  EACCES: 401,
  ENOENT: 404,
  EEXIST: 409,
  EBUSY: 409,
  EROFS: 409,
  EBADF: 409,
  E2BIG: 413,
  ESTALE: 412,
  ENXIO: 416,
  ENOSYS: 501,
  EAGAIN: 503,
  ENOTCONN: 502,
  EIO: 500,
};

export interface ErrorBody {
  error: string;
  code: string;
  field?: string;
}

export function errorJson(c: Context, code: string, message: string, field?: string): Response {
  const body: ErrorBody = field === undefined ? { error: message, code } : { error: message, code, field };
  return c.json(body, STATUS_BY_CODE[code] ?? 500);
}

/** The app's onError: every thrown error becomes one JSON answer. */
export function answerError(error: unknown, c: Context): Response {
  if (error instanceof ServiceError) return errorJson(c, error.code, error.message, error.field);
  if (error instanceof BlockError) return errorJson(c, error.code, error.message);
  if (error instanceof HTTPException) return errorJson(c, error.status === 413 ? 'E2BIG' : error.status === 401 ? 'EACCES' : 'EINVAL', error.message || 'bad request');
  console.error(`${c.req.method} ${c.req.path}:`, error);
  return errorJson(c, 'EIO', 'internal error (logged by the server)');
}
