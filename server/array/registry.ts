/**
 * The array engine in the service: clustered md arrays by name over device files of the data
 * directory, this service being one node of each. Lock "in-process": the service is the whole
 * cluster (one node per service); lock "etcd": the nodes are separate services started with
 * --etcd, each with its own data directory holding the shared legs (a SAN, or a bind mount), the
 * array created on one and assembled on the others. Create (format and assemble) or assemble,
 * inspect, fail a leg, stop. Each change is saved in the state file before it answers and
 * published as an `array.*` event; a stopped array's legs keep everything (assemble brings it
 * back). A restart assembles every array again from its legs.
 *
 * Fenced (an etcd array whose node could not renew its lease in time): the array stops writing at
 * once (runtime/cluster: FencedDevice), the service stops it and assembles it again as a new
 * member once etcd answers, retrying every second; exports and engines stacked on it hold a
 * SwitchDevice, which then moves to the new array (calls meanwhile fail with EIO).
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { ClusterArray, type ArrayEvent, type ArrayStatus } from '../../runtime/cluster/array-device.ts';
import { DEFAULT_BITMAP_CHUNK_BYTES, DEFAULT_RAID10_CHUNK_BYTES, type ArrayCreateSpec } from '../../runtime/cluster/array-format.ts';
import { mdstatText } from '../../runtime/cluster/mdstat.ts';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { BlockError } from '../../runtime/errors.ts';
import { readMdSuperblock } from '../../runtime/cluster/leg-metadata.ts';
import { lockspaceName } from '../../runtime/cluster/md-cluster.ts';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { SwitchDevice } from '../../runtime/devices/switch-device.ts';
import { devicePath, statDevice } from '../device-files.ts';
import { checkCanHold, type Hold } from '../device-holders.ts';
import type { Engine, EngineContext } from '../engine.ts';
import { invalid, ServiceError } from '../errors.ts';
import type { PromText } from '../prometheus.ts';
import { findLegFile } from './leg-finder.ts';
import { arrayMetrics } from './metrics.ts';
import type { ArrayRecord } from './records.ts';
import { arrayRoutes } from './routes.ts';
import type { z } from '@hono/zod-openapi';
import type { NewArray, SwitchBitmap } from './schemas.ts';

export interface ArrayInfo extends Partial<Omit<ArrayStatus, 'name' | 'legs'>> {
  name: string;
  lock: 'in-process' | 'etcd';
  legs: { device: string; slot: number; role: number | null; state: 'active' | 'spare' | 'faulty'; recovering: boolean }[];
  error: string | null;
  exports: string[];
  state: string | null;
}

interface ArrayEntry {
  record: ArrayRecord;
  array: ClusterArray | null;
  error: string | null;
  holds: Hold[];
  /**
   * What deviceOf hands out (exports, stacked engines), one for the array: moved to the array
   * assembled after a fence. Made again when the array or its size changed (a bitmap switch or a
   * resize, both refused while anything uses it).
   */
  served: SwitchDevice | null;
  /** True while a fenced array is being assembled again. */
  rejoining: boolean;
}

const REJOIN_RETRY_MS = 1000;
const CREATE_ONLY = ['level', 'layout', 'nodes', 'clusterName', 'chunkSizeBytes', 'bitmapChunkBytes', 'assumeClean', 'spares', 'sizeBytes', 'bitmap'] as const;

export class ArrayRegistry implements Engine {
  readonly kind = 'array';
  private readonly entries = new Map<string, ArrayEntry>();
  private closing = false;
  /** The md uuid of each array assembled here: one array is assembled once per node. */
  private readonly uuids = new WeakMap<ClusterArray, string>();

  constructor(private readonly service: EngineContext) {}

  routes(app: OpenAPIHono): void {
    arrayRoutes(app, this, this.service);
  }

  metrics(out: PromText): void {
    arrayMetrics(out, this.list());
  }

