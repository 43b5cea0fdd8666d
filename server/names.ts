/**
 * The names the service accepts, checked once at the boundary.
 *   clone and export names   a letter or digit, then up to 63 of [A-Za-z0-9._-]
 *   device names             paths inside the data directory (runtime/data-dir.ts rules), except
 *                            under `.blockcore/`, which holds the service's own files
 *   device references        a device name, or `<kind>:<name>` for a device an engine provides
 *                            (`clone:c1`); ":" never appears in a device name, so both read apart
 */
import { checkDeviceName } from '../runtime/device-name.ts';
import { BlockError } from '../runtime/errors.ts';
import { invalid } from './errors.ts';

export const OBJECT_NAME_CHARS_MAX = 64;
const OBJECT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** The first path segment reserved for the service's own files in the data directory. */
export const RESERVED_SEGMENT = '.blockcore';
/** `kind` is 'file' for a device file, else the engine kind (`clone`). */
export interface DeviceRef {
  kind: string;
  name: string;
}

export function checkObjectName(value: unknown, field: string): string {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  if (!OBJECT_NAME.test(value)) {
    throw invalid(field, `"${value.slice(0, 80)}" must be 1 to ${OBJECT_NAME_CHARS_MAX} of A-Z a-z 0-9 . _ -, starting with a letter or digit`);
  }
  return value;
}

export function checkDeviceFileName(value: unknown, field: string): string {
  try {
    checkDeviceName(value, field);
  } catch (error) {
    throw asInvalid(error, field);
  }
  const name = value as string;
  if (name.split('/')[0] === RESERVED_SEGMENT) throw invalid(field, `"${name}" is inside ${RESERVED_SEGMENT}/, which is reserved for the service`);
  return name;
}

/**
 * A data-dir refusal (`BlockError` "EINVAL: <field> <what>") as a 400 naming `field`, without the
 * field repeated in the message; anything else is returned as it is, for the caller to rethrow.
 */
export function asInvalid(error: unknown, field: string): unknown {
  if (!(error instanceof BlockError)) return error;
  const prefix = `${error.code}: ${field} `;
  return invalid(field, error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message.replace(/^[A-Z]+: /, ''));
}

/** A device reference; `kinds` are the engine kinds there are (engines.ts ENGINE_KINDS). */
export function parseDeviceRef(value: unknown, field: string, kinds: readonly string[]): DeviceRef {
  if (typeof value !== 'string') throw invalid(field, 'must be a string');
  const colon = value.indexOf(':');
  if (colon < 0) return { kind: 'file', name: checkDeviceFileName(value, field) };
  const kind = value.slice(0, colon);
  if (!kinds.includes(kind)) {
    throw invalid(field, `unknown device kind "${kind.slice(0, 40)}" (expected a device name or ${kinds.map((k) => `${k}:<name>`).join(', ')})`);
  }
  return { kind, name: checkObjectName(value.slice(colon + 1), field) };
}

export function formatDeviceRef(ref: DeviceRef): string {
  return ref.kind === 'file' ? ref.name : `${ref.kind}:${ref.name}`;
}
