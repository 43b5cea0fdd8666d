/**
 * The log server (cmirrord's role): dirty log instances named by uuid + luid, each request of
 * dm-log-userspace applied to the one it names. Reached in process (a mirror here) or through a
 * socket (server/ulog/); requests arrive checked (header and payload shape, ulog-reader.ts).
 *
 * Instances (dm-log-userspace-luid.txt): CTR makes an instance `inactive`; RESUME makes it `live`
 * (and the instance of the same uuid that was live, the old table's, becomes inactive: the swap
 * of a live and an inactive dm table); POSTSUSPEND makes it `suspended`; DTR destroys exactly the
 * instance named (uuid and luid), never another. A request with luid 0 names the uuid's live
 * instance (as cmirrord matches luid 0). Requests that touch regions need the live instance;
 * GET_REGION_SIZE, GET_SYNC_COUNT and the status lines are answered by any.
 *
 * Errors, as `error` in the reply: -ESRCH no such log (the server restarted and lost it: the
 * client's cue to send CTR and RESUME again; cmirrord says -EINVAL, which a client cannot tell
 * from a bad request), -EINVAL bad arguments or a region past the log or a log not live, -EEXIST
 * that uuid + luid exists already, -ENOENT a log device that does not exist, -EIO a log device
 * that failed. Each refusal is one log line; a refused request changes nothing.
 *
 * Requests for one uuid are applied one at a time in arrival order (a per-uuid mutex: a disk
 * log's FLUSH waits for its fsync while other logs go on).
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import { LocalMutex } from '../locks/local-mutex.ts';
import { ULOG_ERRNO, ulogErrorName } from '../ulog/ulog-errno.ts';
import { decodePair, decodeRegions, decodeString, decodeU64, encodePair, encodeString, encodeU64, ULOG, ulogTypeName } from '../ulog/ulog-frame.ts';
import type { UlogHandler, UlogReply, UlogRequest } from '../ulog/ulog-handler.ts';
import { CoreLog } from './core-log.ts';
import { DiskLog } from './disk-log.ts';
import { ClusteredLog, ORDERED_TYPES } from './clustered-log.ts';
import { parseLogArgs } from './log-args.ts';
import type { Ordering } from './ordering.ts';
import type { RegionLog } from './region-log.ts';

export type LogInstanceState = 'inactive' | 'live' | 'suspended';

export interface LogServerOptions {
  /** Opens the device a disk log names (resolved where the service keeps devices); ENOENT when there is none. */
  openDevice?: (name: string) => Promise<BlockDevice>;
  /** The ordering clustered logs go through (one group per uuid); absent: clustered types are refused. */
  ordering?: Ordering;
  log?: (line: string) => void;
}

export interface LogInstanceInfo {
  uuid: string;
  luid: number;
  type: string;
  table: string;
  regionSectors: number;
  regionCount: number;
  inSyncRegions: number;
  dirtyRegions: number;
  state: LogInstanceState;
  device: string | null;
  deviceState: string;
  /** Clustered logs: the members of the log's group as this server sees them; null for the others. */
  groupMembers: number | null;
}

interface Instance {
  uuid: string;
  luid: number;
  log: RegionLog;
  state: LogInstanceState;
}

class Refusal extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

const NEEDS_LIVE = new Set<number>([ULOG.IS_CLEAN, ULOG.IN_SYNC, ULOG.FLUSH, ULOG.MARK_REGION, ULOG.CLEAR_REGION, ULOG.GET_RESYNC_WORK, ULOG.SET_REGION_SYNC, ULOG.IS_REMOTE_RECOVERING]);

export class LogServer implements UlogHandler {
  private readonly byUuid = new Map<string, Instance[]>();
  private readonly mutexes = new Map<string, LocalMutex>();
  requests = 0;
  refusals = 0;

  constructor(private readonly options: LogServerOptions = {}) {}

  list(): LogInstanceInfo[] {
    const out: LogInstanceInfo[] = [];
    for (const instances of this.byUuid.values()) {
      for (const { uuid, luid, log, state } of instances) {
        const { bits, args } = log;
        out.push({
          uuid, luid, type: args.type, table: args.text, regionSectors: args.regionSectors, regionCount: args.regionCount,
          inSyncRegions: bits.syncCount, dirtyRegions: args.regionCount - bits.clean.setCount, state, device: log.deviceName, deviceState: log.deviceState,
          groupMembers: log.groupMembers ?? null,
        });
      }
    }
    return out;
  }