  async restore(records: readonly unknown[]): Promise<void> {
    for (const record of records as ArrayRecord[]) {
      const holds = this.holdsOf(record);
      try {
        const array = await this.open(record, null);
        this.entries.set(record.name, { record, array, error: null, holds, served: null, rejoining: false });
        this.watchNewEntry(record.name);
      } catch (error) {
        const message = (error as Error).message ?? String(error);
        this.service.log(`array ${record.name} not assembled: ${message}`);
        this.entries.set(record.name, { record, array: null, error: message, holds, served: null, rejoining: false });
      }
    }
  }

  records(): ArrayRecord[] {
    return [...this.entries.values()].map(({ record }) => ({
      name: record.name, legs: [...record.legs],
      ...(record.lock ? { lock: record.lock } : {}),
      ...(record.resyncMaxBytesPerSecond === undefined ? {} : { resyncMaxBytesPerSecond: record.resyncMaxBytesPerSecond }),
    }));
  }

  holds(): Hold[] {
    return [...this.entries.values()].flatMap((entry) => entry.holds);
  }

  /** The array as its users hold it: a SwitchDevice, so a fenced array assembled again serves them on. */
  deviceOf(name: string, field: string): BlockDevice {
    const entry = this.entry(name, field);
    const array = this.assembled(name, field);
    if (entry.served === null || entry.served.device !== array || entry.served.sizeBytes !== array.sizeBytes) entry.served = new SwitchDevice(array);
    return entry.served;
  }

  private assembled(name: string, field: string): ClusterArray {
    const entry = this.entry(name, field);
    if (entry.array === null) throw new ServiceError('EBUSY', `array "${name}" is not assembled: ${entry.error}`, field);
    return entry.array;
  }

  list(): ArrayInfo[] {
    return [...this.entries.values()].map((entry) => this.info(entry));
  }

  get(name: string): ArrayInfo {
    return this.info(this.entry(name));
  }

  /** POST /v1/arrays: create (format the legs) or, with `assemble`, join the array they hold. */
  async create(body: z.infer<typeof NewArray>): Promise<ArrayInfo> {
    const { name, legs } = body;
    if (this.entries.has(name)) throw new ServiceError('EEXIST', `array "${name}" exists already`, 'name');
    const record: ArrayRecord = {
      name, legs: [...legs],
      ...(body.lock === 'etcd' ? { lock: 'etcd' as const } : {}),
      ...(body.resyncMaxBytesPerSecond === undefined ? {} : { resyncMaxBytesPerSecond: body.resyncMaxBytesPerSecond }),
    };
    this.service.cluster.lockManager(body.lock ?? 'in-process', 'lock'); // refused now when there is no etcd
    const seen = new Set<string>();
    legs.forEach((leg, i) => {
      if (seen.has(leg)) throw invalid(`legs[${i}]`, `"${leg}" is listed twice`);
      seen.add(leg);
    });
    const sizes = legs.map((leg, i) => statDevice(this.service.dataDir, leg, `legs[${i}]`).sizeBytes);
    const holds = this.holdsOf(record);
    holds.forEach((hold, i) => checkCanHold(this.service.holds(), hold, `legs[${i}]`));
    let spec: ArrayCreateSpec | null = null;
    if (body.assemble) {
      for (const field of CREATE_ONLY) if (body[field] !== undefined) throw invalid(field, 'is not taken with assemble: true (the legs say it)');
    } else {
      spec = this.createSpec(body, sizes);
    }
    const array = await this.open(record, spec);
    const entry: ArrayEntry = { record, array, error: null, holds, served: null, rejoining: false };
    this.entries.set(name, entry);
    this.watchNewEntry(name);
    await this.service.saveOrUndo(async () => {
      this.entries.delete(name);
      await array.close().catch((error) => this.service.log(`stopping array ${name}: ${error}`));
    });
    this.service.events.publish(body.assemble ? 'array.assembled' : 'array.created', { array: name, legs });
    return this.info(entry);
  }

  /** mdadm --fail: the leg whose device number is `slot`. */
  async fail(name: string, slot: number): Promise<ArrayInfo> {
    const { entry, array } = this.legAt(name, slot);
    await array.failByNumber(slot);
    return this.info(entry);
  }

