/**
 * Switching an array's bitmap (mdadm --grow --bitmap=none|internal|clustered), as mdadm's
 * clustermd_tests 01r1_Grow_bitmap-switch does: clustered -> none -> internal -> none ->
 * clustered. As mdadm, a bitmap is removed before another is made (internal <-> clustered goes
 * through none).
 *
 * 1. Refused (EBUSY) unless the array is whole and in sync (every role active and in sync, no
 *    resync pending: a bitmap being dropped may hold what a missing leg needs) and, leaving a
 *    clustered bitmap, no other node has the array (every other slot's bitmap lock granted without
 *    queueing, md-cluster.rst's lock_all_bitmaps; a node that tries to join waits for them).
 * 2. Writes stop and drain, every leg is flushed and the bits cleared: nothing is in flight.
 * 3. The new bitmap's slot areas are written (bits clear) and flushed, then every superblock takes
 *    the new feature bits and bitmap offset (the commit point); removing the bitmap, the old
 *    slots' superblocks are zeroed after it (mdadm --examine-bitmap then finds none).
 * 4. This array object ends (its waiting writes fail, EBADF) without touching the old bitmap, and
 *    the array is assembled again on the same legs with the new one.
 *
 * A crash before 3's superblock write leaves the old bitmap in force (the new areas are unused
 * space); after it, the new one, clear, over an array that was in sync and flushed.
 */
import { BlockError } from '../errors.ts';
import type { ClusterArray } from './array-device.ts';
import { bitmapFeatures, freshBitmaps, withBitmap } from './array-format.ts';
import { BITMAP_CHUNK_BYTES_MIN, CLUSTER_NAME_BYTES } from './bitmap-superblock.ts';
import { bitmapAreaOffsetBytes, BITMAP_OFFSET_SECTORS, NODES_MAX, type BitmapMode } from './leg-layout.ts';
import { BITMAP_PAGE_BYTES, bitmapSectorsOf, readBitmapArea, writeBitmapArea } from './leg-metadata.ts';
import { MD_FEATURE, SECTOR_BYTES } from './md-superblock.ts';

export interface BitmapSwitchRequest {
  bitmap: BitmapMode;
  /** Clustered: node slots (default 2). */
  nodes?: number;
  /** Clustered or internal: the bitmap chunk (default 64 MiB), a power of two. */
  chunkBytes?: number;
  /** Clustered: the cluster name (default "blockcore"). */
  clusterName?: string;
}

