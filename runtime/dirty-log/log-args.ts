/**
 * The CTR string a log server receives (dm-log-userspace-base.c builds it): the target's length in
 * sectors, then the log type and its arguments as the table gave them:
 *
 *   <target sectors> core <region_size> [sync|nosync]
 *   <target sectors> disk <dev> <region_size> [sync|nosync]
 *   <target sectors> clustered-core <region_size> [sync|nosync] [block_on_error]
 *   <target sectors> clustered-disk <dev> <region_size> [sync|nosync] [block_on_error]
 *
 * region_size in 512-byte sectors, a power of two from 2 up to the target's length (dm-log.c's
 * rule; cmirrord is laxer, we are not: a region of 3 sectors is a typo). sync: resync every region
 * at the first resume; nosync: every region in sync at once; neither: the disk log's bits decide
 * (a core log starts out of sync). regions = ceil(target / region_size). Unknown words are refused,
 * each refusal naming the word.
 */
/**
 * Regions one log may have: 2^27 (32 MiB of bits in memory per kind, and a 16 MiB disk log), so
 * one CTR cannot take the server's memory; at LVM's 512 KiB regions that is 64 TiB.
 */
export const LOG_MAX_REGIONS = 2 ** 27;

export type LogType = 'core' | 'disk' | 'clustered-core' | 'clustered-disk';
export type SyncMode = 'default' | 'sync' | 'nosync';

export interface LogArgs {
  type: LogType;
  targetSectors: number;
  /** disk types: the log device as named in the table. */
  device: string | null;
  regionSectors: number;
  sync: SyncMode;
  blockOnError: boolean;
  regionCount: number;
  /** The arguments after the target length, as received (STATUS_TABLE and the client's resend). */
  text: string;
}

const TYPES: readonly string[] = ['core', 'disk', 'clustered-core', 'clustered-disk'];
const DECIMAL = /^[1-9][0-9]*$/;

/** The arguments of a CTR string, or why they are refused. */
export function parseLogArgs(ctr: string): LogArgs | string {
  const words = ctr.trim().split(/\s+/).filter((word) => word.length > 0);
  if (words.length < 2) return `expected "<target sectors> <log type> <args...>", got "${ctr}"`;
  const [lengthWord, typeWord, ...args] = words as [string, string, ...string[]];
  if (!DECIMAL.test(lengthWord) || !Number.isSafeInteger(Number(lengthWord))) return `target length "${lengthWord}" is not a positive number of sectors`;
  const targetSectors = Number(lengthWord);
  if (!TYPES.includes(typeWord)) return `unknown log type "${typeWord}" (core, disk, clustered-core, clustered-disk)`;
  const type = typeWord as LogType;
  const onDisk = type === 'disk' || type === 'clustered-disk';
  const clustered = type.startsWith('clustered-');
  const fixed = onDisk ? 2 : 1;
  if (args.length < fixed) {
    return `${type} takes ${onDisk ? '<dev> ' : ''}<region_size> [sync|nosync]${clustered ? ' [block_on_error]' : ''}, got ${args.length} argument${args.length === 1 ? '' : 's'}`;
  }
  const device = onDisk ? args[0]! : null;
  const regionWord = args[fixed - 1]!;
  const regionSectors = Number(regionWord);
  if (!DECIMAL.test(regionWord) || !Number.isSafeInteger(regionSectors)) return `region_size "${regionWord}" is not a number of sectors`;
  if (regionSectors < 2 || (regionSectors & (regionSectors - 1)) !== 0 || regionSectors > 2 ** 30) {
    return `region_size ${regionSectors} must be a power of two from 2 to 2^30 sectors`;
  }
  if (regionSectors > targetSectors) return `region_size ${regionSectors} is larger than the target (${targetSectors} sectors)`;
  let sync: SyncMode = 'default';
  let blockOnError = false;
  for (const word of args.slice(fixed)) {
    if ((word === 'sync' || word === 'nosync') && sync === 'default') sync = word;
    else if (word === 'block_on_error' && clustered && !blockOnError) blockOnError = true;
    else return `unrecognised ${type} argument "${word}"`;
  }
  const regionCount = Math.ceil(targetSectors / regionSectors);
  if (regionCount > LOG_MAX_REGIONS) return `${regionCount} regions; at most ${LOG_MAX_REGIONS} (a larger region_size)`;
  return { type, targetSectors, device, regionSectors, sync, blockOnError, regionCount, text: [typeWord, ...args].join(' ') };
}
