/** Node adapter: fallocate and lseek through koffi (Node has no built-in FFI; koffi ships its binary in the npm package). */
import { createRequire } from 'node:module';
import { LIBC_PATH, POOL_TRANSFER_BYTES, punchWith, seekWith, type RuntimeAdapter } from './types.ts';

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;
type Lseek = (fd: number, off: number, whence: number) => number | bigint;

function bind<T>(signature: string): T | null {
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi');
    return koffi.load(LIBC_PATH).func(signature) as T;
  } catch {
    return null;
  }
}

export const adapter: RuntimeAdapter = {
  name: 'node',
  version: process.versions.node,
  punchHole: punchWith(bind<Fallocate>('int fallocate(int fd, int mode, int64_t off, int64_t len)')),
  ...seekWith(bind<Lseek>('int64_t lseek(int fd, int64_t off, int whence)')),
  poolTransferBytes: POOL_TRANSFER_BYTES,
};
