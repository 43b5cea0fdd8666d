/**
 * The component's allocator. In the plain module the host owns linear memory above heap_base and
 * runs the allocator (runtime/wasm/free-list.ts); a component owns its memory, so this file does
 * the same job inside: a first-fit free list over [heap start, memory end), kept in address
 * order and coalesced on release, 64-byte granules (bitmaps want 64-byte alignment, and every
 * list the canonical ABI moves is aligned to 8 at most). Memory grows by whole pages, at least
 * MIN_GROW_PAGES at a time, when nothing fits.
 *
 * Callers pass the size back on release (like free-list.ts: every allocation's size is known to
 * its owner), so blocks carry no header. A free block keeps its size (u32) and the address of the
 * next free block (u32, 0 for none) in its first 8 bytes.
 *
 * Nothing here traps: `allocate` returns 0 when memory cannot grow (wasm32 stops at 4 GiB, an
 * engine may stop earlier), and callers turn that into the `out-of-memory` error. Sizes and ends
 * are computed in u64, so a block that ends at 4 GiB does not wrap.
 */

// @ts-ignore: decorator
@inline const GRANULE_BYTES: u64 = 64;
// @ts-ignore: decorator
@inline const PAGE_BYTES: u64 = 65536;
// @ts-ignore: decorator
@inline const MAX_MEMORY_BYTES: u64 = 1 << 32;
/** Least growth (1 MiB), so many small allocations do not grow memory one page at a time. */
// @ts-ignore: decorator
@inline const MIN_GROW_PAGES: i32 = 16;
/** Free-block fields. */
// @ts-ignore: decorator
@inline const AT_SIZE: usize = 0;
// @ts-ignore: decorator
@inline const AT_NEXT: usize = 4;
// @ts-ignore: decorator
@inline const FREE_HEADER_BYTES: u64 = 8;

/** First free block, 0 for none. */
let freeHead: usize = 0;
/** Start of the heap (64-byte aligned __heap_base), 0 until the first allocation. */
let heapStart: u64 = 0;
/** End of the highest block ever handed out: bytes above it are still the zeros memory.grow gave. */
let highWaterBytes: u64 = 0;

// @ts-ignore: decorator
@inline function granules(bytes: u64): u64 {
  return (bytes + GRANULE_BYTES - 1) & ~(GRANULE_BYTES - 1);
}

// @ts-ignore: decorator
@inline function memoryBytes(): u64 {
  return <u64>memory.size() * PAGE_BYTES;
}

// @ts-ignore: decorator
@inline function sizeOf(block: usize): u64 {
  return <u64>load<u32>(block, AT_SIZE);
}

// @ts-ignore: decorator
@inline function nextOf(block: usize): usize {
  return <usize>load<u32>(block, AT_NEXT);
}

// @ts-ignore: decorator
@inline function writeBlock(block: usize, sizeBytes: u64, next: usize): void {
  store<u32>(block, <u32>sizeBytes, AT_SIZE);
  store<u32>(block, <u32>next, AT_NEXT);
}

// @ts-ignore: decorator
@inline function setNext(prev: usize, next: usize): void {
  if (prev == 0) freeHead = next;
  else store<u32>(prev, <u32>next, AT_NEXT);
}

function start(): void {
  heapStart = granules(<u64>__heap_base);
  highWaterBytes = heapStart;
  const end = memoryBytes();
  if (end > heapStart) release(<usize>heapStart, end - heapStart);
}

/**
 * Puts [ptr, ptr + sizeBytes) (whole granules) on the free list, merged with the free blocks it
 * touches. A free block is at most 4 GiB - 64 bytes (the heap starts above 0), so sizes fit a u32.
 */
