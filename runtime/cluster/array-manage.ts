/**
 * Changing a clustered array's legs, as mdadm --manage does, and what the other nodes do when told:
 *
 * - add (mdadm --add): the new device gets our superblock (a new device number and uuid, role
 *   spare) and a copy of every node slot's bitmap area, then NEWDISK goes out holding the channel:
 *   each node looks for a device with that uuid (`findDevice`, blkid's job in the kernel's
 *   design), binds it as a spare and drops its no-new-dev CR; our no-new-dev EX without queueing
 *   then fails (ENOENT) if some node did not. On success, still holding the channel, the leg takes
 *   a vacant role when there is one (unless added as a spare) with the recovery flag in its own
 *   superblock, the superblocks are written and METADATA_UPDATED tells the others. Recovery copies
 *   every chunk to it; in sync at the end.
 * - remove (mdadm --remove): a spare or failed leg only; its role entry is cleared in every
 *   superblock, then REMOVE makes the other nodes drop it.
 * - re-add (mdadm --re-add): a failed leg comes back in its old role; RE_ADD, then every other
 *   slot's bits merged with ours (they were not cleared while degraded) are the chunks it missed,
 *   and only those are recovered.
 * - a spare taking a failed leg's role (md's remove_and_add_spares): the node that recorded the
 *   failure gives a vacant role to a spare, with the recovery flag in its own superblock, under the
 *   token; METADATA_UPDATED tells the others (they see an active leg, recovering) and this node
 *   recovers it whole. Checked again under the token: when two nodes recorded the same failure,
 *   the second finds the role taken and changes nothing.
 */
import { assert } from '../assert.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import type { ClusterArray } from './array-device.ts';
import { withArrayFields, type Leg } from './array-legs.ts';
import { bitmapAreaOffsetBytes } from './leg-layout.ts';
import { readMdSuperblock, writeMdSuperblock } from './leg-metadata.ts';
import { FencedDevice } from '../devices/fenced-device.ts';
import { MD_FEATURE, MD_MAX_DEV_LIMIT, MD_ROLE_FAULTY, MD_ROLE_MAX, MD_ROLE_SPARE, SECTOR_BYTES } from './md-superblock.ts';

/** mdadm --add: see the design note. Returns the new leg's device number. */
export async function addLeg(array: ClusterArray, device: BlockDevice, spare: boolean): Promise<number> {
  const md = array.superblock;
  const neededBytes = (md.dataOffsetSectors + md.sizeSectors) * SECTOR_BYTES;
  if (device.sizeBytes < neededBytes) throw new BlockError('EINVAL', `${device.sizeBytes} bytes is smaller than a leg of this array (${neededBytes})`, { device: device.name });
  // Legs sit behind the array's fence (FencedDevice): the same device is the same inner one.
  const bare = (d: BlockDevice) => (d instanceof FencedDevice ? d.inner : d);
  if (array.legList.some((leg) => bare(leg.device) === bare(device))) throw new BlockError('EEXIST', 'already a leg of the array', { device: device.name });
  const used = new Set(array.legList.map((leg) => leg.sb.devNumber));
  let devNumber = 0;
  while (used.has(devNumber)) devNumber += 1;
  if (devNumber >= MD_MAX_DEV_LIMIT) throw new BlockError('EINVAL', `the array has ${MD_MAX_DEV_LIMIT} device numbers in use`, { device: device.name });
  const source = array.inSyncLegs()[0];
  if (source === undefined) throw new BlockError('EIO', 'no leg in sync to copy the metadata from', { device: device.name });
  // The new leg's metadata: every slot's bitmap area, then its superblock (spare, for now).
  const areaStart = bitmapAreaOffsetBytes(array.layout, 0);
  const areas = new Uint8Array(bitmapAreaOffsetBytes(array.layout, array.layout.nodes) - areaStart);
  await source.device.read(areaStart, areas);
  await device.write(areaStart, areas);
  const roles = [...md.devRoles];
  while (roles.length <= devNumber) roles.push(MD_ROLE_FAULTY);
  roles[devNumber] = MD_ROLE_SPARE;
  const sb = withArrayFields({
    ...source.sb, devNumber, deviceUuid: crypto.getRandomValues(new Uint8Array(16)),
    dataSizeSectors: Math.floor(device.sizeBytes / SECTOR_BYTES) - md.dataOffsetSectors, recoveryOffsetSectors: 0,
  }, { ...md, devRoles: roles });
  await writeMdSuperblock(device, sb);
  await device.flush();
  const leg: Leg = { device, sb, state: 'spare', role: null, recovering: false };
  await array.withMetadataLock(async () => {
    await array.cluster.addNewDiskStart(sb.deviceUuid, devNumber, source.sb.devNumber);
    try {
      array.legList.push(leg);
      const role = spare ? null : vacantRole(array);
      await array.writeMetadataHolding((next) => {
        while (next.devRoles.length <= devNumber) next.devRoles.push(MD_ROLE_FAULTY);
        next.devRoles[devNumber] = role ?? MD_ROLE_SPARE;
        if (role !== null) {
          leg.sb = { ...leg.sb, featureMap: leg.sb.featureMap | MD_FEATURE.RECOVERY_OFFSET, recoveryOffsetSectors: 0 };
          leg.state = 'active';
          leg.role = role;
          leg.recovering = true;
        }
      });
    } catch (error) {
      array.legList.splice(array.legList.indexOf(leg), 1);
      await array.cluster.metadataUpdateCancel();
      throw error;
    }
    await array.finishMetadataUpdate();
  });
  array.note(leg.recovering ? `leg ${device.name} added in role ${leg.role}: recovering` : `leg ${device.name} added as a spare`);
  if (leg.recovering) array.recoverLegs(null);
  return devNumber;
}