  /** mdadm --add: a device file of the data directory joins as a leg (a spare, or recovered into a vacant role). */
  async addLeg(name: string, device: string, spare: boolean, grow = false): Promise<ArrayInfo> {
    if (spare && grow) throw invalid('grow', 'a leg added to grow the array cannot be a spare');
    const entry = this.entry(name);
    const array = this.assembled(name, 'name');
    const hold: Hold = { path: devicePath(this.service.dataDir, device, 'device'), name: device, access: 'write', holder: `array:${name}` };
    if (entry.holds.some((h) => h.path === hold.path)) {
      // mdadm --grow --raid-devices=N+1 with a spare bound: the spare named becomes the new leg.
      const spare = grow ? array.status().legs.find((leg) => leg.device === hold.path && leg.state === 'spare') : undefined;
      if (spare === undefined) throw invalid('device', `"${device}" is a leg of array "${name}" already${grow ? ' (only a spare of it can grow it)' : ''}`);
      try {
        await array.growOnto(spare.devNumber);
      } catch (error) {
        if (error instanceof BlockError && error.code === 'ENOTSUP') throw invalid('grow', error.message.replace(/^ENOTSUP: /, ''));
        throw error;
      }
      this.service.events.publish('array.leg-added', { array: name, device, spare: false, grow });
      return this.info(entry);
    }
    statDevice(this.service.dataDir, device, 'device');
    checkCanHold(this.service.holds(), hold, 'device');
    const file = await FileDevice.open(hold.path);
    try {
      if (grow) await array.growWith(file);
      else await array.addLeg(file, spare);
    } catch (error) {
      await file.close().catch(() => {});
      if (error instanceof BlockError && error.code === 'EINVAL') throw invalid('device', error.message.replace(/^EINVAL: /, ''));
      if (error instanceof BlockError && error.code === 'ENOENT') throw new ServiceError('EBUSY', error.message.replace(/^ENOENT: /, ''), 'device');
      if (error instanceof BlockError && error.code === 'ENOTSUP') throw invalid('grow', error.message.replace(/^ENOTSUP: /, ''));
      throw error;
    }
    if (!entry.holds.some((h) => h.path === hold.path)) entry.holds.push(hold);
    if (!entry.record.legs.includes(device)) entry.record.legs.push(device);
    await this.service.saveApplied(`adding ${device} to array "${name}"`);
    this.service.events.publish('array.leg-added', { array: name, device, spare, grow });
    return this.info(entry);
  }

  /** mdadm --remove: a spare or failed leg leaves the array; its file is free again. */
  async removeLeg(name: string, slot: number): Promise<ArrayInfo> {
    const { entry, array, leg } = this.legAt(name, slot);
    if (leg.state === 'active') throw new ServiceError('EBUSY', `the leg in slot ${slot} is active: fail it first`, 'slot');
    const fileName = entry.holds.find((hold) => hold.path === leg.device)?.name ?? null;
    const device = await array.removeLeg(slot);
    await device.close().catch((error) => this.service.log(`closing removed leg ${device.name}: ${error}`));
    // (The array's note of the removal may have synced these already: syncLegs.)
    entry.holds = entry.holds.filter((hold) => hold.path !== device.name);
    if (fileName !== null && entry.record.legs.includes(fileName)) entry.record.legs.splice(entry.record.legs.indexOf(fileName), 1);
    await this.service.saveApplied(`removing slot ${slot} from array "${name}"`);
    this.service.events.publish('array.leg-removed', { array: name, slot, device: fileName });
    return this.info(entry);
  }

  /** mdadm --re-add: a failed leg returns; only the chunks it missed are recovered. */
  async readdLeg(name: string, slot: number): Promise<ArrayInfo> {
    const { entry, array, leg } = this.legAt(name, slot);
    if (leg.state !== 'faulty') throw new ServiceError('EBUSY', `the leg in slot ${slot} is ${leg.state}, not failed`, 'slot');
    try {
      await array.readdLeg(slot);
    } catch (error) {
      if (error instanceof BlockError && (error.code === 'EINVAL' || error.code === 'EBUSY')) throw new ServiceError('EBUSY', error.message.replace(/^E[A-Z]+: /, ''), 'slot');
      throw error;
    }
    this.service.events.publish('array.leg-readded', { array: name, slot });
    return this.info(entry);
  }

