/**
 * One clone as the service holds it: the record the state file keeps, the parsed table, the files it
 * holds (metadata and destination for writing, a file source for reading; an http(s) source holds
 * none), the open CloneDevice and the relay of its events to the service's hub as `clone.<type>`.
 *
 * A clone that cannot be reopened after a restart is an entry too, with `device` null and the
 * reason in `error`: it keeps the holds its table names (so nobody else takes those files before it
 * is deleted), is listed, and refuses everything but deletion.
 *
 * The record's table is the effective one: the line given, with what messages changed since
 * (no_hydration, hydration_threshold, hydration_batch_size), so a restart reopens the clone as it was.
 */
import { isEngineRef, isUrl, openCloneFromTable, type OpenTableOptions } from '../../runtime/clone/open-table.ts';
import type { CloneDevice, CloneEvent } from '../../runtime/clone/clone-device.ts';
import type { CloneStatus } from '../../runtime/clone/status.ts';
import { formatCloneTable, parseCloneTable, TableError, type CloneFeature, type CloneTable } from '../../runtime/clone/table.ts';
import { BlockError } from '../../runtime/errors.ts';
import type { DeviceStore } from '../../runtime/devices/device-store.ts';
import { checkCanHold, type Hold } from '../device-holders.ts';
import type { EngineContext, ServiceContext } from '../engine.ts';
import { invalid } from '../errors.ts';
import { asInvalid } from '../names.ts';
import type { CloneRecord } from './records.ts';

export interface CloneInfo extends Partial<Omit<CloneStatus, 'line'>> {
  name: string;
  table: string;
  suspended: boolean;
  /** Why the clone could not be reopened after a restart; null when it is open. */
  error: string | null;
  exports: string[];
  /** The dm-clone status line; null when the clone is not open. */
  status: string | null;
}

export interface CloneEntry {
  record: CloneRecord;
  table: CloneTable | null;
  holds: Hold[];
  device: CloneDevice | null;
  error: string | null;
  stopEvents: () => void;
  /** Whether the clone's hydration-complete event reached the hub. */
  completionRelayed: boolean;
}

/**
 * Opens a clone; `checked` runs the in-use rules first (a new clone; a restored one had them).
 * `layer` goes over each device the table opens (tests put fault injectors there).
 */
export async function openCloneEntry(service: ServiceContext & Partial<Pick<EngineContext, 'engineDevice'>>, record: CloneRecord, checked = false, layer?: OpenTableOptions['layer']): Promise<CloneEntry> {
  const table = parseTable(record.table);
  const holder = `clone:${record.name}`;
  const holds = cloneHolds(service.store, record.name, table);
  // Every name is checked before any hold, so bad input is a 400 even when a device is also busy.
  if (checked) for (const hold of holds) checkCanHold(service.holds(), hold, 'table');
  let device: CloneDevice;
  try {
    const engineDevice = service.engineDevice === undefined ? {} : { engineDevice: (ref: string) => service.engineDevice!(ref, 'table') };
    device = await openCloneFromTable(service.store, record.table, { name: holder, ...(layer ? { layer } : {}), ...engineDevice });
  } catch (error) {
    if (error instanceof TableError) throw invalid('table', error.message.replace(/^invalid clone table: /, ''));
    if (error instanceof BlockError) throw invalid('table', `cannot open the clone: ${error.message}`);
    throw error;
  }
  if (record.suspended) {
    try {
      await device.suspend();
    } catch (error) {
      // The clone was opened but cannot be left as the record says: close it, or it leaks (its
      // files, its commit timer) behind the failed entry that takes its place.
      await device.close().catch((closeError) => service.log(`closing clone ${record.name} after a failed suspend: ${closeError}`));
      throw error;
    }
  }
  const entry: CloneEntry = { record: { ...record, table: effectiveTable(table, device.statusNow()) }, table, holds, device, error: null, stopEvents: () => {}, completionRelayed: false };
  entry.stopEvents = device.events.on((event) => {
    if (event.type === 'hydration-complete') {
      if (entry.completionRelayed) return; // announced already (CloneRegistry.create)
      entry.completionRelayed = true;
    }
    service.events.publish(`clone.${event.type}`, cloneEventFields(record.name, device, event));
  });
  return entry;
}