/** mdadm --remove: a spare or failed leg leaves; returns its device (the caller closes it). */
export async function removeLeg(array: ClusterArray, devNumber: number): Promise<BlockDevice> {
  const leg = array.legList.find((l) => l.sb.devNumber === devNumber);
  if (leg === undefined) throw new BlockError('ENOENT', `no leg numbered ${devNumber}`);
  if (leg.state === 'active') throw new BlockError('EBUSY', `leg ${devNumber} is active: fail it first`, { device: leg.device.name });
  await array.updateMetadata((md) => {
    if (devNumber < md.devRoles.length) md.devRoles[devNumber] = MD_ROLE_FAULTY;
  });
  array.legList.splice(array.legList.indexOf(leg), 1);
  await array.cluster.removeDisk(devNumber);
  array.note(`leg ${leg.device.name} (device number ${devNumber}) removed`);
  return leg.device;
}

/** mdadm --re-add: a failed leg returns in its old role; only the chunks it missed are recovered. */
export async function readdLeg(array: ClusterArray, devNumber: number): Promise<void> {
  const leg = array.legList.find((l) => l.sb.devNumber === devNumber);
  if (leg === undefined) throw new BlockError('ENOENT', `no leg numbered ${devNumber}`);
  if (leg.state !== 'faulty') throw new BlockError('EBUSY', `leg ${devNumber} is ${leg.state}, not failed`, { device: leg.device.name });
  if (array.layout.bitmap === 'none') throw new BlockError('EINVAL', 'a re-add needs a bitmap to know what the leg missed (bitmap none): remove it and add it, to recover it whole', { device: leg.device.name });
  const own = await readMdSuperblock(leg.device);
  if (!sameBytes(own.setUuid, array.superblock.setUuid)) throw new BlockError('EINVAL', 'the device no longer holds this array', { device: leg.device.name });
  const role = own.devRoles[devNumber] ?? MD_ROLE_FAULTY;
  if (role >= MD_ROLE_MAX) throw new BlockError('EINVAL', 'the device was not active in the array: add it instead', { device: leg.device.name });
  if (array.activeLegs().some((l) => l.role === role)) throw new BlockError('EBUSY', `role ${role} is taken by another leg: add it instead`, { device: leg.device.name });
  await array.cluster.gatherBitmaps(devNumber); // RE_ADD; every slot's bits merged into ours and the resync
  await array.updateMetadata((md) => {
    // Checked again under the token: a spare may have taken the role meanwhile (activateSpare).
    if (md.devRoles.some((r, number) => r === role && number !== devNumber) || leg.state === 'active') {
      throw new BlockError('EBUSY', `role ${role} was taken meanwhile: add it instead`, { device: leg.device.name });
    }
    md.devRoles[devNumber] = role;
    leg.sb = { ...leg.sb, featureMap: leg.sb.featureMap | MD_FEATURE.RECOVERY_OFFSET | MD_FEATURE.RECOVERY_BITMAP, recoveryOffsetSectors: 0 };
    leg.state = 'active';
    leg.role = role;
    leg.recovering = true;
  });
  array.note(`leg ${leg.device.name} re-added in role ${role}: recovering the chunks it missed`);
  array.recoverLegs('bits');
}