  /** mdadm --grow --size: every node of the array takes the new size; a grow resyncs the new part. */
  async resize(name: string, sizeBytes: number | 'max', assumeClean: boolean): Promise<ArrayInfo> {
    const entry = this.entry(name);
    const array = this.assembled(name, 'name');
    // Exports and clones took the size when they opened it: they would read past a shrink or miss a grow.
    const users = this.service.usersOf(`array:${name}`);
    if (users.length > 0) throw new ServiceError('EBUSY', `array "${name}" is in use by ${users.join(', ')}; its size is fixed while it is`, 'name');
    let result;
    try {
      result = await array.resize({ sizeBytes, assumeClean });
    } catch (error) {
      if (error instanceof BlockError && (error.code === 'EINVAL' || error.code === 'ERANGE')) throw invalid('sizeBytes', error.message.replace(/^E[A-Z]+: /, ''));
      if (error instanceof BlockError && error.code === 'EBUSY') throw new ServiceError('EBUSY', error.message.replace(/^EBUSY: /, ''), 'name');
      throw error;
    }
    this.service.events.publish('array.resized', { array: name, ...result });
    return this.info(entry);
  }

  /** mdadm --grow --bitmap: another bitmap; the array is assembled again with it. */
  async switchBitmap(name: string, body: z.infer<typeof SwitchBitmap>): Promise<ArrayInfo> {
    const entry = this.entry(name);
    const array = this.assembled(name, 'name');
    const users = this.service.usersOf(`array:${name}`);
    if (users.length > 0) throw new ServiceError('EBUSY', `array "${name}" is in use by ${users.join(', ')}; it is assembled again with the new bitmap`, 'name');
    for (const field of ['nodes', 'clusterName'] as const) if (body[field] !== undefined && body.bitmap !== 'clustered') throw invalid(field, 'is for a clustered bitmap');
    if (body.bitmapChunkBytes !== undefined && body.bitmap === 'none') throw invalid('bitmapChunkBytes', 'is for a bitmap (not none)');
    if (body.bitmapChunkBytes !== undefined && (body.bitmapChunkBytes & (body.bitmapChunkBytes - 1)) !== 0) throw invalid('bitmapChunkBytes', `${body.bitmapChunkBytes} is not a power of two`);
    try {
      entry.array = await array.switchBitmap({
        bitmap: body.bitmap,
        ...(body.nodes === undefined ? {} : { nodes: body.nodes }),
        ...(body.bitmapChunkBytes === undefined ? {} : { chunkBytes: body.bitmapChunkBytes }),
        ...(body.clusterName === undefined ? {} : { clusterName: body.clusterName }),
      });
    } catch (error) {
      if (array.isStopped) {
        // Switched on disk, not assembled again: the array says why, as after a failed restart.
        entry.array = null;
        entry.error = String(error);
      }
      if (error instanceof BlockError && error.code === 'EINVAL') throw invalid(/node/.test(error.message) ? 'nodes' : 'bitmap', error.message.replace(/^EINVAL: /, ''));
      if (error instanceof BlockError && error.code === 'EBUSY') throw new ServiceError('EBUSY', error.message.replace(/^EBUSY: /, ''), 'name');
      throw error;
    }
    this.service.events.publish('array.bitmap-switched', { array: name, bitmap: body.bitmap });
    return this.info(entry);
  }

  /** md's sync_speed_max: this node's resync and recovery rate limit (null: none), kept in the state file. */
  async setResyncSpeed(name: string, bytesPerSecond: number | null): Promise<ArrayInfo> {
    const entry = this.entry(name);
    const array = this.assembled(name, 'name');
    const before = entry.record.resyncMaxBytesPerSecond;
    if (bytesPerSecond === null) delete entry.record.resyncMaxBytesPerSecond;
    else entry.record.resyncMaxBytesPerSecond = bytesPerSecond;
    await this.service.saveOrUndo(async () => {
      if (before === undefined) delete entry.record.resyncMaxBytesPerSecond;
      else entry.record.resyncMaxBytesPerSecond = before;
    });
    array.setResyncRate(bytesPerSecond);
    this.service.events.publish('array.resync-speed', { array: name, maxBytesPerSecond: bytesPerSecond });
    return this.info(entry);
  }

