/**
 * The disk log's on-disk form (dm-log.c), little-endian:
 *
 *   0     magic u32        0x4D695272 ("MiRr" read as a little-endian word: bytes 72 52 69 4D)
 *   4     version u32      2 (1 is read as 2, as the kernel does on little-endian machines)
 *   8     nr_regions u64   the regions the bits below cover
 *   16    (unused up to 1024; written as zeros)
 *   1024  clean bits       one per region, 1 = clean; region i is bit i % 8 of byte i / 8
 *                          (32-bit little-endian words: ceil(regions / 32) * 4 bytes)
 *
 * The log is read and written as one buffer from byte 0, `bufferBytes` long: 1024 plus the bits,
 * rounded up to the device's logical block. A device smaller than that cannot hold the log.
 */
import { getU64, setU64 } from '../le64.ts';

export const DISK_LOG_MAGIC = 0x4d695272;
export const DISK_LOG_VERSION = 2;
export const DISK_LOG_BITS_OFFSET = 1024;
export const DISK_LOG_HEADER_BYTES = 16;

export function bitsetBytes(regionCount: number): number {
  return Math.ceil(regionCount / 32) * 4;
}

export function bufferBytes(regionCount: number, logicalBlockBytes: number): number {
  const bytes = DISK_LOG_BITS_OFFSET + bitsetBytes(regionCount);
  return Math.ceil(bytes / logicalBlockBytes) * logicalBlockBytes;
}

/** What the first 16 bytes of a log device hold. */
export type DiskLogHeader =
  | { kind: 'fresh' }
  | { kind: 'log'; version: number; nrRegions: number }
  | { kind: 'foreign'; why: string };

export function decodeDiskLogHeader(bytes: Uint8Array): DiskLogHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, DISK_LOG_HEADER_BYTES);
  const magic = view.getUint32(0, true);
  if (magic !== DISK_LOG_MAGIC) {
    if (bytes.subarray(0, DISK_LOG_HEADER_BYTES).every((byte) => byte === 0)) return { kind: 'fresh' };
    return { kind: 'foreign', why: `not a dirty log (magic 0x${magic.toString(16).padStart(8, '0')}, a disk log has 0x${DISK_LOG_MAGIC.toString(16)})` };
  }
  const version = view.getUint32(4, true);
  if (version !== 1 && version !== DISK_LOG_VERSION) return { kind: 'foreign', why: `incompatible disk log version ${version} (2 is served)` };
  const nrRegions = getU64(view, 8);
  if (nrRegions === null) return { kind: 'foreign', why: 'nr_regions beyond 2^53' };
  return { kind: 'log', version, nrRegions };
}

export function encodeDiskLogHeader(nrRegions: number, out: Uint8Array): void {
  out.fill(0, 0, DISK_LOG_BITS_OFFSET);
  const view = new DataView(out.buffer, out.byteOffset, DISK_LOG_HEADER_BYTES);
  view.setUint32(0, DISK_LOG_MAGIC, true);
  view.setUint32(4, DISK_LOG_VERSION, true);
  setU64(view, 8, nrRegions);
}
