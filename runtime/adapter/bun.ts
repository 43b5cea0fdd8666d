/** Bun adapter: fallocate through bun:ffi. */
import { LIBC_PATH, punchWith, type RuntimeAdapter } from './types.ts';

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;

async function bindFallocate(): Promise<Fallocate | null> {
  if (process.platform !== 'linux') return null;
  try {
    const { dlopen, FFIType } = await import('bun:ffi');
    const lib = dlopen(LIBC_PATH, {
      fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
    });
    return (fd, mode, off, len) => lib.symbols.fallocate(fd, mode, off, len) as number;
  } catch {
    return null;
  }
}

const bunGlobal = (globalThis as unknown as { Bun: { version: string } }).Bun;

export const adapter: RuntimeAdapter = {
  name: 'bun',
  version: bunGlobal.version,
  punchHole: punchWith(await bindFallocate()),
};