  /** mdadm --stop: this node leaves the array; its legs keep it (assemble brings it back). */
  async stop(name: string): Promise<void> {
    const entry = this.entry(name);
    const exports = this.service.exportsOf(`array:${name}`);
    if (exports.length > 0) throw new ServiceError('EBUSY', `array "${name}" is exported as ${exports.join(', ')}; delete the export first`, 'name');
    const users = this.service.usersOf(`array:${name}`).filter((user) => !user.startsWith('export:'));
    if (users.length > 0) throw new ServiceError('EBUSY', `array "${name}" is in use by ${users.join(', ')}`, 'name');
    this.entries.delete(name);
    await this.service.saveOrUndo(async () => void this.entries.set(name, entry));
    await entry.array?.close().catch((error) => this.service.log(`stopping array ${name}: ${error}`));
    this.service.events.publish('array.stopped', { array: name });
  }

  async closeAll(): Promise<void> {
    this.closing = true;
    for (const entry of this.entries.values()) await entry.array?.close().catch((error) => this.service.log(`stopping array ${entry.record.name}: ${error}`));
    this.entries.clear();
  }

  private createSpec(body: z.infer<typeof NewArray>, sizes: number[]): ArrayCreateSpec {
    if (body.level === undefined) throw invalid('level', 'is required to create an array (or give assemble: true)');
    const spares = body.spares ?? 0;
    const raidDisks = body.legs.length - spares;
    if (raidDisks < 1) throw invalid('spares', `${spares} spares leave no active leg of ${body.legs.length}`);
    if (new Set(sizes).size > 1) {
      throw invalid('legs', `legs differ in size (${body.legs.map((leg, i) => `${leg}: ${sizes[i]} bytes`).join(', ')}); give legs of one size`);
    }
    const nearCopies = body.layout === 'n3' ? 3 : 2;
    if (body.level === 'raid10') {
      if (raidDisks < nearCopies) throw invalid('legs', `raid10 ${body.layout ?? 'n2'} needs at least ${nearCopies} active legs, got ${raidDisks}`);
    } else {
      if (body.layout !== undefined) throw invalid('layout', 'is for raid10 only');
      if (body.chunkSizeBytes !== undefined) throw invalid('chunkSizeBytes', 'is for raid10 only');
    }
    const powerOfTwo = (value: number | undefined, field: string) => {
      if (value !== undefined && (value & (value - 1)) !== 0) throw invalid(field, `${value} is not a power of two`);
    };
    powerOfTwo(body.chunkSizeBytes, 'chunkSizeBytes');
    powerOfTwo(body.bitmapChunkBytes, 'bitmapChunkBytes');
    if (body.clusterName !== undefined && body.clusterName.length > 63) throw invalid('clusterName', 'is longer than 63 bytes');
    return {
      name: body.name.slice(0, 32),
      level: body.level,
      nearCopies,
      raidDisks,
      nodes: body.nodes ?? 2,
      clusterName: body.clusterName ?? 'blockcore',
      bitmapChunkBytes: body.bitmapChunkBytes ?? DEFAULT_BITMAP_CHUNK_BYTES,
      raid10ChunkBytes: body.chunkSizeBytes ?? DEFAULT_RAID10_CHUNK_BYTES,
      assumeClean: body.assumeClean ?? false,
      ...(body.sizeBytes === undefined ? {} : { sizeBytes: body.sizeBytes }),
      ...(body.bitmap === undefined ? {} : { bitmap: body.bitmap }),
      uuid: crypto.getRandomValues(new Uint8Array(16)),
      nowSeconds: Math.floor(Date.now() / 1000),
    };
  }

