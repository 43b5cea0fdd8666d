/**
 * copy_file_range on a thread of its own, for bun.ts: bun:ffi has no asynchronous calls, and a
 * large in-kernel copy in the calling turn would hold the event loop for milliseconds. Requests
 * are [id, inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes]; each answer is [id, result],
 * result as FileRangeCopy reports it (bytes copied, or -1). The fds are the process's, so they
 * are valid here as they are on the main thread.
 */
import { dlopen, FFIType } from 'bun:ffi';
import { copySyncWith, LIBC_PATH, type CopyFileRange } from './types.ts';

interface WorkerScope {
  onmessage: ((event: { data: number[] }) => void) | null;
  postMessage(message: number[]): void;
}
declare const self: WorkerScope;

const lib = dlopen(LIBC_PATH, {
  copy_file_range: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.u32], returns: FFIType.i64_fast },
});
const copy = copySyncWith(lib.symbols.copy_file_range as unknown as CopyFileRange);

self.onmessage = (event) => {
  const [id, inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes] = event.data as [number, number, number, number, number, number];
  let result: number;
  try {
    result = copy(inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes);
  } catch {
    result = -1;
  }
  self.postMessage([id, result]);
};
