/**
 * Request bodies, validated once at the boundary: JSON objects whose fields have the declared type,
 * no field missing, no field unknown. Every refusal is a 400 naming the field. Bodies are capped at
 * MAX_BODY_BYTES here as well as in the listener (node-listen.ts), so the app holds the limit
 * however it is served.
 */
import type { Context } from 'hono';
import { invalid, ServiceError } from '../errors.ts';

export const MAX_BODY_BYTES = 64 * 1024;

type FieldType = 'string' | 'integer' | 'boolean';
export interface FieldSpec {
  type: FieldType;
  optional?: boolean;
  /** For strings: the longest accepted. */
  maxChars?: number;
}
type Spec = Record<string, FieldSpec>;
type ValueOf<F extends FieldSpec> = F['type'] extends 'string' ? string : F['type'] extends 'integer' ? number : boolean;
export type BodyOf<S extends Spec> = { [K in keyof S as S[K]['optional'] extends true ? never : K]: ValueOf<S[K]> } & {
  [K in keyof S as S[K]['optional'] extends true ? K : never]?: ValueOf<S[K]>;
};

/** Reads and checks the body; with `emptyAllowed`, an empty body reads as `{}`. */
export async function readBody<S extends Spec>(c: Context, spec: S, emptyAllowed = false): Promise<BodyOf<S>> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  if (bytes.length > MAX_BODY_BYTES) throw new ServiceError('E2BIG', `request body larger than ${MAX_BODY_BYTES} bytes`);
  if (bytes.length === 0 && emptyAllowed) return checkFields({}, spec);
  let text: string;
  let value: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    value = JSON.parse(text);
  } catch {
    throw invalid('body', 'must be a JSON object (the body is not valid UTF-8 JSON)');
  }
  return checkFields(value, spec);
}

export function checkFields<S extends Spec>(value: unknown, spec: S): BodyOf<S> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('body', 'must be a JSON object');
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!Object.hasOwn(spec, key)) {
      const known = Object.keys(spec);
      throw invalid(key.slice(0, 64), `unknown field (expected ${known.length ? known.join(', ') : 'no fields'})`);
    }
  }
  for (const [key, field] of Object.entries(spec)) {
    const item = record[key];
    if (item === undefined) {
      if (field.optional) continue;
      throw invalid(key, 'is required');
    }
    if (field.type === 'integer') {
      if (typeof item !== 'number' || !Number.isSafeInteger(item)) throw invalid(key, 'must be an integer');
    } else if (typeof item !== field.type) {
      throw invalid(key, `must be a ${field.type}`);
    }
    if (field.type === 'string' && field.maxChars !== undefined && (item as string).length > field.maxChars) {
      throw invalid(key, `must be at most ${field.maxChars} characters`);
    }
  }
  return record as BodyOf<S>;
}
