/** Bun adapter: fallocate and lseek through bun:ffi. */
import { LIBC_PATH, POOL_TRANSFER_BYTES, punchWith, seekWith, type RuntimeAdapter } from './types.ts';

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;
type Lseek = (fd: number, off: number, whence: number) => number | bigint;

async function bindLibc(): Promise<{ fallocate: Fallocate; lseek: Lseek } | null> {
  if (process.platform !== 'linux') return null;
  try {
    const { dlopen, FFIType } = await import('bun:ffi');
    const lib = dlopen(LIBC_PATH, {
      fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
      // i64_fast: a number while the result is a safe integer (always, for a file offset).
      lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
    });
    return {
      fallocate: (fd, mode, off, len) => lib.symbols.fallocate(fd, mode, off, len) as number,
      lseek: (fd, off, whence) => lib.symbols.lseek(fd, off, whence) as number | bigint,
    };
  } catch {
    return null;
  }
}

const bunGlobal = (globalThis as unknown as { Bun: { version: string } }).Bun;
const libc = await bindLibc();

export const adapter: RuntimeAdapter = {
  name: 'bun',
  version: bunGlobal.version,
  punchHole: punchWith(libc?.fallocate ?? null),
  ...seekWith(libc?.lseek ?? null),
  poolTransferBytes: POOL_TRANSFER_BYTES,
};
