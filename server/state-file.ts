/**
 * The service's state: what each engine holds and which exports exist, so they come back after a
 * restart. Devices need no entry: they are the files themselves.
 *
 * On disk: `<data dir>/.blockcore/state.json`, JSON, version 2:
 *   { "format": "blockcore-state", "version": 2,
 *     "engines": { "<kind>": [<record>, ...], ... },     each kind's records, checked by its engine
 *     "exports": [{ "name", "device", "readOnly", "description"? }] }
 * records in creation order; engines before the exports that may name their devices. Version 1
 * (`"clones": [...]` beside "exports") is still read, as `engines.clone`; the next write is version 2.
 * A kind this build has no engine for is refused (the service does not start) rather than dropped.
 *
 * Written atomically: the whole file goes to `state.json.tmp`, which is fsynced, then renamed over
 * `state.json`, then the directory is fsynced, so after a crash the file is the old state or the
 * new one, never a mix. Checked twice (STYLE 10): the same validator runs before every write and
 * after every read; a file that fails it stops the service with the reason rather than being
 * guessed at.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import type { EngineDefinition } from './engine.ts';
import { checkObjectName, parseDeviceRef, RESERVED_SEGMENT } from './names.ts';

export const STATE_FORMAT = 'blockcore-state';
export const STATE_VERSION = 2;
export const STATE_FILE_NAME = 'state.json';
export const DESCRIPTION_CHARS_MAX = 256;

export interface ExportRecord {
  name: string;
  device: string;
  readOnly: boolean;
  description?: string;
}

export interface ServiceState {
  /** Each engine kind's records, in creation order. */
  engines: Record<string, unknown[]>;
  exports: ExportRecord[];
}

export class StateFileError extends Error {
  override name = 'StateFileError';
}

export function stateDir(dataDir: string): string {
  return join(dataDir, RESERVED_SEGMENT);
}

export function readState(dataDir: string, engines: readonly EngineDefinition[]): ServiceState {
  const path = join(stateDir(dataDir), STATE_FILE_NAME);
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return { engines: {}, exports: [] };
    throw error;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new StateFileError(`${path} is not JSON: ${(error as Error).message}`);
  }
  if (isObject(value) && value.format === STATE_FORMAT && value.version === 1) value = fromVersion1(value);
  const problem = stateProblem(value, engines);
  if (problem) throw new StateFileError(`${path}: ${problem}`);
  const state = value as { engines: Record<string, unknown[]>; exports: ExportRecord[] };
  return { engines: state.engines, exports: state.exports };
}

export function writeState(dataDir: string, state: ServiceState, engines: readonly EngineDefinition[]): void {
  const file = { format: STATE_FORMAT, version: STATE_VERSION, engines: state.engines, exports: state.exports };
  const problem = stateProblem(file, engines);
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

/** A version 1 file as version 2: its clones become `engines.clone`; anything malformed is left for stateProblem to name. */
function fromVersion1(value: Record<string, unknown>): unknown {
  const { clones, exports, ...rest } = value;
  if (!Array.isArray(clones)) return { ...value, version: 'v1 without a clones array' };
  return { ...rest, version: STATE_VERSION, engines: { clone: clones }, exports };
}

/** Why `value` is not a valid state file (version 2) for these engines, or null. */
export function stateProblem(value: unknown, engines: readonly EngineDefinition[]): string | null {
  if (!isObject(value)) return 'not an object';
  if (value.format !== STATE_FORMAT) return `format is ${JSON.stringify(value.format)}, not "${STATE_FORMAT}"`;
  if (value.version !== STATE_VERSION) return `version ${JSON.stringify(value.version)} is not 1 or ${STATE_VERSION}`;
  if (!isObject(value.engines)) return 'engines must be an object of arrays';
  if (!Array.isArray(value.exports)) return 'exports must be an array';
  const kinds = engines.map((engine) => engine.kind);
  for (const [kind, records] of Object.entries(value.engines)) {
    const engine = engines.find((candidate) => candidate.kind === kind);
    if (!engine) return `engines.${kind.slice(0, 40)}: this blockcore has no "${kind.slice(0, 40)}" engine (it has ${kinds.join(', ')}); refusing to start rather than drop its records`;
    if (!Array.isArray(records)) return `engines.${kind} must be an array`;
    const names = new Set<string>();
    for (const [index, record] of records.entries()) {
      const where = `engines.${kind}[${index}]`;
      const problem = engine.recordProblem(record);
      if (problem) return `${where}${problem.startsWith('.') ? '' : ' '}${problem}`;
      const name = engine.recordName(record);
      if (names.has(name)) return `${where}: ${kind} "${name}" appears twice`;
      names.add(name);
    }
  }
  const names = new Set<string>();
  for (const [index, entry] of value.exports.entries()) {
    const where = `exports[${index}]`;
    if (!isObject(entry)) return `${where} is not an object`;
    const problem = fieldProblem(() => checkObjectName(entry.name, 'name')) ?? fieldProblem(() => parseDeviceRef(entry.device, 'device', kinds));
    if (problem) return `${where}.${problem}`;
    if (names.has(entry.name as string)) return `${where}: export "${entry.name}" appears twice`;
    names.add(entry.name as string);
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