  async handle(request: UlogRequest): Promise<UlogReply> {
    const { uuid } = request.header;
    let mutex = this.mutexes.get(uuid);
    if (mutex === undefined) this.mutexes.set(uuid, (mutex = new LocalMutex()));
    this.requests += 1;
    try {
      return await mutex.run(() => this.apply(request));
    } catch (error) {
      this.refusals += 1;
      const errno = error instanceof Refusal ? error.errno : errnoOf(error);
      this.say(`log ${uuid}/${request.header.luid}: ${ulogTypeName(request.header.type)} refused (${ulogErrorName(-errno)}): ${error instanceof Error ? error.message : String(error)}`);
      return { error: -errno };
    } finally {
      if (!mutex.locked && (this.byUuid.get(uuid)?.length ?? 0) === 0) this.mutexes.delete(uuid);
    }
  }

  /** Destroys every instance (the server stopping). */
  async close(): Promise<void> {
    const all = [...this.byUuid.values()].flat();
    this.byUuid.clear();
    await Promise.allSettled(all.map((instance) => instance.log.close()));
  }

  private async apply(request: UlogRequest): Promise<UlogReply> {
    const { header, data } = request;
    if (header.type === ULOG.CTR) return this.construct(header.uuid, header.luid, data, header.version);
    const instance = this.find(header.uuid, header.luid);
    const { log } = instance;
    if (NEEDS_LIVE.has(header.type) && instance.state !== 'live') {
      throw new Refusal(ULOG_ERRNO.EINVAL, `the log is ${instance.state}, not live (RESUME it first)`);
    }
    // A clustered log's state changes (and the reads that must see them in order) go through its group.
    if (log instanceof ClusteredLog && ORDERED_TYPES.has(header.type)) return log.ordered(header.type, data);
    const bits = log.bits;
    switch (header.type) {
      case ULOG.DTR:
        this.remove(instance);
        await log.close();
        return { error: 0 };
      case ULOG.PRESUSPEND:
        await log.presuspend();
        return { error: 0 };
      case ULOG.POSTSUSPEND:
        await log.postsuspend();
        instance.state = 'suspended';
        return { error: 0 };
      case ULOG.RESUME:
        await log.resume();
        for (const other of this.byUuid.get(header.uuid) ?? []) if (other !== instance && other.state !== 'inactive') other.state = 'inactive';
        instance.state = 'live';
        return { error: 0 };
      case ULOG.GET_REGION_SIZE:
        return { error: 0, data: encodeU64(log.args.regionSectors) };
      case ULOG.GET_SYNC_COUNT:
        return { error: 0, data: encodeU64(bits.syncCount) };
      // IS_CLEAN and IN_SYNC answer an i64 0 or 1 (the same bytes as a u64).
      case ULOG.IS_CLEAN:
        return { error: 0, data: encodeU64(bits.isClean(this.region(log, data)) ? 1 : 0) };
      case ULOG.IN_SYNC:
        return { error: 0, data: encodeU64(bits.inSync(this.region(log, data)) ? 1 : 0) };
      case ULOG.MARK_REGION:
        for (const region of this.regions(log, data)) bits.mark(region);
        return { error: 0 };
      case ULOG.CLEAR_REGION:
        // A disk log clears only regions in sync (LogBits.cleanOnlyInSync); a clustered one
        // checks in ClusteredLog; a core log keeps no bit past a crash.
        for (const region of this.regions(log, data)) bits.clear(region);
        return { error: 0 };
      case ULOG.FLUSH:
        for (const region of this.regions(log, data)) bits.mark(region); // integrated_flush: the marks ride along
        await log.flush();
        return { error: 0 };
      case ULOG.GET_RESYNC_WORK: {
        const region = bits.resyncWork();
        return { error: 0, data: encodePair(region === null ? 0 : 1, region ?? 0) };
      }
      case ULOG.SET_REGION_SYNC: {
        const [region, inSync] = decodePair(data) as [number, number];
        this.checkRegion(log, region);
        bits.setSync(region, inSync !== 0);
        return { error: 0 };
      }
      case ULOG.STATUS_INFO:
        return { error: 0, data: encodeString(log.statusInfo()) };
      case ULOG.STATUS_TABLE:
        return { error: 0, data: encodeString(log.statusTable()) };
      case ULOG.IS_REMOTE_RECOVERING:
        this.region(log, data);
        // A local log has no other node recovering: nothing below region_count waits.
        return { error: 0, data: encodePair(0, log.args.regionCount) };
      default:
        throw new Refusal(ULOG_ERRNO.EINVAL, `request type ${header.type} is not served`);
    }
  }

