/**
 * Online resize of a clustered array (mdadm --grow --size), across every node. md-cluster.rst lists
 * "change array_sectors" as unsupported; this is ours:
 *
 * 1. Checked here first (nothing sent, nothing written): the size is one the layout can have, the
 *    legs hold it, the slot areas hold its bitmap (a resize never moves them: mdadm finds slot k at
 *    k x the area length, which follows from the size; more 4 KiB pages per slot would move every
 *    slot, and is refused with ERANGE naming the largest size that fits). EBUSY while a resync
 *    runs here (a node recovery running is waited for: it takes a moment).
 * 2. This node stops new writes, waits for those in flight, for a sweep or slot merge in progress
 *    and for its bitmap commits. Then the resync lock EX without queueing (EBUSY: another node
 *    resyncs) and the message channel held for the whole change (MdCluster.resizeStart), and
 *    BITMAP_RESIZE: every other node does the same before it acknowledges.
 * 3. Every leg's superblock: the new size, events + 1, and when growing (unless assumeClean)
 *    resync_offset at the old end, as md's raid1_resize sets recovery_cp; a shrink below
 *    resync_offset marks the array in sync. Written and flushed: the commit point.
 * 4. Every slot's bitmap superblock gets the new sync_size; a shrink clears the bits past the new
 *    end (those chunks left the array). Written to every active leg, flushed.
 * 5. CHANGE_CAPACITY naming a good device: every node reads the superblock and takes its size
 *    (layout, chunk count, bits, resync), then writes again; METADATA_UPDATED ends the update; the
 *    resync lock goes back to NL and the new part is resynced from resync_offset.
 *
 * Failure: after step 2, CHANGE_CAPACITY goes out whatever happened, so every node takes the size
 * the superblocks hold (old or new) and writes again. If this node dies in between, the others take
 * the size on disk when its slot is recovered (ClusterArray.nodeGone). A crash between 3 and 4 leaves
 * slots whose sync_size differs from the superblock's: they are read all the same, the area being
 * where the layout puts it (leg-metadata.ts readBitmapArea), and rewritten at the next resize or commit.
 */
import { BlockError } from '../errors.ts';
import type { ClusterArray } from './array-device.ts';
import { arraySectorsOf, largestLegSectors, legAlignSectors, legSectorsFor, smallestLegSectors } from './array-size.ts';
import { bitmapAreaBytes } from './bitmap-superblock.ts';
import { bitmapSectorsOf, readBitmapArea, writeBitmapArea } from './leg-metadata.ts';
import { SECTOR_BYTES } from './md-superblock.ts';

export interface ResizeRequest {
  /** The array's new size in bytes, or 'max': the largest the legs and the bitmap's slot areas allow. */
  sizeBytes: number | 'max';
  /** Growing: the new part is taken as in sync (no resync), as mdadm --assume-clean. */
  assumeClean?: boolean;
}

export interface ResizeResult {
  oldSizeBytes: number;
  sizeBytes: number;
  /** Chunks the grow left to resync (0 for a shrink, an unchanged size or assumeClean). */
  resyncChunks: number;
}

/** See the design note. */
export async function resizeArray(array: ClusterArray, request: ResizeRequest): Promise<ResizeResult> {
  const md = array.superblock;
  const shape = array.sizeShape;
  const legSectors = targetLegSectors(array, request.sizeBytes);
  const oldSizeBytes = array.sizeBytes;
  if (legSectors === md.sizeSectors) return { oldSizeBytes, sizeBytes: oldSizeBytes, resyncChunks: 0 };
  await array.cluster.recoveryIdle(); // a node that just left is recovered first (a moment)
  // Checked and set after the last wait: two resizes of this node never both start.
  if (array.layoutChangeRunning) throw new BlockError('EBUSY', 'a resize or bitmap switch of this array is running', { device: array.name });
  if (array.resyncState !== 'idle') {
    throw new BlockError('EBUSY', 'a resync is running: resize once it is over', { device: array.name });
  }
  array.layoutChangeRunning = true;
  const self = array.cluster.slotNumber();
  try {
    // Our writes stop before the metadata lock is taken: with no bitmap a write may wait for that
    // lock to mark the array dirty, and it must end for the pause to end.
    await array.pauseForResize(self);
    return await array.withMetadataLock(async () => {
      const oldSectors = bitmapSectorsOf(md);
      const newSectors = arraySectorsOf(shape, legSectors);
      await array.cluster.resizeStart(oldSectors, newSectors);
      try {
        await array.writeMetadataHolding((next) => {
          next.sizeSectors = legSectors;
          if (newSectors > oldSectors && request.assumeClean !== true) next.resyncOffsetSectors = Math.min(next.resyncOffsetSectors ?? oldSectors, oldSectors);
          else if (next.resyncOffsetSectors !== null && next.resyncOffsetSectors >= newSectors) next.resyncOffsetSectors = null;
        });
        array.applySize();
        if (array.layout.bitmap !== 'none') await rewriteSlots(array);
      } catch (error) {
        // Whatever reached the superblocks is the size: take it back from disk.
        const good = array.inSyncLegs()[0];
        if (good !== undefined) await array.reloadSuperblock(good.sb.devNumber).catch(() => {});
        throw error;
      } finally {
        // Never masks the resize's own outcome: a failure here is noted (the others resume when
        // CHANGE_CAPACITY reaches them, or when this node's slot is recovered).
        await array.cluster.resizeFinish(array.inSyncLegs()[0]?.sb.devNumber ?? null).catch((error: unknown) => array.note(`ending the resize failed: ${String(error)}`));
      }
      const from = array.superblock.resyncOffsetSectors;
      const resyncChunks = from === null || newSectors <= oldSectors ? 0 : array.chunkCount - Math.floor((from * SECTOR_BYTES) / array.chunkBytes);
      return { oldSizeBytes, sizeBytes: array.sizeBytes, resyncChunks };
    });
  } finally {
    array.resumeAfterResize(self);
    array.layoutChangeRunning = false;
    if (array.needsSync()) array.resyncNeeded(0);
  }
}

