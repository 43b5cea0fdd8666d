/**
 * What the clone crash child and its parent share: the content of every sector a write puts
 * down, and the line records the child prints on stdout.
 *
 * Sector content. Write `writeIndex` puts at absolute sector `sector` a 512-byte block that is a
 * pure function of (seed, writeIndex, sector): a 16-byte tag (magic, writeIndex, sector, seed)
 * then seeded random bytes. So the parent can tell, for every sector it reads back after a
 * crash, which write (if any) put it there, and check the whole sector against a regeneration.
 *
 * Records, one a line, written synchronously so each is out before the step it announces:
 *   R <sizeBytes> <regionBytes>               the clone is open; I/O starts now
 *   W <writeIndex> <offsetBytes> <lengthBytes> <fua 0|1>   about to call write()
 *   D <writeIndex>                            that write resolved
 *   f <flushIndex>                            about to call flush()
 *   F <flushIndex>                            that flush resolved
 *   E <message>                               the child failed (it exits 1); never expected
 * A record's position in the stream (its sequence number) orders it against the others: a write
 * whose D comes before a flush's f, and that flush's F arrived, is durable.
 */
import { Prng } from '../../runtime/prng.ts';

export const SECTOR_BYTES = 512;
export const TAG_BYTES = 16;
/** "CRSH", little-endian, at the start of every sector a write puts down. */
export const SECTOR_MAGIC = 0x48535243;

/** A 32-bit mix of three words (seeds the per-sector random tail). */
function mix(seed: number, writeIndex: number, sector: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (writeIndex + 0x632be5ab), 0xc2b2ae35) >>> 0;
  h = Math.imul(h ^ (h >>> 16) ^ sector, 0x27d4eb2f) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

/** Fills one sector (`target`, 512 bytes) with what write `writeIndex` puts at `sector`. */
export function fillWriteSector(target: Uint8Array, seed: number, writeIndex: number, sector: number): Uint8Array {
  const view = new DataView(target.buffer, target.byteOffset, SECTOR_BYTES);
  view.setUint32(0, SECTOR_MAGIC, true);
  view.setUint32(4, writeIndex >>> 0, true);
  view.setUint32(8, sector >>> 0, true);
  view.setUint32(12, seed >>> 0, true);
  new Prng(mix(seed, writeIndex, sector)).fill(target.subarray(TAG_BYTES, SECTOR_BYTES));
  return target;
}

/** The whole buffer of write `writeIndex` at [offsetBytes, offsetBytes + lengthBytes). */
export function writeData(seed: number, writeIndex: number, offsetBytes: number, lengthBytes: number): Uint8Array {
  const data = new Uint8Array(lengthBytes);
  const firstSector = offsetBytes / SECTOR_BYTES;
  for (let i = 0; i < lengthBytes / SECTOR_BYTES; i++) {
    fillWriteSector(data.subarray(i * SECTOR_BYTES, (i + 1) * SECTOR_BYTES), seed, writeIndex, firstSector + i);
  }
  return data;
}

/** The write index whose tag (for this seed and sector) a sector carries, or -1 for none. */
export function taggedWriteIndex(sectorBytes: Uint8Array, seed: number, sector: number): number {
  const view = new DataView(sectorBytes.buffer, sectorBytes.byteOffset, SECTOR_BYTES);
  if (view.getUint32(0, true) !== SECTOR_MAGIC) return -1;
  if (view.getUint32(8, true) !== sector >>> 0 || view.getUint32(12, true) !== seed >>> 0) return -1;
  return view.getUint32(4, true);
}

export type CrashRecord =
  | { kind: 'R'; seq: number; sizeBytes: number; regionBytes: number }
  | { kind: 'W'; seq: number; writeIndex: number; offsetBytes: number; lengthBytes: number; fua: boolean }
  | { kind: 'D'; seq: number; writeIndex: number }
  | { kind: 'f' | 'F'; seq: number; flushIndex: number }
  | { kind: 'E'; seq: number; message: string };

/** A record as the child writes it (its sequence number is its position in the stream). */
export type CrashRecordBody = CrashRecord extends infer R ? (R extends CrashRecord ? Omit<R, 'seq'> : never) : never;

export function formatRecord(record: CrashRecordBody): string {
  switch (record.kind) {
    case 'R':
      return `R ${record.sizeBytes} ${record.regionBytes}\n`;
    case 'W':
      return `W ${record.writeIndex} ${record.offsetBytes} ${record.lengthBytes} ${record.fua ? 1 : 0}\n`;
    case 'D':
      return `D ${record.writeIndex}\n`;
    case 'f':
    case 'F':
      return `${record.kind} ${record.flushIndex}\n`;
    case 'E':
      return `E ${record.message.replace(/\s+/g, ' ')}\n`;
  }
}

/**
 * Parses the child's stdout. Only complete lines count: a kill may cut the last one short, and
 * a record that never fully came out announces a step that never started. Throws on a malformed
 * complete line (a bug in the child).
 */
export function parseRecords(text: string): CrashRecord[] {
  const end = text.lastIndexOf('\n');
  const lines = end < 0 ? [] : text.slice(0, end).split('\n');
  return lines.map((line, seq): CrashRecord => {
    const words = line.split(' ');
    const n = (i: number) => {
      const value = Number(words[i]);
      if (!Number.isSafeInteger(value) || value < 0) throw new Error(`crash record ${seq} "${line}": word ${i} is not a count`);
      return value;
    };
    const arity = (count: number) => {
      if (words.length !== count) throw new Error(`crash record ${seq} "${line}": expected ${count} words`);
    };
    switch (words[0]) {
      case 'R':
        arity(3);
        return { kind: 'R', seq, sizeBytes: n(1), regionBytes: n(2) };
      case 'W':
        arity(5);
        return { kind: 'W', seq, writeIndex: n(1), offsetBytes: n(2), lengthBytes: n(3), fua: words[4] === '1' };
      case 'D':
        arity(2);
        return { kind: 'D', seq, writeIndex: n(1) };
      case 'f':
      case 'F':
        arity(2);
        return { kind: words[0], seq, flushIndex: n(1) };
      case 'E':
        return { kind: 'E', seq, message: words.slice(1).join(' ') };
      default:
        throw new Error(`crash record ${seq} "${line}": unknown kind`);
    }
  });
}
