/**
 * Pre-shared keys for RTRS sessions, read from a file: its first line, trimmed, at least
 * KEY_CHARS_MIN characters (like the API token). The same file on both machines.
 */
import fs from 'node:fs';
import { ServiceError } from '../errors.ts';

export const KEY_CHARS_MIN = 16;

export function readKeyFile(path: string, field = 'keyFile'): Uint8Array {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    throw new ServiceError('EINVAL', `${field}: cannot read the key file ${path}: ${(error as Error).message}`, field);
  }
  const key = text.split('\n')[0]!.trim();
  if (key.length < KEY_CHARS_MIN) throw new ServiceError('EINVAL', `${field}: the key in ${path} must be at least ${KEY_CHARS_MIN} characters`, field);
  return new TextEncoder().encode(key);
}
