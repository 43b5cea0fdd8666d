/**
 * Deno adapter: fallocate, lseek, flock and copy_file_range through Deno.dlopen (needs
 * --allow-ffi; without it discards write zeros, block status reports everything as data, file
 * copies go through memory and the data directory's lock falls back to the pid alone).
 * copy_file_range is bound twice: as is, for small copies in the calling turn, and `nonblocking`,
 * which Deno runs on another thread and answers with a promise.
 */
import { copiedOrFailed, copySyncWith, fileRangeCopySupported, LIBC_PATH, lockWith, punchWith, seekWith, type CopyFileRange, type FileRangeCopy, type Flock, type RuntimeAdapter } from './types.ts';
import { userBufferReads } from './user-buffer-reads.ts';

interface DenoFfi {
  version: { deno: string };
  build: { os: string; arch: string };
  dlopen(path: string, symbols: Record<string, { name?: string; parameters: string[]; result: string; nonblocking?: boolean }>): {
    symbols: Record<string, (...args: unknown[]) => unknown>;
  };
}
const Deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;
type Lseek = (fd: number, off: number, whence: number) => number | bigint;

function bindLibc(): { fallocate: Fallocate; lseek: Lseek } | null {
  if (Deno.build.os !== 'linux') return null;
  try {
    const lib = Deno.dlopen(LIBC_PATH, {
      fallocate: { parameters: ['i32', 'i32', 'i64', 'i64'], result: 'i32' },
      lseek: { parameters: ['i32', 'i64', 'i32'], result: 'i64' },
    });
    return {
      fallocate: (fd, mode, off, len) => lib.symbols.fallocate!(fd, mode, off, len) as number,
      lseek: (fd, off, whence) => lib.symbols.lseek!(fd, off, whence) as number | bigint,
    };
  } catch {
    return null;
  }
}

/** flock, bound on its own (see RuntimeAdapter.tryLockFile). */
function bindFlock(): Flock | null {
  if (Deno.build.os !== 'linux') return null;
  try {
    const lib = Deno.dlopen(LIBC_PATH, { flock: { parameters: ['i32', 'i32'], result: 'i32' } });
    return (fd, operation) => lib.symbols.flock!(fd, operation) as number;
  } catch {
    return null;
  }
}

const libc = bindLibc();

const COPY_FILE_RANGE_PARAMETERS = ['i32', 'buffer', 'i32', 'buffer', 'usize', 'u32'];

function fileRangeCopy(): FileRangeCopy | null {
  const arch = Deno.build.arch === 'x86_64' ? 'x64' : Deno.build.arch === 'aarch64' ? 'arm64' : Deno.build.arch;
  if (!fileRangeCopySupported(Deno.build.os, arch)) return null;
  try {
    const lib = Deno.dlopen(LIBC_PATH, {
      copyFileRange: { name: 'copy_file_range', parameters: COPY_FILE_RANGE_PARAMETERS, result: 'i64' },
      copyFileRangeOffLoop: { name: 'copy_file_range', parameters: COPY_FILE_RANGE_PARAMETERS, result: 'i64', nonblocking: true },
    });
    const offLoop = lib.symbols.copyFileRangeOffLoop as (...args: unknown[]) => Promise<number | bigint>;
    return {
      copySync: copySyncWith(lib.symbols.copyFileRange as CopyFileRange),
      copy(inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes) {
        // Cells of its own per call: calls run concurrently on other threads.
        const inCell = new BigInt64Array([BigInt(inOffsetBytes)]);
        const outCell = new BigInt64Array([BigInt(outOffsetBytes)]);
        return offLoop(inFd, inCell, outFd, outCell, BigInt(lengthBytes), 0).then(copiedOrFailed, () => -1);
      },
    };
  } catch {
    return null;
  }
}

export const adapter: RuntimeAdapter = {
  name: 'deno',
  version: Deno.version.deno,
  punchHole: punchWith(libc?.fallocate ?? null),
  ...seekWith(libc?.lseek ?? null),
  // Deno's async fs.read of 256 KiB measured much slower than a synchronous one (an NBD export
  // copied at 0.47x of nbdkit instead of 0.80x), so every transfer stays in the calling turn.
  poolTransferBytes: Infinity,
  // Deno's node:net hides a socket's fd, so zero-copy sends cannot be placed beside its writes.
  socketSend: null,
  nbdRequestDecoder: 'ts', // bench frame-decode-nbd: the kernel batch is at best even here (server/nbd/request-codec.ts)
  socketReads: userBufferReads,
  threadSockets: null, // types.ts ThreadSockets: node:net takes no descriptor here
  tryLockFile: lockWith(bindFlock()),
  fileRangeCopy: fileRangeCopy(),
};