function release(ptr: usize, sizeBytes: u64): void {
  let prev: usize = 0;
  let next = freeHead;
  while (next != 0 && next < ptr) {
    prev = next;
    next = nextOf(next);
  }
  let block = ptr;
  let blockBytes = sizeBytes;
  if (next != 0 && <u64>ptr + blockBytes == <u64>next) {
    const absorbed = next;
    blockBytes += sizeOf(absorbed);
    next = nextOf(absorbed);
    store<u64>(absorbed, 0); // its header is free memory now: keep free memory above the high-water mark zero
  }
  if (prev != 0 && <u64>prev + sizeOf(prev) == <u64>ptr) {
    block = prev;
    blockBytes += sizeOf(prev);
    writeBlock(block, blockBytes, next);
    return;
  }
  writeBlock(block, blockBytes, next);
  setNext(prev, block);
}

/** First fit: the block's address, or 0 when no free block is large enough. */
function take(sizeBytes: u64): usize {
  let prev: usize = 0;
  let block = freeHead;
  while (block != 0) {
    const blockBytes = sizeOf(block);
    if (blockBytes >= sizeBytes) {
      const next = nextOf(block);
      if (blockBytes == sizeBytes) {
        setNext(prev, next);
      } else {
        const rest = block + <usize>sizeBytes;
        writeBlock(rest, blockBytes - sizeBytes, next);
        setNext(prev, rest);
      }
      const end = <u64>block + sizeBytes;
      if (end > highWaterBytes) highWaterBytes = end;
      return block;
    }
    prev = block;
    block = nextOf(block);
  }
  return 0;
}

/** Free bytes that end exactly at the end of memory (the last free block, if it reaches there). */
function freeBytesAtEnd(end: u64): u64 {
  let last: usize = 0;
  for (let block = freeHead; block != 0; block = nextOf(block)) last = block;
  return last != 0 && <u64>last + sizeOf(last) == end ? sizeOf(last) : 0;
}

/** Grows memory so that a block of sizeBytes fits; false when the engine or wasm32 refuses. */
function grow(sizeBytes: u64): bool {
  const end = memoryBytes();
  const neededBytes = sizeBytes - freeBytesAtEnd(end);
  const neededPages = <i32>((neededBytes + PAGE_BYTES - 1) / PAGE_BYTES);
  const roomPages = <i32>((MAX_MEMORY_BYTES - end) / PAGE_BYTES);
  if (neededPages > roomPages) return false;
  const wantedPages = min(max(neededPages, MIN_GROW_PAGES), roomPages);
  let grantedPages = wantedPages;
  if (memory.grow(wantedPages) < 0) {
    if (wantedPages == neededPages || memory.grow(neededPages) < 0) return false;
    grantedPages = neededPages;
  }
  release(<usize>end, <u64>grantedPages * PAGE_BYTES);
  return true;
}

/** A block of at least `bytes` bytes (0 still takes a granule), 64-byte aligned; 0 when memory is full. */
export function allocate(bytes: u64): usize {
  if (heapStart == 0) start();
  if (bytes > MAX_MEMORY_BYTES) return 0;
  const sizeBytes = granules(max<u64>(bytes, 1));
  const block = take(sizeBytes);
  if (block != 0) return block;
  return grow(sizeBytes) ? take(sizeBytes) : 0;
}

/**
 * Like allocate, with the block's first `bytes` bytes zeroed. Only bytes below the high-water
 * mark, and the free-block header the block starts with, can be non-zero: memory above the mark
 * holds nothing but the headers of free blocks (release clears a header it merges away).
 */
export function allocateZeroed(bytes: u64): usize {
  const dirtyBefore = highWaterBytes;
  const block = allocate(bytes);
  if (block == 0) return 0;
  const dirtyEnd = min<u64>(<u64>block + bytes, max<u64>(dirtyBefore, <u64>block + FREE_HEADER_BYTES));
  if (dirtyEnd > <u64>block) memory.fill(block, 0, <usize>(dirtyEnd - <u64>block));
  return block;
}

/** Returns a block from allocate(bytes) (the same `bytes`). */
export function deallocate(block: usize, bytes: u64): void {
  release(block, granules(max<u64>(bytes, 1)));
}
