/**
 * The transport engine's state-file records (`engines.remote`), in creation order, two kinds:
 *   { type: 'session', name, paths: [{ dst: 'HOST:PORT', src? }], policy, keyFile, digest, alwaysInvalidate }
 *   { type: 'device', name, session, device, access }    a remote device mapped as `remote:<name>`
 * A device's session comes before it. Checked after every read and before every write of the
 * state file (state-file.ts asks each engine).
 */
import { isIP } from 'node:net';
import { parseHostPort } from '../../runtime/transport/rtrs-address.ts';
import { MAX_PATHS } from '../../runtime/transport/rtrs-messages.ts';
import { POLICIES, type Policy } from '../../runtime/transport/rtrs-policy.ts';
import { checkDeviceFileName, checkObjectName } from '../names.ts';

export const ACCESS_MODES = ['ro', 'rw', 'migration'] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];
/** Remote device names: RNBD's dev_name (NAME_MAX), printable, no '..' (the server checks it again). */
export const REMOTE_NAME_CHARS_MAX = 254;

export interface PathRecord {
  dst: string;
  src?: string;
}

export interface SessionRecord {
  type: 'session';
  name: string;
  paths: PathRecord[];
  policy: Policy;
  /** A file in the data directory holding the pre-shared key, or null. */
  keyFile: string | null;
  digest: boolean;
  alwaysInvalidate: boolean;
}

export interface DeviceRecord {
  type: 'device';
  name: string;
  session: string;
  /** The name the server knows the device by (a file in its data directory, `clone:c1` ...). */
  device: string;
  access: AccessMode;
}

export type TransportRecord = SessionRecord | DeviceRecord;

const SESSION_FIELDS = ['type', 'name', 'paths', 'policy', 'keyFile', 'digest', 'alwaysInvalidate'];
const DEVICE_FIELDS = ['type', 'name', 'session', 'device', 'access'];

/** Why a remote device name cannot be used (one line), or null. */
export function remoteNameProblem(value: unknown): string | null {
  if (typeof value !== 'string' || value.length === 0 || value.length > REMOTE_NAME_CHARS_MAX) return `must be 1 to ${REMOTE_NAME_CHARS_MAX} characters`;
  if (!/^[\x21-\x7e]+$/.test(value)) return 'must be printable ASCII without spaces';
  if (value.startsWith('/') || value.split('/').includes('..')) return 'must not be absolute or contain ..';
  return null;
}

/** Why `value` is not a transport record (`.field what`), or null. */
export function transportRecordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object';
  const record = value as Record<string, unknown>;
  const fields = record.type === 'session' ? SESSION_FIELDS : record.type === 'device' ? DEVICE_FIELDS : null;
  if (fields === null) return '.type must be "session" or "device"';
  for (const key of Object.keys(record)) if (!fields.includes(key)) return `.${key.slice(0, 40)} is not a ${record.type} field`;
  try {
    checkObjectName(record.name, 'name');
  } catch (error) {
    return `.${(error as Error).message}`;
  }
  if (record.type === 'device') {
    try {
      checkObjectName(record.session, 'session');
    } catch (error) {
      return `.${(error as Error).message}`;
    }
    const problem = remoteNameProblem(record.device);
    if (problem !== null) return `.device ${problem}`;
    if (!ACCESS_MODES.includes(record.access as AccessMode)) return `.access must be one of ${ACCESS_MODES.join(', ')}`;
    return null;
  }
  if (!Array.isArray(record.paths) || record.paths.length === 0 || record.paths.length > MAX_PATHS) return `.paths must hold 1 to ${MAX_PATHS} paths`;
  for (const [i, path] of (record.paths as unknown[]).entries()) {
    const problem = pathProblem(path);
    if (problem !== null) return `.paths[${i}]${problem}`;
  }
  if (!POLICIES.includes(record.policy as Policy)) return `.policy must be one of ${POLICIES.join(', ')}`;
  if (record.keyFile !== null) {
    try {
      checkDeviceFileName(record.keyFile, 'keyFile');
    } catch (error) {
      return `.${(error as Error).message}`;
    }
  }
  if (typeof record.digest !== 'boolean') return '.digest must be a boolean';
  if (typeof record.alwaysInvalidate !== 'boolean') return '.alwaysInvalidate must be a boolean';
  return null;
}

function pathProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return ' is not an object';
  const path = value as Record<string, unknown>;
  for (const key of Object.keys(path)) if (key !== 'dst' && key !== 'src') return `.${key.slice(0, 40)} is not a path field`;
  if (typeof path.dst !== 'string') return '.dst must be HOST:PORT';
  try {
    parseHostPort(path.dst, 'dst');
  } catch (error) {
    return `.${(error as Error).message.replace(/^EINVAL: /, '')}`;
  }
  if (path.src !== undefined && (typeof path.src !== 'string' || isIP(path.src) === 0)) return '.src must be an IP address';
  return null;
}
