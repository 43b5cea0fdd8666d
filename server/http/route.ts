/**
 * One definition per route: its path, summary, the zod schemas of its path parameters, query and
 * body, and its responses. `addRoute` registers that definition in the OpenAPI document (generated
 * from it, app.ts) and serves the route with the same schemas validating the request, so the
 * document and the validation cannot drift.
 *
 * Validation is ours rather than @hono/zod-openapi's built-in validators, for three reasons: a
 * body is read whatever its content type (curl -d sends form encoding; the API takes JSON only
 * and says so), capped at MAX_BODY_BYTES, and every refusal is our JSON `{error, code, field}`
 * naming the field (`name: is required`, `sizeBytes: must be an integer`, `x: unknown field`),
 * never a 415 or a zod dump. Object schemas are strict: unknown fields are refused.
 */
import type { OpenAPIHono, RouteConfig } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { z } from 'zod';
import { invalid, ServiceError } from '../errors.ts';
import { errorResponses } from './schemas.ts';

export const MAX_BODY_BYTES = 64 * 1024;
/** Largest PUT of the data plane (server/http/data.ts): larger writes go as several PUTs. */
export const DATA_PUT_BYTES_MAX = 64 * 1024 * 1024;

/** The data plane's PUTs: bytes, read by their handler as a stream. */
export function isDataPut(method: string, path: string): boolean {
  return method === 'PUT' && path.startsWith('/v1/devices/') && path.endsWith('/data');
}

/** The body a request may carry: the data plane's PUTs bytes, everything else JSON. */
export function bodyLimitBytes(method: string, path: string): number {
  return isDataPut(method, path) ? DATA_PUT_BYTES_MAX : MAX_BODY_BYTES;
}

/** 'head' is for documentRoute only: Hono answers HEAD with the GET route of the path, body dropped. */
type Method = 'get' | 'head' | 'post' | 'put' | 'delete';
type Schema = z.ZodObject | undefined;
type Infer<S extends Schema> = S extends z.ZodObject ? z.infer<S> : Record<string, never>;

export interface RouteSpec<P extends Schema, Q extends Schema, B extends Schema> {
  method: Method;
  /** OpenAPI form: `/v1/clones/{name}`. */
  path: string;
  /** Hono form when it is not derived from `path` (a name holding "/": `/v1/devices/:name{.+}`). */
  honoPath?: string;
  summary: string;
  params?: P;
  query?: Q;
  /** Headers the route reads, for the document only (the handler reads and checks them). */
  headers?: z.ZodObject;
  body?: B;
  /** An empty body reads as `{}` (actions that take no input but accept `{}`). */
  bodyOptional?: boolean;
  /** A body of raw bytes the handler reads itself (the data plane's PUT), for the document only. */
  rawBody?: { description: string };
  /** The answers it gives besides errors: status -> description and schema. */
  responses: RouteConfig['responses'];
  /** The error statuses it may answer (each documented with the Error schema). */
  errors: readonly number[];
  /** True for the one route that needs no token. */
  unauthenticated?: boolean;
}

export interface RouteInput<P extends Schema, Q extends Schema, B extends Schema> {
  params: Infer<P>;
  query: Infer<Q>;
  body: Infer<B>;
}

/** Puts `spec` in the OpenAPI document without serving it (HEAD: Hono serves it with the path's GET). */
export function documentRoute(app: OpenAPIHono, spec: RouteSpec<Schema, Schema, Schema>): void {
  app.openAPIRegistry.registerPath({
    method: spec.method,
    path: spec.path,
    summary: spec.summary,
    ...(spec.unauthenticated ? { security: [] } : {}),
    request: {
      ...(spec.params ? { params: spec.params } : {}),
      ...(spec.query ? { query: spec.query } : {}),
      ...(spec.headers ? { headers: spec.headers } : {}),
      ...(spec.body ? { body: { required: !spec.bodyOptional, content: { 'application/json': { schema: spec.body } } } } : {}),
      ...(spec.rawBody ? { body: { required: true, description: spec.rawBody.description, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } } : {}),
    },
    responses: { ...spec.responses, ...errorResponses(spec.errors) },
  });
}

export function addRoute<P extends Schema = undefined, Q extends Schema = undefined, B extends Schema = undefined>(
  app: OpenAPIHono,
  spec: RouteSpec<P, Q, B>,
  handler: (c: Context, input: RouteInput<P, Q, B>) => Response | Promise<Response>,
): void {
  documentRoute(app, spec);
  const honoPath = spec.honoPath ?? spec.path.replace(/\{(\w+)\}/g, ':$1');
  app.on(spec.method.toUpperCase(), honoPath, async (c) => {
    // Path first, so a bad name is named even when the body is bad too.
    const params = spec.params ? checked(spec.params, c.req.param()) : {};
    const query = spec.query ? checked(spec.query, c.req.query()) : {};
    const body = spec.body ? checked(spec.body, await readJson(c, spec.bodyOptional === true)) : {};
    return handler(c, { params, query, body } as RouteInput<P, Q, B>);
  });
}

/** Reads the body as JSON (any content type); with `emptyAllowed`, an empty body reads as `{}`. */
export async function readJson(c: Context, emptyAllowed: boolean): Promise<unknown> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  if (bytes.length > MAX_BODY_BYTES) throw new ServiceError('E2BIG', `request body larger than ${MAX_BODY_BYTES} bytes`);
  if (bytes.length === 0 && emptyAllowed) return {};
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw invalid('body', 'must be a JSON object (the body is not valid UTF-8 JSON)');
  }
}

/** `value` checked against `schema`; the first problem becomes a 400 naming its field. */
export function checked<S extends z.ZodObject>(schema: S, value: unknown): z.infer<S> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('body', 'must be a JSON object');
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const known = Object.keys(schema.shape);
    throw invalid(String(issue.keys[0]).slice(0, 64), `unknown field (expected ${known.length ? known.join(', ') : 'no fields'})`);
  }
  const field = issue.path.length > 0 ? issue.path.map(String).join('.') : 'body';
  throw invalid(field, describe(issue));
}

function describe(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `must be ${TYPE_WORDS[issue.expected] ?? `a ${issue.expected}`}`;
    case 'too_big':
      return issue.origin === 'string' ? `must be at most ${issue.maximum} characters` : `must be at most ${issue.maximum}`;
    case 'too_small':
      return issue.origin === 'string' ? `must be at least ${issue.minimum} characters` : `must be at least ${issue.minimum}`;
    default:
      return issue.message;
  }
}

const TYPE_WORDS: Record<string, string> = { int: 'an integer', number: 'a number', string: 'a string', boolean: 'a boolean', object: 'an object', array: 'an array' };
