/**
 * What a device may hold after a power cut, judged only from what its caller saw (the BlockDevice
 * contract), for test/power-loss.test.ts (the model itself) and the clone power-loss trial.
 *
 * The caller records, in one sequence, when it called each write-like operation and when it saw it
 * resolve, and when it called each flush and saw it resolve. A write is durable when it resolved
 * before a flush was called that then resolved, or when it is a FUA write that resolved. After a
 * cut, a 512-byte sector may hold:
 *   - with a durable write to it: that write (the last such one called), or any write to it that
 *     had not resolved before that one was called (a later or overlapping write may have landed,
 *     whole or in this sector only);
 *   - with none: what it held when the trace began (`base`), or any write to it.
 * Kinds: 'write' puts down tagged content (clone-crash-records.ts fillWriteSector, keyed by the
 * op's id); 'zero' puts down zeros (a discard on a device whose discards zero); 'hint' is a discard
 * whose range is unspecified afterwards (a clone's): zeros, or whatever `alsoAllowed` accepts.
 * Nothing else is ever allowed.
 */
import { fillWriteSector, SECTOR_BYTES, taggedWriteIndex } from './clone-crash-records.ts';

export type TracedKind = 'write' | 'zero' | 'hint';

export interface TracedOp {
  id: number;
  kind: TracedKind;
  offsetBytes: number;
  lengthBytes: number;
  fua: boolean;
  issueSeq: number;
  /** Infinity until seen resolved. */
  doneSeq: number;
}

export class DurabilityTrace {
  private seq = 0;
  /** Writes seen resolved before this seq are durable (the latest-called flush that resolved). */
  private durableBeforeSeq = -1;
  private readonly bySector: TracedOp[][];
  readonly ops: TracedOp[] = [];
  flushesDone = 0;

  constructor(readonly sectorCount: number) {
    this.bySector = Array.from({ length: sectorCount }, () => []);
  }

  /** Records the call of a write-like operation; pass the result to done() when it resolves. */
  issue(kind: TracedKind, id: number, offsetBytes: number, lengthBytes: number, fua = false): TracedOp {
    const op: TracedOp = { id, kind, offsetBytes, lengthBytes, fua, issueSeq: this.seq++, doneSeq: Infinity };
    const first = offsetBytes / SECTOR_BYTES;
    const end = (offsetBytes + lengthBytes) / SECTOR_BYTES;
    if (!Number.isInteger(first) || !Number.isInteger(end) || end > this.sectorCount) throw new Error(`traced op ${id}: range ${offsetBytes}+${lengthBytes} is not whole sectors of the device`);
    for (let sector = first; sector < end; sector++) this.bySector[sector]!.push(op);
    this.ops.push(op);
    return op;
  }

  done(op: TracedOp): void {
    op.doneSeq = this.seq++;
  }

  /** Records the call of a flush; pass the result to flushDone() when it resolves. */
  flushIssued(): number {
    return this.seq++;
  }

  flushDone(issueSeq: number): void {
    this.seq++;
    this.flushesDone++;
    this.durableBeforeSeq = Math.max(this.durableBeforeSeq, issueSeq);
  }

  isDurable(op: TracedOp): boolean {
    return op.doneSeq !== Infinity && (op.fua || op.doneSeq < this.durableBeforeSeq);
  }

  opsAt(sector: number): readonly TracedOp[] {
    return this.bySector[sector]!;
  }

  /** The operations whose content `sector` may hold after a cut, and whether its base content may stay. */
  allowedAt(sector: number): { ops: TracedOp[]; baseAllowed: boolean; lastDurable: TracedOp | undefined } {
    const ops = this.bySector[sector]!;
    let lastDurable: TracedOp | undefined;
    for (const op of ops) if (this.isDurable(op) && (lastDurable === undefined || op.issueSeq > lastDurable.issueSeq)) lastDurable = op;
    if (lastDurable === undefined) return { ops: [...ops], baseAllowed: true, lastDurable };
    const durable = lastDurable;
    return { ops: ops.filter((op) => op === durable || op.doneSeq > durable.issueSeq), baseAllowed: false, lastDurable };
  }
}

export interface SectorJudge {
  trace: DurabilityTrace;
  /** Seeds the tagged content of 'write' ops (fillWriteSector). */
  contentSeed: number;
  /** Accepts other content where a 'hint' op is allowed (e.g. anything ever written there). */
  alsoAllowed?: (sector: number, bytes: Uint8Array) => boolean;
}

/** Why `bytes` (512) may not be what `sector` holds after a cut, or null when it may. */
export function judgeSector(judge: SectorJudge, sector: number, bytes: Uint8Array, base: Uint8Array, scratch = new Uint8Array(SECTOR_BYTES)): string | null {
  const { ops, baseAllowed, lastDurable } = judge.trace.allowedAt(sector);
  if (baseAllowed && sameBytes(bytes, base)) return null;
  const tagged = taggedWriteIndex(bytes, judge.contentSeed, sector);
  if (tagged >= 0 && sameBytes(bytes, fillWriteSector(scratch, judge.contentSeed, tagged, sector))) {
    if (ops.some((op) => op.kind === 'write' && op.id === tagged)) return null;
  }
  const zero = isZero(bytes);
  if (zero && ops.some((op) => op.kind !== 'write')) return null;
  if (ops.some((op) => op.kind === 'hint') && judge.alsoAllowed?.(sector, bytes)) return null;
  const what = sameBytes(bytes, base) ? 'its base content' : tagged >= 0 ? `write #${tagged}` : zero ? 'zeros' : 'unknown bytes';
  const shown = judge.trace.opsAt(sector).slice(-6).map((op) => `${op.kind} #${op.id}${op.fua ? ' fua' : ''} issued ${op.issueSeq} done ${op.doneSeq}`);
  return `sector ${sector} holds ${what}; ` + (lastDurable ? `the last durable op to it is #${lastDurable.id} (${lastDurable.kind}, issued ${lastDurable.issueSeq})` : 'no durable op to it') +
    `; ops to it: ${shown.join(', ') || 'none'}`;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
