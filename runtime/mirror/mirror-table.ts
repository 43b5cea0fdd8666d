/**
 * The mirror's table line in dm-raid1's form:
 *
 *   mirror <log type> <#log args> <log args...> <#legs> <leg> <offset> ... [<#features> <feature>...]
 *
 * log types: `core <region_size> [sync|nosync]`, `disk <dev> <region_size> [sync|nosync]`, and
 * `userspace <uuid> [integrated_flush] <type> <type args...>` (a log kept by a log server: the
 * service's, over its socket). Legs: a device name and the sector where the mirror starts on it.
 * Features: handle_errors (a failing leg is taken out of the mirror; without it dm only records
 * the error), keep_log (needs handle_errors). 1 to 9 legs (dm's DM_KCOPYD_MAX_REGIONS + 1; a
 * mirror whose other legs were removed is one leg, a linear device). Each refusal names the word.
 */
export type MirrorLogType = 'core' | 'disk' | 'userspace';

export interface MirrorLeg {
  device: string;
  offsetSectors: number;
}

export interface MirrorTable {
  logType: MirrorLogType;
  logArgs: string[];
  legs: MirrorLeg[];
  handleErrors: boolean;
  keepLog: boolean;
}

export const MIRROR_MAX_LEGS = 9;
const COUNT = /^(0|[1-9][0-9]*)$/;

export function parseMirrorTable(line: string): MirrorTable | string {
  const words = line.trim().split(/\s+/).filter((word) => word.length > 0);
  let at = 0;
  const next = (what: string): string | null => words[at++] ?? (missing ??= what, null);
  let missing: string | null = null;
  if (words[0] === 'mirror') at = 1;
  const logType = next('the log type');
  if (logType === null) return `the table ends before ${missing}`;
  if (logType !== 'core' && logType !== 'disk' && logType !== 'userspace') return `unknown mirror log type "${logType}" (core, disk, userspace)`;
  const countWord = next('the number of log arguments');
  if (countWord === null) return `the table ends before ${missing}`;
  if (!COUNT.test(countWord)) return `the number of log arguments "${countWord}" is not a count`;
  const logCount = Number(countWord);
  if (at + logCount > words.length) return `insufficient mirror log arguments: ${logCount} announced, ${words.length - at} left`;
  const logArgs = words.slice(at, at + logCount);
  at += logCount;
  const logShape = checkLogArgs(logType, logArgs);
  if (logShape !== null) return logShape;
  const legWord = next('the number of legs');
  if (legWord === null) return `the table ends before ${missing}`;
  if (!COUNT.test(legWord) || Number(legWord) < 1 || Number(legWord) > MIRROR_MAX_LEGS) return `invalid number of legs "${legWord}" (1 to ${MIRROR_MAX_LEGS})`;
  const legs: MirrorLeg[] = [];
  for (let i = 0; i < Number(legWord); i++) {
    const device = words[at++];
    const offset = words[at++];
    if (device === undefined || offset === undefined) return `too few leg arguments: ${legWord} legs need a device and an offset each`;
    if (!COUNT.test(offset) || !Number.isSafeInteger(Number(offset))) return `leg ${device}: offset "${offset}" is not a number of sectors`;
    legs.push({ device, offsetSectors: Number(offset) });
  }
  let handleErrors = false;
  let keepLog = false;
  if (at < words.length) {
    const featureWord = words[at++]!;
    if (!COUNT.test(featureWord)) return `the number of features "${featureWord}" is not a count`;
    const features = words.slice(at, at + Number(featureWord));
    if (features.length < Number(featureWord)) return `${featureWord} features announced, ${features.length} given`;
    at += features.length;
    for (const feature of features) {
      if (feature === 'handle_errors' && !handleErrors) handleErrors = true;
      else if (feature === 'keep_log' && !keepLog) keepLog = true;
      else return `unrecognised mirror feature "${feature}" (handle_errors, keep_log)`;
    }
    if (keepLog && !handleErrors) return 'keep_log needs handle_errors';
  }
  if (at < words.length) return `too many mirror arguments: "${words.slice(at).join(' ')}"`;
  return { logType, logArgs, legs, handleErrors, keepLog };
}

function checkLogArgs(type: MirrorLogType, args: string[]): string | null {
  if (type === 'core' && (args.length < 1 || args.length > 2)) return `core log takes <region_size> [sync|nosync], got ${args.length} arguments`;
  if (type === 'disk' && (args.length < 2 || args.length > 3)) return `disk log takes <dev> <region_size> [sync|nosync], got ${args.length} arguments`;
  if (type === 'userspace' && args.length < 3) return `userspace log takes <uuid> [integrated_flush] <log type> <log args...>, got ${args.length} arguments`;
  return null;
}

/** The table in dm's words (dmsetup table prints the log's own table first). */
export function formatMirrorTable(table: MirrorTable): string {
  const features = [...(table.handleErrors ? ['handle_errors'] : []), ...(table.keepLog ? ['keep_log'] : [])];
  return [
    'mirror', table.logType, String(table.logArgs.length), ...table.logArgs,
    String(table.legs.length), ...table.legs.flatMap((leg) => [leg.device, String(leg.offsetSectors)]),
    ...(features.length > 0 ? [String(features.length), ...features] : []),
  ].join(' ');
}
