/**
 * A mirror as the state file keeps it: `{ name, table, legFaultPolicy?, spares? }`, the table line
 * as loaded now (legs removed or added since, in dm's words), its legs and log device files of
 * the data directory. A restart opens it again from the table: a disk log brings its dirty
 * regions back (only those resync), a core log resyncs everything.
 */
import { parseMirrorTable } from '../../runtime/mirror/mirror-table.ts';
import { checkDeviceFileName, checkObjectName } from '../names.ts';

export const SPARES_MAX = 8;

export interface MirrorRecord {
  name: string;
  table: string;
  legFaultPolicy?: 'remove' | 'replace';
  spares?: string[];
}

/** Why `value` is not a mirror record (`field what`), or null. */
export function mirrorRecordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object';
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) if (!['name', 'table', 'legFaultPolicy', 'spares'].includes(key)) return `.${key.slice(0, 40)} is not a mirror field`;
  try {
    checkObjectName(record.name, 'name');
    if (typeof record.table !== 'string' || record.table.length > 4096) return '.table must be a mirror table line';
    const table = parseMirrorTable(record.table);
    if (typeof table === 'string') return `.table: ${table}`;
    if (record.legFaultPolicy !== undefined && record.legFaultPolicy !== 'remove' && record.legFaultPolicy !== 'replace') return '.legFaultPolicy must be remove or replace';
    if (record.spares !== undefined) {
      if (!Array.isArray(record.spares) || record.spares.length > SPARES_MAX) return `.spares must list at most ${SPARES_MAX} devices`;
      record.spares.forEach((spare, i) => checkDeviceFileName(spare, `spares[${i}]`));
    }
  } catch (error) {
    return `.${(error as Error).message}`;
  }
  return null;
}

/** The device files a table names: legs, and a disk log's device (also a userspace log's of a disk type). */
export function tableFiles(line: string): string[] {
  const table = parseMirrorTable(line);
  if (typeof table === 'string') return [];
  const legs = table.legs.map((leg) => leg.device);
  if (table.logType === 'disk') return [...legs, table.logArgs[0]!];
  if (table.logType === 'userspace') {
    const words = table.logArgs.slice(table.logArgs[1]?.toLowerCase() === 'integrated_flush' ? 2 : 1);
    if ((words[0] === 'disk' || words[0] === 'clustered-disk') && words[1] !== undefined) return [...legs, words[1]];
  }
  return legs;
}