/** md's remove_and_add_spares: a spare takes a vacant role and is recovered (see the design note). */
export async function activateSpare(array: ClusterArray): Promise<Leg | null> {
  const candidate = () => (vacantRole(array) === null ? undefined : array.legList.find((leg) => leg.state === 'spare'));
  if (candidate() === undefined) return null;
  let taken: Leg | null = null;
  await array.withMetadataLock(async () => {
    await array.cluster.metadataUpdateStart();
    // Another node may have filled the role while we waited for the token (its METADATA_UPDATED
    // reached us before the token did): then nothing is written.
    const spare = candidate();
    const role = vacantRole(array);
    if (spare === undefined || role === null) {
      await array.cluster.metadataUpdateCancel();
      return;
    }
    try {
      await array.writeMetadataHolding((md) => {
        md.devRoles[spare.sb.devNumber] = role;
        spare.sb = { ...spare.sb, featureMap: spare.sb.featureMap | MD_FEATURE.RECOVERY_OFFSET, recoveryOffsetSectors: 0 };
        spare.state = 'active';
        spare.role = role;
        spare.recovering = true;
      });
    } catch (error) {
      await array.cluster.metadataUpdateCancel();
      throw error;
    }
    await array.finishMetadataUpdate();
    taken = spare;
  });
  const leg = taken as Leg | null;
  if (leg === null) return null;
  array.note(`spare ${leg.device.name} takes role ${leg.role}: recovering`);
  array.recoverLegs(null);
  return leg;
}

/**
 * The first array role no device holds, or null: as the superblocks say (every node's view),
 * not only this node's legs (a node assembled with some legs only must not give away a role
 * another device holds).
 */
function vacantRole(array: ClusterArray): number | null {
  const roles = array.superblock.devRoles;
  for (let role = 0; role < array.superblock.raidDisks; role++) {
    if (!roles.includes(role) && !array.activeLegs().some((leg) => leg.role === role)) return role;
  }
  return null;
}

/** NEWDISK on a receiving node: binds the device with that uuid as a spare, if this node can find it. */
export async function bindNewDisk(array: ClusterArray, deviceUuid: Uint8Array, devNumber: number, findDevice: ((uuid: Uint8Array) => Promise<BlockDevice | null>) | undefined): Promise<boolean> {
  if (findDevice === undefined) return false;
  const device = await findDevice(deviceUuid).catch(() => null);
  if (device === null) return false;
  if (array.isStopped) {
    await device.close().catch(() => {}); // the array stopped while we looked: its legs are closed
    return false;
  }
  const sb = await readMdSuperblock(device).catch(() => null);
  if (sb === null || !sameBytes(sb.setUuid, array.superblock.setUuid) || !sameBytes(sb.deviceUuid, deviceUuid) || sb.devNumber !== devNumber) {
    await device.close().catch(() => {}); // found, not ours after all: the finder handed it to us
    return false;
  }
  assert(!array.legList.some((leg) => leg.sb.devNumber === devNumber && leg.state !== 'faulty'), 'a new disk takes a free device number');
  const leg: Leg = { device, sb, state: 'spare', role: null, recovering: false };
  array.legList.push(leg);
  array.unconfirmedLegs.set(leg, array.superblock.events);
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