/** The entry of a clone that could not be reopened: it holds what its table names, if it parses. */
export function failedCloneEntry(service: ServiceContext, record: CloneRecord, error: unknown): CloneEntry {
  const message = (error as Error).message ?? String(error);
  service.log(`clone ${record.name} not reopened: ${message}`);
  let table: CloneTable | null = null;
  let holds: Hold[] = [];
  try {
    table = parseCloneTable(record.table);
    holds = cloneHolds(service.store, record.name, table);
  } catch {
    // an unreadable table holds nothing
  }
  return { record, table, holds, device: null, error: message, stopEvents: () => {}, completionRelayed: false };
}

/** Stops the relay and closes the clone (which commits its metadata); a failure is logged. */
export async function closeCloneEntry(service: ServiceContext, entry: CloneEntry): Promise<void> {
  entry.stopEvents();
  await entry.device?.close().catch((error) => service.log(`closing clone ${entry.record.name}: ${error}`));
}

/** What the API shows of a clone: its record, `exports` serving it, and `status` parsed when open. */
export function cloneInfo(entry: CloneEntry, status: CloneStatus | null, exports: string[]): CloneInfo {
  const { record } = entry;
  const base = { name: record.name, table: record.table, suspended: record.suspended, error: entry.error, exports };
  if (!status) return { ...base, status: null };
  const { line, ...fields } = status;
  return { ...base, status: line, ...fields };
}

/** The table line that reopens the clone as it is now: messages change features and core args. */
export function effectiveTable(table: CloneTable, status: CloneStatus): string {
  const features: CloneFeature[] = status.hydrationEnabled ? [] : ['no_hydration'];
  if (table.features.includes('no_discard_passdown')) features.push('no_discard_passdown');
  // Values the clone chooses as it goes stay unset in the table (a restart chooses them again).
  const core = status.hydrationAdaptive
    ? { hydrationThreshold: undefined, hydrationBatchSize: undefined }
    : { hydrationThreshold: status.hydrationThreshold, hydrationBatchSize: status.hydrationBatchSize };
  return formatCloneTable({ ...table, features, ...core });
}

/** The files a clone's table holds (an http(s) or engine source holds none). */
function cloneHolds(store: DeviceStore, cloneName: string, table: CloneTable): Hold[] {
  const roles = [
    ['metadata dev', table.metadataDevice, 'write'],
    ['destination dev', table.destinationDevice, 'write'],
    ['source dev', table.sourceDevice, 'read'],
  ] as const;
  return roles.filter(([role, name]) => role !== 'source dev' || !(isUrl(name) || isEngineRef(name))).map(([role, name, access]) => {
    try {
      return { path: store.holdKey(name, role), name, access, holder: `clone:${cloneName}` };
    } catch (error) {
      throw invalid('table', (asInvalid(error, role) as Error).message);
    }
  });
}

function parseTable(line: string): CloneTable {
  try {
    return parseCloneTable(line);
  } catch (error) {
    if (error instanceof TableError) throw invalid('table', error.message.replace(/^invalid clone table: /, ''));
    throw error;
  }
}

function cloneEventFields(clone: string, device: CloneDevice, event: CloneEvent): Record<string, unknown> {
  const { type: _type, ...fields } = event;
  if (event.type !== 'commit') return { clone, ...fields };
  const bytesHydrated = Math.min(device.sizeBytes, event.hydratedRegions * device.regionBytes);
  return { clone, ...fields, bytesHydrated, totalBytes: device.sizeBytes };
}
