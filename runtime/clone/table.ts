/**
 * The dm-clone table line, parsed and validated once, at the boundary.
 *
 *   [<start sectors> <length sectors>] clone <metadata dev> <destination dev> <source dev> <region size>
 *       [<#feature args> [<feature arg>]* [<#core args> [<core arg>]*]]
 *
 * The optional leading pair is dmsetup's `0 <length>`: start must be 0 and the length, when given,
 * is the target size; without it the target size is the source's size. Devices are names inside
 * the data directory (resolved by the caller); the source may also be an http(s) URL.
 * Rules (dm-clone-target.c): region size a power of two in [8, 2097152] sectors; at most 2 feature
 * args from {no_hydration, no_discard_passdown}; at most 4 core args, an even count, keys
 * hydration_threshold and hydration_batch_size with unsigned integer values. Unknown words and
 * trailing garbage are refused. Every refusal is a TableError naming the field.
 *
 * Beyond the kernel: a table that gives neither hydration_threshold nor hydration_batch_size leaves
 * them to the clone, which chooses them as it goes (runtime/regions/region-pace.ts); both are then
 * undefined here. A table that gives one of them gets the kernel's default (1) for the other.
 */
export const SECTOR_BYTES = 512;
export const REGION_SECTORS_MIN = 8;
export const REGION_SECTORS_MAX = 2097152;
export const FEATURE_ARGS_MAX = 2;
export const CORE_ARGS_MAX = 4;
export const DEFAULT_HYDRATION_THRESHOLD = 1;
export const DEFAULT_HYDRATION_BATCH_SIZE = 1;
/** Thresholds and batch sizes are region counts; dm-clone takes an unsigned 32-bit value. */
export const REGION_COUNT_ARG_MAX = 0xffffffff;

export type CloneFeature = 'no_hydration' | 'no_discard_passdown';
const FEATURES: readonly CloneFeature[] = ['no_hydration', 'no_discard_passdown'];

/** Both given (one may be the kernel's default), or both left to the clone (undefined). */
export type HydrationCoreArgs = { hydrationThreshold: number; hydrationBatchSize: number } | { hydrationThreshold: undefined; hydrationBatchSize: undefined };

export type CloneTable = {
  /** Target size from the `0 <length>` prefix, or undefined to take the source's size. */
  targetSectors: number | undefined;
  metadataDevice: string;
  destinationDevice: string;
  sourceDevice: string;
  regionSectors: number;
  features: CloneFeature[];
} & HydrationCoreArgs;

export class TableError extends Error {
  override name = 'TableError';
  readonly code = 'EINVAL';
  constructor(readonly field: string, message: string) {
    super(`invalid clone table: ${field}: ${message}`);
  }
}

function unsignedInteger(field: string, word: string | undefined, max: number): number {
  if (word === undefined) throw new TableError(field, 'missing');
  if (!/^\d+$/.test(word)) throw new TableError(field, `"${word}" is not an unsigned integer`);
  const value = Number(word);
  if (!Number.isSafeInteger(value) || value > max) throw new TableError(field, `${word} is larger than ${max}`);
  return value;
}

function isPowerOfTwo(value: number): boolean {
  return value > 0 && (value & (value - 1)) === 0;
}

