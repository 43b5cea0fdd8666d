/**
 * Everything that differs between Node, Bun and Deno sits behind this one interface, implemented
 * once per runtime in node.ts, bun.ts and deno.ts. Nothing else in blockcore branches on the
 * runtime: it calls `loadAdapter()` and uses what it gets.
 *
 * What differs today: how native code is reached (koffi on Node, bun:ffi on Bun, Deno.dlopen on
 * Deno) for the syscalls node:fs lacks: fallocate(PUNCH_HOLE) and lseek(SEEK_DATA / SEEK_HOLE). Positional file I/O goes
 * through node:fs on all three: each runtime implements it natively and it measured fastest
 * (see runtime/devices/file-device.ts).
 */
export type RuntimeName = 'node' | 'bun' | 'deno';

export interface RuntimeAdapter {
  readonly name: RuntimeName;
  /** Runtime version string, for benchmark and log headers. */
  readonly version: string;
  /**
   * Deallocate `[offsetBytes, offsetBytes + lengthBytes)` of the open file `fd` while keeping its
   * size (fallocate PUNCH_HOLE | KEEP_SIZE). Afterwards the range reads as zeros. Returns false
   * when this host cannot punch holes (no FFI permission, not Linux, or the filesystem refuses):
   * the caller then writes zeros instead. Throws only for bugs (bad arguments).
   */
  punchHole(fd: number, offsetBytes: number, lengthBytes: number): boolean;
  /**
   * lseek(fd, offsetBytes, SEEK_DATA): the first offset >= offsetBytes that holds data, or -1 when
   * there is none before the end of the file (ENXIO) or the host cannot tell (no FFI, not Linux,
   * the filesystem refuses). Moves the fd's file position, which positional I/O ignores.
   */
  seekData(fd: number, offsetBytes: number): number;
  /**
   * lseek(fd, offsetBytes, SEEK_HOLE): the first offset >= offsetBytes in a hole (the file size
   * counts as one), or -1 when offsetBytes is at or past the end (ENXIO) or the host cannot tell.
   * So for an offset inside the file, -1 always means "cannot tell".
   */
  seekHole(fd: number, offsetBytes: number): number;
  /**
   * FileDevice in 'sync' mode moves reads and writes of at least this many bytes through the
   * runtime's thread pool (in parallel with the event loop) rather than in the calling turn:
   * worth it where async file I/O is cheap next to a large copy (Node, Bun), not where it is not
   * (Deno: measured slower, so Infinity). See runtime/devices/file-device.ts.
   */
  readonly poolTransferBytes: number;
}

/** The default `poolTransferBytes` where the thread pool pays for large transfers. */
export const POOL_TRANSFER_BYTES = 128 * 1024;

/** fallocate(2) mode bits, from linux/falloc.h. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const PUNCH_HOLE_MODE = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
export const LIBC_PATH = 'libc.so.6';

/** lseek(2) whence values for sparse files, from linux/fs.h. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

type Lseek = (fd: number, offset: number, whence: number) => number | bigint;

/** Wraps a raw lseek binding (null when unavailable) into seekData / seekHole. */
export function seekWith(lseek: Lseek | null): Pick<RuntimeAdapter, 'seekData' | 'seekHole'> {
  const seek = (whence: number) => (fd: number, offsetBytes: number): number => {
    if (lseek === null) return -1;
    const result = Number(lseek(fd, offsetBytes, whence));
    return result >= 0 ? result : -1;
  };
  return { seekData: seek(SEEK_DATA), seekHole: seek(SEEK_HOLE) };
}

/** Wraps a raw fallocate binding so every adapter reports failure the same way. */
export function punchWith(fallocate: ((fd: number, mode: number, off: number, len: number) => number) | null) {
  return (fd: number, offsetBytes: number, lengthBytes: number): boolean => {
    if (fallocate === null) return false;
    if (lengthBytes === 0) return true;
    return fallocate(fd, PUNCH_HOLE_MODE, offsetBytes, lengthBytes) === 0;
  };
}
