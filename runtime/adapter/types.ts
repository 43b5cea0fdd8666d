/**
 * Everything that differs between Node, Bun and Deno sits behind this one interface, implemented
 * once per runtime in node.ts, bun.ts and deno.ts. Nothing else in blockcore branches on the
 * runtime: it calls `loadAdapter()` and uses what it gets.
 *
 * What differs today: how native code is reached (koffi on Node, bun:ffi on Bun, Deno.dlopen on
 * Deno) for the one syscall node:fs lacks, fallocate(PUNCH_HOLE). Positional file I/O goes
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
}

/** fallocate(2) mode bits, from linux/falloc.h. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const PUNCH_HOLE_MODE = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
export const LIBC_PATH = 'libc.so.6';

/** Wraps a raw fallocate binding so every adapter reports failure the same way. */
export function punchWith(fallocate: ((fd: number, mode: number, off: number, len: number) => number) | null) {
  return (fd: number, offsetBytes: number, lengthBytes: number): boolean => {
    if (fallocate === null) return false;
    if (lengthBytes === 0) return true;
    return fallocate(fd, PUNCH_HOLE_MODE, offsetBytes, lengthBytes) === 0;
  };
}