  /** Opens the legs and creates or assembles; refusals name `legs`, and nothing stays open. */
  private async open(record: ArrayRecord, spec: ArrayCreateSpec | null): Promise<ClusterArray> {
    const devices: FileDevice[] = [];
    try {
      for (const [i, leg] of record.legs.entries()) devices.push(await FileDevice.open(devicePath(this.service.dataDir, leg, `legs[${i}]`)));
      const kind = record.lock ?? 'in-process';
      const uuid = lockspaceName(spec?.uuid ?? (await readMdSuperblock(devices[0]!)).setUuid);
      for (const other of this.entries.values()) {
        if (other.record.name !== record.name && other.array !== null && this.uuids.get(other.array) === uuid) {
          throw new ServiceError('EBUSY', `the legs hold array ${uuid}, assembled here already as "${other.record.name}"`, 'legs');
        }
      }
      if (spec === null) await this.service.cluster.checkArrayLock(uuid, kind, 'assemble', 'lock');
      const options = {
        name: `array:${record.name}`, legs: devices, manager: this.service.cluster.lockManager(kind, 'lock'),
        memberName: this.service.cluster.nodeName, nodeId: this.service.cluster.nodeId, ownsLegs: true,
        resyncMaxBytesPerSecond: record.resyncMaxBytesPerSecond ?? null,
        onEvent: (event: ArrayEvent) => {
          this.service.events.publish(`array.${event.type}`, { array: record.name, message: event.message });
          if (event.type === 'fenced') this.rejoin(record.name, event.message);
          else this.syncLegs(record.name);
        },
        // A leg another node added (NEWDISK): its file here, held for this array from now on.
        findDevice: async (deviceUuid: Uint8Array) => {
          const entry = this.entries.get(record.name);
          const held = new Set(this.service.holds().map((hold) => hold.path));
          const found = await findLegFile(this.service.dataDir, deviceUuid, (path) => held.has(path));
          if (found === null) return null;
          if (entry !== undefined && entry.record === record) entry.holds.push({ path: found.path, name: found.name, access: 'write', holder: `array:${record.name}` });
          return found.device;
        },
      };
      const array = spec === null ? await ClusterArray.assemble(options) : await ClusterArray.create(options, spec);
      this.uuids.set(array, uuid);
      if (spec !== null) await this.service.cluster.checkArrayLock(uuid, kind, 'create', 'lock').catch(async (error) => {
        await array.close().catch(() => {});
        throw error;
      });
      return array;
    } catch (error) {
      await Promise.all(devices.map((device) => device.close().catch(() => {})));
      if (error instanceof BlockError && error.code === 'EINVAL') throw invalid('legs', error.message.replace(/^EINVAL: /, ''));
      if (error instanceof BlockError && error.code === 'ERANGE') throw new ServiceError('EBUSY', error.message.replace(/^ERANGE: /, ''), 'legs');
      throw error;
    }
  }

  /**
   * The array `name` was fenced: stop it, then assemble it again (a new lockspace member) once
   * etcd answers, and move what deviceOf handed out to it.
   */
  private rejoin(name: string, why: string): void {
    const entry = this.entries.get(name);
    if (this.closing) return;
    if (entry === undefined) {
      // Fenced while it was being created or restored (not listed yet): the entry, once added,
      // is checked by openChecked; nothing to do here.
      return;
    }
    entry.error = why;
    if (entry.rejoining) return; // the attempt under way checks the array it makes
    entry.rejoining = true;
    this.service.log(`array ${name}: ${why}`);
    const attempt = async (): Promise<void> => {
      try {
        const done = await this.service.exclusive(async () => {
          // Checked inside the one change at a time: a stop may have removed the entry meanwhile.
          if (this.entries.get(name) !== entry || this.closing) return true;
          if (entry.array !== null) {
            const fenced = entry.array;
            entry.array = null;
            await fenced.close().catch(() => {});
          }
          const array = await this.open(entry.record, null);
          if (!array.writesAllowed()) {
            // Fenced again while it assembled (etcd still flaky): stop it and try again.
            await array.close().catch(() => {});
            throw new Error('fenced again while assembling');
          }
          entry.array = array;
          entry.error = null;
          entry.rejoining = false;
          const served = entry.served;
          if (served !== null && served.sizeBytes <= array.sizeBytes) await served.replace(async () => array).catch(() => {});
          return false;
        });
        if (done) return;
        this.service.events.publish('array.assembled', { array: name, legs: entry.record.legs, rejoined: true });
        this.service.log(`array ${name}: assembled again after the fence`);
      } catch (error) {
        entry.error = `${why}; assembling again: ${(error as Error).message}`;
        setTimeout(() => void attempt(), REJOIN_RETRY_MS);
      }
    };
    setTimeout(() => void attempt(), 0);
  }

