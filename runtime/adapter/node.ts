/** Node adapter: fallocate through koffi (Node has no built-in FFI; koffi ships its binary in the npm package). */
import { createRequire } from 'node:module';
import { LIBC_PATH, punchWith, type RuntimeAdapter } from './types.ts';

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;

function bindFallocate(): Fallocate | null {
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi');
    return koffi.load(LIBC_PATH).func('int fallocate(int fd, int mode, int64_t off, int64_t len)');
  } catch {
    return null;
  }
}

export const adapter: RuntimeAdapter = {
  name: 'node',
  version: process.versions.node,
  punchHole: punchWith(bindFallocate()),
};