export function parseCloneTable(line: string): CloneTable {
  if (typeof line !== 'string') throw new TableError('table', 'must be a string');
  const words = line.trim().split(/\s+/).filter((word) => word !== '');
  let at = 0;
  let targetSectors: number | undefined;
  if (words[0] !== undefined && /^[-+]?\d+$/.test(words[0])) {
    const start = unsignedInteger('start', words[0], Number.MAX_SAFE_INTEGER);
    if (start !== 0) throw new TableError('start', 'a clone target must start at sector 0');
    targetSectors = unsignedInteger('length', words[1], Number.MAX_SAFE_INTEGER);
    if (targetSectors === 0) throw new TableError('length', 'must be greater than 0');
    at = 2;
  }
  if (words[at] !== 'clone') throw new TableError('target', `expected "clone", found "${words[at] ?? ''}"`);
  at++;
  const device = (field: string) => {
    const word = words[at++];
    if (word === undefined) throw new TableError(field, 'missing');
    return word;
  };
  const metadataDevice = device('metadata dev');
  const destinationDevice = device('destination dev');
  const sourceDevice = device('source dev');
  const regionSectors = unsignedInteger('region size', words[at++], Number.MAX_SAFE_INTEGER);
  if (!isPowerOfTwo(regionSectors)) throw new TableError('region size', `${regionSectors} is not a power of two`);
  if (regionSectors < REGION_SECTORS_MIN || regionSectors > REGION_SECTORS_MAX) {
    throw new TableError('region size', `${regionSectors} sectors is outside [${REGION_SECTORS_MIN}, ${REGION_SECTORS_MAX}]`);
  }

  const features: CloneFeature[] = [];
  let hydrationThreshold: number | undefined;
  let hydrationBatchSize: number | undefined;
  if (at < words.length) {
    const featureCount = unsignedInteger('#feature args', words[at++], FEATURE_ARGS_MAX);
    for (let i = 0; i < featureCount; i++) {
      const word = words[at++];
      if (word === undefined) throw new TableError('feature args', `expected ${featureCount}, found ${i}`);
      if (!FEATURES.includes(word as CloneFeature)) throw new TableError('feature args', `unknown feature "${word}"`);
      if (features.includes(word as CloneFeature)) throw new TableError('feature args', `"${word}" given twice`);
      features.push(word as CloneFeature);
    }
  }
  if (at < words.length) {
    const coreCount = unsignedInteger('#core args', words[at++], CORE_ARGS_MAX);
    if (coreCount % 2 !== 0) throw new TableError('#core args', `${coreCount} is odd: core args come in key/value pairs`);
    const seen = new Set<string>();
    for (let i = 0; i < coreCount; i += 2) {
      const key = words[at++];
      if (key === undefined) throw new TableError('core args', `expected ${coreCount}, found ${i}`);
      if (seen.has(key)) throw new TableError('core args', `"${key}" given twice`);
      seen.add(key);
      if (key === 'hydration_threshold') hydrationThreshold = unsignedInteger(key, words[at++], REGION_COUNT_ARG_MAX);
      else if (key === 'hydration_batch_size') hydrationBatchSize = unsignedInteger(key, words[at++], REGION_COUNT_ARG_MAX);
      else throw new TableError('core args', `unknown core argument "${key}"`);
    }
    if (hydrationBatchSize === 0) throw new TableError('hydration_batch_size', 'must be at least 1');
  }
  if (at < words.length) throw new TableError('table', `unexpected "${words.slice(at).join(' ')}" after the arguments`);
  const core: HydrationCoreArgs =
    hydrationThreshold === undefined && hydrationBatchSize === undefined
      ? { hydrationThreshold: undefined, hydrationBatchSize: undefined }
      : { hydrationThreshold: hydrationThreshold ?? DEFAULT_HYDRATION_THRESHOLD, hydrationBatchSize: hydrationBatchSize ?? DEFAULT_HYDRATION_BATCH_SIZE };
  return { targetSectors, metadataDevice, destinationDevice, sourceDevice, regionSectors, features, ...core };
}

/** The canonical table line (what status TABLE would print); parse(format(t)) equals t. */
export function formatCloneTable(table: CloneTable): string {
  const words: string[] = [];
  if (table.targetSectors !== undefined) words.push('0', String(table.targetSectors));
  words.push('clone', table.metadataDevice, table.destinationDevice, table.sourceDevice, String(table.regionSectors));
  const core = tableCoreArgs(table);
  if (table.features.length || core.length) words.push(String(table.features.length), ...table.features);
  if (core.length) words.push(String(core.length), ...core);
  return words.join(' ');
}

/**
 * Core args for a table line: none when both are left to the clone; else those that differ from
 * the defaults, and at least one (a table with neither would leave them to the clone). The status
 * line prints both, always.
 */
export function tableCoreArgs(table: HydrationCoreArgs): string[] {
  if (table.hydrationThreshold === undefined) return [];
  const args: string[] = [];
  if (table.hydrationThreshold !== DEFAULT_HYDRATION_THRESHOLD) args.push('hydration_threshold', String(table.hydrationThreshold));
  if (table.hydrationBatchSize !== DEFAULT_HYDRATION_BATCH_SIZE) args.push('hydration_batch_size', String(table.hydrationBatchSize));
  if (args.length === 0) args.push('hydration_threshold', String(table.hydrationThreshold));
  return args;
}