  /** An entry just added: if its array was fenced before the entry existed, assemble it again. */
  private watchNewEntry(name: string): void {
    const entry = this.entries.get(name);
    if (entry?.array && !entry.array.writesAllowed()) this.rejoin(name, 'fenced while it assembled');
  }

  /**
   * The record and holds follow the legs the array has now: a leg another node added (bound on
   * NEWDISK) joins them, one another node removed or whose add was refused leaves them (its file
   * is free again). Saved when they changed, so a restart assembles what the array holds.
   */
  private syncLegs(name: string): void {
    // One change at a time, as every other change of the state file (queued behind the one that
    // may be running now: an add whose own note brought us here).
    void this.service.exclusive(async () => {
      const entry = this.entries.get(name);
      if (entry === undefined || entry.array === null || entry.array.isStopped || this.closing) return;
      const paths = new Set(entry.array.status().legs.map((leg) => leg.device));
      const holds = entry.holds.filter((hold) => paths.has(hold.path));
      const legs = holds.map((hold) => hold.name);
      if (legs.length === entry.record.legs.length && legs.every((leg, i) => leg === entry.record.legs[i])) return;
      entry.holds = holds;
      entry.record.legs = legs;
      await this.service.saveApplied(`the legs of array "${name}" changed on another node`);
    }).catch((error: unknown) => this.service.log(String((error as Error).message ?? error)));
  }

  private holdsOf(record: ArrayRecord): Hold[] {
    return record.legs.map((leg, i) => ({ path: devicePath(this.service.dataDir, leg, `legs[${i}]`), name: leg, access: 'write' as const, holder: `array:${record.name}` }));
  }

  /** The array `name` and its leg in `slot` (device number); 404 naming `slot` when there is none. */
  private legAt(name: string, slot: number): { entry: ArrayEntry; array: ClusterArray; leg: ArrayStatus['legs'][number] } {
    const entry = this.entry(name);
    const array = this.assembled(name, 'name');
    const leg = array.status().legs.find((l) => l.devNumber === slot);
    if (leg === undefined) throw new ServiceError('ENOENT', `array "${name}" has no leg in slot ${slot}`, 'slot');
    return { entry, array, leg };
  }

  private entry(name: string, field = 'name'): ArrayEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new ServiceError('ENOENT', `no array "${name}"`, field);
    return entry;
  }

  private info(entry: ArrayEntry): ArrayInfo {
    const { record } = entry;
    const lock = record.lock ?? 'in-process';
    const exports = this.service.exportsOf(`array:${record.name}`);
    if (entry.array === null) {
      return { name: record.name, lock, legs: record.legs.map((device, slot) => ({ device, slot, role: null, state: 'faulty' as const, recovering: false })), error: entry.error, exports, state: null };
    }
    const status = entry.array.status();
    const nameOf = new Map(entry.holds.map((hold) => [hold.path, hold.name]));
    const legs = status.legs.map((leg) => ({ device: nameOf.get(leg.device) ?? leg.device, slot: leg.devNumber, role: leg.role, state: leg.state, recovering: leg.recovering }));
    const { name: _name, legs: _legs, raidDisks: _raidDisks, ...fields } = status;
    return { name: record.name, lock, legs, error: entry.error, exports, state: mdstatText(record.name, { ...status, legs: status.legs.map((leg, i) => ({ ...leg, device: legs[i]!.device })) }), ...fields };
  }
}
