/**
 * The metadata contexts an export offers for BLOCK_STATUS (proto.md "Metadata querying"):
 *
 *   base:allocation              id 1: holes and zeros (the device's blockStatus), for every export
 *   qemu:dirty-bitmap:<name>     id 2, 3, ...: one per bitmap the device's engine keeps
 *                                (BlockDevice.bitmaps: a clone's `hydrated`), a set bit answered
 *                                as NBD_STATE_DIRTY (1), as qemu's NBD server does for its bitmaps,
 *                                so `nbdinfo --map=qemu:dirty-bitmap:hydrated` and `qemu-img map`
 *                                with `x-dirty-bitmap` read them.
 *
 * Ids are fixed by the order of the device's bitmaps at SET time; a client only uses the ids the
 * SET reply gave it. LIST matching: no query lists all; a query ending in ':' (a namespace, or
 * "qemu:dirty-bitmap:") lists every context whose name starts with it; any other query its exact
 * name. SET selects exact names only.
 */
import type { BitmapRun, DeviceBitmap } from '../../runtime/devices/block-device.ts';
import { BASE_ALLOCATION, BASE_ALLOCATION_ID, NBD_STATE_DIRTY } from './constants.ts';
import type { BlockDescriptor } from './request-codec.ts';
import type { NbdExport } from './types.ts';

export const DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';

export interface MetaContext {
  id: number;
  name: string;
  /** null: base:allocation. */
  bitmap: DeviceBitmap | null;
}

/** The contexts `exported` offers now, in id order. */
export function contextsOf(exported: NbdExport): MetaContext[] {
  const contexts: MetaContext[] = [{ id: BASE_ALLOCATION_ID, name: BASE_ALLOCATION, bitmap: null }];
  const bitmaps = exported.device.bitmaps?.() ?? [];
  bitmaps.forEach((bitmap, i) => contexts.push({ id: BASE_ALLOCATION_ID + 1 + i, name: DIRTY_BITMAP_PREFIX + bitmap.name, bitmap }));
  return contexts;
}

/** LIST_META_CONTEXT: does one of `queries` (none: all) name `context`? */
export function listed(context: MetaContext, queries: readonly string[]): boolean {
  if (queries.length === 0) return true;
  return queries.some((query) => query === context.name || (query.endsWith(':') && context.name.startsWith(query)));
}

/**
 * A bitmap's answer to BLOCK_STATUS over `[offsetBytes, offsetBytes + lengthBytes)`: at most
 * `maxDescriptors` descriptors, merged, dirty (1) where bits are set. Never empty for a non-empty range.
 */
export function bitmapDescriptors(bitmap: DeviceBitmap, offsetBytes: number, lengthBytes: number, maxDescriptors: number): BlockDescriptor[] {
  const runs: BitmapRun[] = bitmap.runs(offsetBytes, lengthBytes, maxDescriptors);
  const descriptors: BlockDescriptor[] = [];
  for (const run of runs) {
    const statusFlags = run.set ? NBD_STATE_DIRTY : 0;
    const last = descriptors[descriptors.length - 1];
    if (last !== undefined && last.statusFlags === statusFlags) last.lengthBytes += run.lengthBytes;
    else descriptors.push({ lengthBytes: run.lengthBytes, statusFlags });
  }
  return descriptors;
}
