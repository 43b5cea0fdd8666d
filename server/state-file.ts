/**
 * The service's state: which clones and exports exist, so they come back after a restart. Devices
 * need no entry: they are the files themselves.
 *
 * On disk: `<data dir>/.blockcore/state.json`, JSON
 *   { "format": "blockcore-state", "version": 1,
 *     "clones":  [{ "name", "table", "suspended" }],     table: the dm-clone line it reopens from
 *     "exports": [{ "name", "device", "readOnly", "description"? }] }
 * in creation order (clones before the exports that may name them).
 *
 * Written atomically: the whole file goes to `state.json.tmp`, which is fsynced, then renamed over
 * `state.json`, then the directory is fsynced, so after a crash the file is the old state or the
 * new one, never a mix. Checked twice (STYLE 10): the same validator runs before every write and
 * after every read; a file that fails it stops the service with the reason rather than being
 * guessed at.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { checkObjectName, parseDeviceRef, RESERVED_SEGMENT } from './names.ts';

export const STATE_FORMAT = 'blockcore-state';
export const STATE_VERSION = 1;
export const STATE_FILE_NAME = 'state.json';
export const TABLE_CHARS_MAX = 4096;
export const DESCRIPTION_CHARS_MAX = 256;

export interface CloneRecord {
  name: string;
  table: string;
  suspended: boolean;
}

export interface ExportRecord {
  name: string;
  device: string;
  readOnly: boolean;
  description?: string;
}

export interface ServiceState {
  clones: CloneRecord[];
  exports: ExportRecord[];
}

export class StateFileError extends Error {
  override name = 'StateFileError';
}

export function stateDir(dataDir: string): string {
  return join(dataDir, RESERVED_SEGMENT);
}

export function readState(dataDir: string): ServiceState {
  const path = join(stateDir(dataDir), STATE_FILE_NAME);
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return { clones: [], exports: [] };
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new StateFileError(`${path} is not JSON: ${(error as Error).message}`);
  }
  const problem = stateProblem(value);
  if (problem) throw new StateFileError(`${path}: ${problem}`);
  const { clones, exports } = value as ServiceState;
  return { clones, exports };
}

export function writeState(dataDir: string, state: ServiceState): void {
  const file = { format: STATE_FORMAT, version: STATE_VERSION, clones: state.clones, exports: state.exports };
  const problem = stateProblem(file);
  if (problem) throw new StateFileError(`refusing to write an invalid state: ${problem}`);
  const dir = stateDir(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  const path = join(dir, STATE_FILE_NAME);
  const temporary = `${path}.tmp`;
  const fd = fs.openSync(temporary, 'w');
  try {
    fs.writeFileSync(fd, `${JSON.stringify(file, null, 2)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, path);
  const dirFd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}

/** Why `value` is not a valid state file, or null. */
export function stateProblem(value: unknown): string | null {
  if (!isObject(value)) return 'not an object';
  if (value.format !== STATE_FORMAT) return `format is ${JSON.stringify(value.format)}, not "${STATE_FORMAT}"`;
  if (value.version !== STATE_VERSION) return `version ${JSON.stringify(value.version)} is not ${STATE_VERSION}`;
  if (!Array.isArray(value.clones) || !Array.isArray(value.exports)) return 'clones and exports must be arrays';
  const names = new Set<string>();
  for (const [index, clone] of value.clones.entries()) {
    const where = `clones[${index}]`;
    if (!isObject(clone)) return `${where} is not an object`;
    const problem = fieldProblem(() => checkObjectName(clone.name, 'name'));
    if (problem) return `${where}.${problem}`;
    if (names.has(`c${clone.name}`)) return `${where}: clone "${clone.name}" appears twice`;
    names.add(`c${clone.name}`);
    if (typeof clone.table !== 'string' || clone.table.length > TABLE_CHARS_MAX) return `${where}.table must be a string of at most ${TABLE_CHARS_MAX} characters`;
    if (typeof clone.suspended !== 'boolean') return `${where}.suspended must be a boolean`;
  }
  for (const [index, entry] of value.exports.entries()) {
    const where = `exports[${index}]`;
    if (!isObject(entry)) return `${where} is not an object`;
    const problem = fieldProblem(() => checkObjectName(entry.name, 'name')) ?? fieldProblem(() => parseDeviceRef(entry.device, 'device'));
    if (problem) return `${where}.${problem}`;
    if (names.has(`e${entry.name}`)) return `${where}: export "${entry.name}" appears twice`;
    names.add(`e${entry.name}`);
    if (typeof entry.readOnly !== 'boolean') return `${where}.readOnly must be a boolean`;
    if (entry.description !== undefined && (typeof entry.description !== 'string' || entry.description.length > DESCRIPTION_CHARS_MAX)) {
      return `${where}.description must be a string of at most ${DESCRIPTION_CHARS_MAX} characters`;
    }
  }
  return null;
}

function fieldProblem(check: () => unknown): string | null {
  try {
    check();
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