/** Steps 1 to 3 of the design note; the array (ClusterArray.switchBitmap) does step 4. */
export async function switchBitmap(array: ClusterArray, request: BitmapSwitchRequest): Promise<void> {
  const from = array.layout.bitmap;
  const to = request.bitmap;
  const details = { device: array.name };
  if (from === to) throw new BlockError('EINVAL', `the bitmap is ${to} already`, details);
  if (from !== 'none' && to !== 'none') throw new BlockError('EINVAL', `remove the ${from} bitmap first (bitmap none), then make the ${to} one`, details);
  const nodes = to === 'clustered' ? request.nodes ?? 2 : 1;
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > NODES_MAX) throw new BlockError('EINVAL', `nodes must be 1 to ${NODES_MAX}`, details);
  const chunkBytes = request.chunkBytes;
  if (chunkBytes !== undefined && (chunkBytes < BITMAP_CHUNK_BYTES_MIN || (chunkBytes & (chunkBytes - 1)) !== 0 || chunkBytes > 2 ** 30)) {
    throw new BlockError('EINVAL', `the bitmap chunk must be a power of two from ${BITMAP_CHUNK_BYTES_MIN} bytes to 1 GiB`, details);
  }
  const clusterName = request.clusterName ?? 'blockcore';
  if (new TextEncoder().encode(clusterName).length >= CLUSTER_NAME_BYTES) throw new BlockError('EINVAL', `the cluster name is longer than ${CLUSTER_NAME_BYTES - 1} bytes`, details);
  const md = array.superblock;
  const next = withBitmap(array.layout, to, nodes, bitmapSectorsOf(md), chunkBytes);
  if (bitmapAreaOffsetBytes(next, next.nodes) > md.dataOffsetSectors * SECTOR_BYTES) {
    throw new BlockError('EINVAL', `${next.nodes} bitmap slots of ${next.bitmapAreaBytes} bytes do not fit before data_offset (${md.dataOffsetSectors * SECTOR_BYTES} bytes): fewer nodes or a larger chunk`, details);
  }
  await array.cluster.recoveryIdle(); // a node that just left is recovered first (a moment)
  const whole = array.activeLegs().length === md.raidDisks && array.inSyncLegs().length === md.raidDisks && !array.legList.some((leg) => leg.state === 'faulty');
  const why = !whole ? 'a leg is missing, failed or recovering'
    : array.resyncState !== 'idle' ? `a resync is ${array.resyncState}`
    : array.needsSync() ? 'a resync is still to run' : null;
  if (why !== null) throw new BlockError('EBUSY', `the array must be whole and in sync to switch its bitmap: ${why}`, details);
  if (array.layoutChangeRunning) throw new BlockError('EBUSY', 'a resize or bitmap switch of this array is running', details);
  array.layoutChangeRunning = true;
  let committed = false;
  try {
    await array.pauseForResize(array.cluster.slotNumber());
    // Clean before the lock (no bitmap: marking clean writes the superblocks under it).
    await array.cleanWhilePaused();
    await array.withMetadataLock(async () => {
      if (from === 'clustered') {
        if (!(await array.cluster.lockAllBitmaps())) throw new BlockError('EBUSY', 'other nodes have the array assembled: stop it there first', details);
        // A node that died just before we took its lock left bits that its recovery (ours, now
        // waiting for that lock) would have resynced: they must not be dropped with the bitmap.
        await assertOtherSlotsClean(array);
      }
      const legs = array.legList.filter((leg) => leg.state !== 'faulty');
      await Promise.all(legs.map((leg) => leg.device.flush()));
      for (const [slot, bitmap] of freshBitmaps(next, md.setUuid, bitmapSectorsOf(md), clusterName, false).entries()) {
        await Promise.all(legs.map((leg) => writeBitmapArea(leg.device, next, slot, bitmap)));
      }
      await Promise.all(legs.map((leg) => leg.device.flush()));
      await array.writeMetadataHolding((sb) => {
        sb.featureMap = (sb.featureMap & ~(MD_FEATURE.BITMAP_OFFSET | MD_FEATURE.CLUSTERED)) | bitmapFeatures(to);
        sb.bitmapOffsetSectors = to === 'none' ? 0 : BITMAP_OFFSET_SECTORS;
      });
      committed = true;
      if (to === 'none') {
        const zero = new Uint8Array(BITMAP_PAGE_BYTES);
        for (let slot = 0; slot < array.layout.nodes; slot++) {
          await Promise.all(legs.map((leg) => leg.device.write(bitmapAreaOffsetBytes(array.layout, slot), zero)));
        }
        await Promise.all(legs.map((leg) => leg.device.flush()));
      }
    });
  } catch (error) {
    if (!committed) {
      await array.cluster.unlockAllBitmaps().catch(() => {});
      array.resumeAfterResize(array.cluster.slotNumber());
      array.layoutChangeRunning = false;
      throw error;
    }
    array.note(`the ${to} bitmap is on the superblocks but cleaning the old one failed: ${String(error)}`);
  }
  array.note(`bitmap switched from ${from} to ${to}: assembling again`);
}

async function assertOtherSlotsClean(array: ClusterArray): Promise<void> {
  const source = array.inSyncLegs()[0]!;
  for (let slot = 0; slot < array.layout.nodes; slot++) {
    if (slot === array.cluster.slotNumber()) continue;
    const bitmap = await readBitmapArea(source.device, array.layout, slot, array.superblock);
    if (bitmap.bits.some((byte) => byte !== 0)) {
      throw new BlockError('EBUSY', `node slot ${slot} has chunks to resync (a node died): switch once its recovery is done`, { device: array.name });
    }
  }
}