/** The leg size (md's `size`) for the request, or a coded error naming the field and the limit. */
function targetLegSectors(array: ClusterArray, sizeBytes: number | 'max'): number {
  const md = array.superblock;
  const shape = array.sizeShape;
  const align = legAlignSectors(shape);
  const legs = array.legList.filter((leg) => leg.state !== 'faulty');
  // With every leg failed there is no size to take (and no smallest leg to bound the search).
  if (legs.length === 0) throw new BlockError('EIO', 'every leg has failed: the array cannot be resized', { device: array.name });
  const legMaxSectors = Math.floor(Math.min(...legs.map((leg) => Math.floor(leg.device.sizeBytes / SECTOR_BYTES) - md.dataOffsetSectors)) / align) * align;
  const largest = largestLegSectors(shape, legMaxSectors, array.chunkBytes, array.chunkCapacity);
  if (sizeBytes === 'max') return largest;
  const details = { device: array.name };
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new BlockError('EINVAL', `sizeBytes must be a positive integer, got ${sizeBytes}`, details);
  const legSectors = legSectorsFor(shape, sizeBytes);
  if (typeof legSectors === 'string') throw new BlockError('EINVAL', legSectors, details);
  if (legSectors > legMaxSectors) {
    throw new BlockError('ERANGE', `the legs hold at most ${arraySectorsOf(shape, legMaxSectors) * SECTOR_BYTES} bytes of array`, details);
  }
  if (array.layout.bitmap !== 'none' && bitmapAreaBytes(arraySectorsOf(shape, legSectors), array.chunkBytes) < array.layout.bitmapAreaBytes) {
    const smallest = smallestLegSectors(shape, legMaxSectors, array.chunkBytes, array.layout.bitmapAreaBytes);
    throw new BlockError('ERANGE', `${sizeBytes} bytes needs fewer bitmap pages per node than the slot areas have (it would move every slot); at least ${arraySectorsOf(shape, smallest) * SECTOR_BYTES} bytes with ${array.chunkBytes}-byte bitmap chunks. To go further: stop the other nodes, switch the bitmap to none, resize, switch it back`, details);
  }
  if (legSectors > largest) {
    throw new BlockError('ERANGE', `${sizeBytes} bytes needs more bitmap pages per node than the slot areas have (it would move every slot); at most ${arraySectorsOf(shape, largest) * SECTOR_BYTES} bytes with ${array.chunkBytes}-byte bitmap chunks. To go further: stop the other nodes, switch the bitmap to none, resize, switch it back (a larger chunk fits more)`, details);
  }
  return legSectors;
}

/** Step 4: every slot's bitmap superblock with the array's sync_size, the bits past its end cleared. */
async function rewriteSlots(array: ClusterArray): Promise<void> {
  const source = array.inSyncLegs()[0];
  if (source === undefined) throw new BlockError('EIO', 'no leg in sync to read the bitmap slots from', { device: array.name });
  const legs = array.activeLegs();
  for (let slot = 0; slot < array.layout.nodes; slot++) {
    // Read tolerates the old sync_size (same area length) and drops the bits past the new end.
    const bitmap = await readBitmapArea(source.device, array.layout, slot, array.superblock);
    await Promise.all(legs.map((leg) => writeBitmapArea(leg.device, array.layout, slot, bitmap)));
  }
  await Promise.all(legs.map((leg) => leg.device.flush()));
}