  private async construct(uuid: string, luid: number, data: Uint8Array, version: number): Promise<UlogReply> {
    const text = decodeString(data) ?? '';
    const args = parseLogArgs(text);
    if (typeof args === 'string') throw new Refusal(ULOG_ERRNO.EINVAL, args);
    const instances = this.byUuid.get(uuid) ?? [];
    if (instances.some((instance) => instance.luid === luid)) throw new Refusal(ULOG_ERRNO.EEXIST, `log ${uuid} with luid ${luid} exists already`);
    let device: BlockDevice | null = null;
    if (args.device !== null) {
      if (this.options.openDevice === undefined) throw new Refusal(ULOG_ERRNO.EINVAL, 'this server keeps no disk logs (no devices)');
      device = await this.options.openDevice(args.device);
    }
    let log: RegionLog;
    try {
      if (args.type === 'core') log = await CoreLog.create(args);
      else if (args.type === 'disk') log = await DiskLog.create(args, device!, args.device!);
      else if (this.options.ordering === undefined) throw new Refusal(ULOG_ERRNO.EINVAL, `${args.type} logs need a cluster group, and this server has none`);
      else {
        const store = args.type === 'clustered-core' ? await CoreLog.create(args) : await DiskLog.create(args, device!, args.device!);
        log = new ClusteredLog(uuid, store, this.options.ordering);
      }
    } catch (error) {
      await device?.close().catch(() => {});
      throw error;
    }
    instances.push({ uuid, luid, log, state: 'inactive' });
    this.byUuid.set(uuid, instances);
    this.say(`log ${uuid}/${luid}: ${args.type} of ${args.regionCount} regions of ${args.regionSectors} sectors constructed (inactive until RESUME)`);
    // Like cmirrord: a disk log names its device back (version 2 clients read it).
    return { error: 0, data: args.device !== null && version > 1 ? encodeString(args.device) : new Uint8Array(0) };
  }

  private find(uuid: string, luid: number): Instance {
    const instances = this.byUuid.get(uuid) ?? [];
    const found = luid === 0 ? instances.find((instance) => instance.state !== 'inactive') ?? (instances.length === 1 ? instances[0] : undefined) : instances.find((instance) => instance.luid === luid);
    if (found === undefined) throw new Refusal(ULOG_ERRNO.ESRCH, `no log ${uuid}${luid === 0 ? '' : ` with luid ${luid}`}`);
    return found;
  }

  private remove(instance: Instance): void {
    const left = (this.byUuid.get(instance.uuid) ?? []).filter((other) => other !== instance);
    if (left.length === 0) this.byUuid.delete(instance.uuid);
    else this.byUuid.set(instance.uuid, left);
  }

  private region(log: RegionLog, data: Uint8Array): number {
    const region = decodeU64(data) as number;
    this.checkRegion(log, region);
    return region;
  }

  /** Every region of a list, all checked before any is applied. */
  private regions(log: RegionLog, data: Uint8Array): number[] {
    const regions = decodeRegions(data) as number[];
    for (const region of regions) this.checkRegion(log, region);
    return regions;
  }

  private checkRegion(log: RegionLog, region: number): void {
    if (region >= log.args.regionCount) throw new Refusal(ULOG_ERRNO.EINVAL, `region ${region} is past the log's ${log.args.regionCount} regions`);
  }

  private say(line: string): void {
    try {
      this.options.log?.(line);
    } catch {
      // a log sink that throws loses its line
    }
  }
}

function errnoOf(error: unknown): number {
  if (error instanceof BlockError) {
    const errno = (ULOG_ERRNO as Record<string, number>)[error.code];
    if (errno !== undefined) return errno;
    return error.code === 'ENOTSUP' ? ULOG_ERRNO.EOPNOTSUPP : ULOG_ERRNO.EIO;
  }
  return ULOG_ERRNO.EIO;
}
