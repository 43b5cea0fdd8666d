/**
 * The canonical ABI pieces every interface of the component shares (the exact layouts:
 * component-model's CanonicalABI.md, "flattening" and "storing").
 *
 * Results. Every export whose result flattens to more than one core value (any `result<...>`,
 * any returned `list`) returns the address of a return area instead, where the host reads the
 * result: one static area, reused by every call (calls into a component instance never overlap).
 * A `result<T, error-code>` is a u8 case (0 ok, 1 err) then its payload at the alignment of the
 * larger of T and the error: offset 1 for bool, 4 for u32, handles, options of u32 and lists,
 * 8 for s64 and records holding a u64. `error-code` is an enum of fewer than 256 cases: a u8.
 *
 * Lists the host passes in arrive in blocks it got from cabi_realloc; the callee owns them, so
 * every export releases its argument lists before it returns. A list an export returns stays
 * allocated until the host has copied it out and calls the export's cabi_post_* function, which
 * releases it (`returnList` records it; a later export releases it first if the host never
 * called the post function, so nothing leaks). Fixed-size results (the NBD headers) come from a
 * static buffer and need no post function. Empty lists, in or out, point at a static EMPTY_LIST
 * and never touch the heap, so no host's way of passing an empty list can free a block it does
 * not own.
 */
import { allocate, deallocate } from './heap';

// ---- error-code (wit/blockcore-core.wit, types.error-code) ----
export const OUT_OF_RANGE: u8 = 0;
export const INVALID_ARGUMENT: u8 = 1;
export const OUT_OF_MEMORY: u8 = 2;

// @ts-ignore: decorator
@inline const OK: u8 = 0;
// @ts-ignore: decorator
@inline const ERR: u8 = 1;
// @ts-ignore: decorator
@inline const RETURN_AREA_BYTES: i32 = 32;
// @ts-ignore: decorator
@inline const FIXED_OUT_BYTES: i32 = 32;

/** The return area: big enough for result<nbd-batch, error-code> (24 bytes), 8-byte aligned. */
export const RETURN_AREA: usize = memory.data(RETURN_AREA_BYTES, 8);
/** Bytes of a fixed-size returned list (an NBD header, at most 28 bytes). */
export const FIXED_OUT: usize = memory.data(FIXED_OUT_BYTES, 8);

/** Where every empty list points (nothing is ever read or written there). */
const EMPTY_LIST: usize = memory.data(8, 8);

/** The list returned by the last export, released by its post function. */
let pendingPtr: usize = 0;
let pendingBytes: u64 = 0;

/** Writes `result::err(code)` (payload at `payloadOffset`); returns the return area. */
export function err(code: u8, payloadOffset: usize): usize {
  store<u8>(RETURN_AREA, ERR);
  store<u8>(RETURN_AREA + payloadOffset, code);
  return RETURN_AREA;
}

/** Writes the ok case; the caller stores the payload. */
// @ts-ignore: decorator
@inline export function ok(): usize {
  store<u8>(RETURN_AREA, OK);
  return RETURN_AREA;
}

export function okBool(value: bool): usize {
  store<u8>(RETURN_AREA, OK);
  store<u8>(RETURN_AREA, value ? 1 : 0, 1);
  return RETURN_AREA;
}

export function okU32(value: u32): usize {
  store<u8>(RETURN_AREA, OK);
  store<u32>(RETURN_AREA, value, 4);
  return RETURN_AREA;
}

/** ok(option<u32>) from a kernel's f64 position, -1 meaning none. */
export function okOptionU32(position: f64): usize {
  store<u8>(RETURN_AREA, OK);
  if (position < 0) {
    store<u8>(RETURN_AREA, 0, 4);
  } else {
    store<u8>(RETURN_AREA, 1, 4);
    store<u32>(RETURN_AREA, <u32>position, 8);
  }
  return RETURN_AREA;
}

/** Writes a list (ptr, len) at `offset` of the return area. */
// @ts-ignore: decorator
@inline export function storeList(offset: usize, ptr: usize, length: u32): void {
  store<u32>(RETURN_AREA + offset, <u32>ptr);
  store<u32>(RETURN_AREA + offset, length, 4);
}

/** A block for a list of `bytes` bytes (EMPTY_LIST for none); 0 when memory is full. */
export function allocateList(bytes: u64): usize {
  return bytes == 0 ? EMPTY_LIST : allocate(bytes);
}

/** Releases a list's block (an argument from cabi_realloc, or one from allocateList). */
export function releaseList(ptr: usize, lengthBytes: u64): void {
  if (lengthBytes != 0) deallocate(ptr, lengthBytes);
}

/** Notes a returned list for the post function, releasing one the host left behind. */
export function returnList(ptr: usize, lengthBytes: u64): void {
  releaseReturned();
  if (lengthBytes == 0) return;
  pendingPtr = ptr;
  pendingBytes = lengthBytes;
}

/** Every cabi_post_* function: releases the list the export returned. */
export function releaseReturned(): void {
  if (pendingPtr == 0) return;
  deallocate(pendingPtr, pendingBytes);
  pendingPtr = 0;
  pendingBytes = 0;
}

/**
 * cabi_realloc: the host allocates argument lists through it (oldPtr 0). The canonical ABI
 * gives it no way to fail, so a list that cannot fit in the rest of the 4 GiB traps here, before
 * the call it was meant for starts: the one trap left, and only for an argument no call could
 * take anyway. Alignment up to 64 is honoured (the canonical ABI asks for 8 at most).
 */
export function cabi_realloc(oldPtr: usize, oldBytes: usize, alignBytes: usize, newBytes: usize): usize {
  if (alignBytes > 64) unreachable();
  const old = oldPtr != 0 && oldBytes != 0;
  if (old && ((<u64>oldBytes + 63) >> 6) == ((<u64>newBytes + 63) >> 6)) return oldPtr;
  const block = allocateList(<u64>newBytes);
  if (block == 0) unreachable();
  if (old) {
    memory.copy(block, oldPtr, min(oldBytes, newBytes));
    deallocate(oldPtr, <u64>oldBytes);
  }
  return block;
}
