/**
 * Positional file I/O loops for FileDevice, sync and async, over a small syscall table that tests
 * can replace (to force short reads and writes). The loops (STYLE 13, after random-access-file's
 * `_read`/`_write`) keep calling pread/pwrite until the whole buffer moved: the kernel may return
 * fewer bytes than asked (signals, 2 GiB per-call cap, network filesystems), and each call here is
 * also capped at MAX_CALL_BYTES because Node's bindings take an int32 length. A read that returns
 * 0 before the end means the file shrank under us: EIO, never a silently short buffer.
 *
 * OS errors become BlockError EIO carrying the errno name and the original error as `cause`.
 */
import fs from 'node:fs';
import { BlockError } from '../errors.ts';

/** Largest length passed to one pread/pwrite call (Node's bindings take int32 lengths). */
export const MAX_CALL_BYTES = 1 << 30;

/** The syscalls FileDevice uses; each returns the byte count the OS moved (may be short). */
export interface FileSyscalls {
  readSync(fd: number, target: Uint8Array, lengthBytes: number, positionBytes: number): number;
  writeSync(fd: number, data: Uint8Array, lengthBytes: number, positionBytes: number): number;
  read(fd: number, target: Uint8Array, lengthBytes: number, positionBytes: number): Promise<number>;
  write(fd: number, data: Uint8Array, lengthBytes: number, positionBytes: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
}

export const nodeSyscalls: FileSyscalls = {
  readSync: (fd, target, lengthBytes, positionBytes) => fs.readSync(fd, target, 0, lengthBytes, positionBytes),
  writeSync: (fd, data, lengthBytes, positionBytes) => fs.writeSync(fd, data, 0, lengthBytes, positionBytes),
  read: (fd, target, lengthBytes, positionBytes) =>
    new Promise((resolve, reject) =>
      fs.read(fd, target, 0, lengthBytes, positionBytes, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))),
    ),
  write: (fd, data, lengthBytes, positionBytes) =>
    new Promise((resolve, reject) =>
      fs.write(fd, data, 0, lengthBytes, positionBytes, (error, bytesWritten) => (error ? reject(error) : resolve(bytesWritten))),
    ),
  fdatasync: (fd) => new Promise((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()))),
};

/** Where a transfer goes, for error messages. */
export interface IoPlace {
  device: string;
  fd: number;
}

export function readFullySync(sys: FileSyscalls, place: IoPlace, target: Uint8Array, offsetBytes: number): void {
  let doneBytes = 0;
  while (doneBytes < target.length) {
    const piece = slice(target, doneBytes);
    let movedBytes: number;
    try {
      movedBytes = sys.readSync(place.fd, piece, piece.length, offsetBytes + doneBytes);
    } catch (error) {
      throw ioError('read', place, offsetBytes, target.length, error);
    }
    if (movedBytes === 0) throw endOfFile(place, offsetBytes, target.length, doneBytes);
    doneBytes += movedBytes;
  }
}

export function writeFullySync(sys: FileSyscalls, place: IoPlace, data: Uint8Array, offsetBytes: number): void {
  let doneBytes = 0;
  while (doneBytes < data.length) {
    const piece = slice(data, doneBytes);
    let movedBytes: number;
    try {
      movedBytes = sys.writeSync(place.fd, piece, piece.length, offsetBytes + doneBytes);
    } catch (error) {
      throw ioError('write', place, offsetBytes, data.length, error);
    }
    if (movedBytes === 0) throw noProgress(place, offsetBytes, data.length);
    doneBytes += movedBytes;
  }
}

export async function readFully(sys: FileSyscalls, place: IoPlace, target: Uint8Array, offsetBytes: number): Promise<void> {
  let doneBytes = 0;
  while (doneBytes < target.length) {
    const piece = slice(target, doneBytes);
    let movedBytes: number;
    try {
      movedBytes = await sys.read(place.fd, piece, piece.length, offsetBytes + doneBytes);
    } catch (error) {
      throw ioError('read', place, offsetBytes, target.length, error);
    }
    if (movedBytes === 0) throw endOfFile(place, offsetBytes, target.length, doneBytes);
    doneBytes += movedBytes;
  }
}

export async function writeFully(sys: FileSyscalls, place: IoPlace, data: Uint8Array, offsetBytes: number): Promise<void> {
  let doneBytes = 0;
  while (doneBytes < data.length) {
    const piece = slice(data, doneBytes);
    let movedBytes: number;
    try {
      movedBytes = await sys.write(place.fd, piece, piece.length, offsetBytes + doneBytes);
    } catch (error) {
      throw ioError('write', place, offsetBytes, data.length, error);
    }
    if (movedBytes === 0) throw noProgress(place, offsetBytes, data.length);
    doneBytes += movedBytes;
  }
}

export async function datasync(sys: FileSyscalls, place: IoPlace): Promise<void> {
  try {
    await sys.fdatasync(place.fd);
  } catch (error) {
    throw ioError('fdatasync', place, undefined, undefined, error);
  }
}

/** The unsent rest of `bytes` from `doneBytes`, at most MAX_CALL_BYTES; no copy, no view on the hot path. */
function slice(bytes: Uint8Array, doneBytes: number): Uint8Array {
  if (doneBytes === 0 && bytes.length <= MAX_CALL_BYTES) return bytes;
  return bytes.subarray(doneBytes, Math.min(bytes.length, doneBytes + MAX_CALL_BYTES));
}

export function ioError(syscall: string, place: IoPlace, offsetBytes: number | undefined, lengthBytes: number | undefined, cause: unknown): BlockError {
  return new BlockError('EIO', `${syscall} failed: ${errnoName(cause)}`, { offsetBytes, lengthBytes, device: place.device, cause });
}

function endOfFile(place: IoPlace, offsetBytes: number, lengthBytes: number, doneBytes: number): BlockError {
  return new BlockError('EIO', `unexpected end of file after ${doneBytes} bytes (the file shrank under the device?)`, {
    offsetBytes, lengthBytes, device: place.device,
  });
}

function noProgress(place: IoPlace, offsetBytes: number, lengthBytes: number): BlockError {
  return new BlockError('EIO', 'write made no progress', { offsetBytes, lengthBytes, device: place.device });
}

/** Deno reports some errors without `code`, only "… (os error N)"; these are the ones we map. */
const OS_ERROR_NAMES: Record<number, string> = { 2: 'ENOENT', 5: 'EIO', 9: 'EBADF', 13: 'EACCES', 17: 'EEXIST', 21: 'EISDIR', 22: 'EINVAL', 27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS' };

/** The errno name of an OS error from node:fs on any of the three runtimes, or 'UNKNOWN'. */
export function errnoName(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  const message = error instanceof Error ? error.message : String(error);
  const match = /\(os error (\d+)\)/.exec(message);
  if (match) return OS_ERROR_NAMES[Number(match[1])] ?? `errno ${match[1]}`;
  return 'UNKNOWN';
}
