/**
 * An array as the state file keeps it: `{ name, legs, lock?, resyncMaxBytesPerSecond? }`, the
 * device files of its legs in the data directory, the lock manager its nodes coordinate through
 * ("etcd"; absent: in-process) and this node's resync rate limit (absent: none); a restart assembles it again from them (its superblocks say the rest). Checked after every read
 * and before every write of the state file.
 */
import { checkDeviceFileName, checkObjectName } from '../names.ts';

export const LEGS_MAX = 64;

export interface ArrayRecord {
  name: string;
  legs: string[];
  lock?: 'etcd';
  resyncMaxBytesPerSecond?: number;
}

/** Why `value` is not an array record (`field what`), or null. */
export function arrayRecordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object';
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) if (!['name', 'legs', 'lock', 'resyncMaxBytesPerSecond'].includes(key)) return `.${key.slice(0, 40)} is not an array field`;
  if (record.lock !== undefined && record.lock !== 'etcd') return '.lock must be "etcd" when present';
  const rate = record.resyncMaxBytesPerSecond;
  if (rate !== undefined && !(Number.isSafeInteger(rate) && (rate as number) > 0)) return '.resyncMaxBytesPerSecond must be a positive whole number when present';
  try {
    checkObjectName(record.name, 'name');
    if (!Array.isArray(record.legs) || record.legs.length === 0 || record.legs.length > LEGS_MAX) return `.legs must list 1 to ${LEGS_MAX} devices`;
    record.legs.forEach((leg, i) => checkDeviceFileName(leg, `legs[${i}]`));
  } catch (error) {
    return `.${(error as Error).message}`;
  }
  return null;
}
