/**
 * A clone as the state file keeps it: `{ name, table, suspended }`, the table being the effective
 * dm-clone line it reopens from (messages included). Checked after every read and before every
 * write of the state file (state-file.ts asks each engine).
 */
import { checkObjectName } from '../names.ts';

export const TABLE_CHARS_MAX = 4096;

export interface CloneRecord {
  name: string;
  table: string;
  suspended: boolean;
}

/** Why `value` is not a clone record (`field what`), or null. */
export function cloneRecordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object';
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) if (!['name', 'table', 'suspended'].includes(key)) return `.${key.slice(0, 40)} is not a clone field`;
  try {
    checkObjectName(record.name, 'name');
  } catch (error) {
    return `.${(error as Error).message}`;
  }
  if (typeof record.table !== 'string' || record.table.length > TABLE_CHARS_MAX) return `.table must be a string of at most ${TABLE_CHARS_MAX} characters`;
  if (typeof record.suspended !== 'boolean') return '.suspended must be a boolean';
  return null;
}
