/**
 * Bench-only peer: the flat bitmap kernels the summary replaced (no summary: a search scans every
 * word from its start, a set or clear touches only its byte), compiled here at bench start from
 * the AssemblyScript below with the project's asc options, so "flat" is the scan as it shipped
 * (SIMD, four interleaved streams), not a weaker one. Nothing of this is in runtime/ or the
 * shipped module.
 *
 * The peer owns its instance and memory: one bitmap of `wordCount` words at `heap_base`, written
 * by `bytes()` (a view, valid until the next grow, which only `create` does). FlatRegionBitmap
 * puts the JavaScript that RegionBitmap.set/clear ran before the summary in front of it.
 */
const PAGE_BYTES = 65536;
/** Imported by name at run time: asc's own type declarations redefine globals such as console. */
const ASC_MODULE = 'assemblyscript/asc';

interface AscOutput {
  write(text: string): boolean;
}

interface Asc {
  main(argv: string[], options: {
    readFile(name: string): string | null;
    writeFile(name: string, contents: Uint8Array | string): void;
    listFiles(): string[];
    stdout: AscOutput;
    stderr: AscOutput;
  }): Promise<{ error: Error | null }>;
}

/**
 * The flat kernels as they were before the summary (assembly/bitmap.ts and words.ts), SIMD build,
 * over a raw word pointer: nextSet reads up to the next 64 KiB chunk boundary in one stream,
 * then whole chunks as four interleaved 16 KiB streams (near 13-14 GB/s here against ~11 for one
 * stream), then the rest; set and clear touch one byte.
 */
const FLAT_SOURCE = `
// @ts-ignore: decorator
@inline const STEP_WORDS: u32 = 16;
// @ts-ignore: decorator
@inline const STREAM_WORDS: u32 = 2048;
// @ts-ignore: decorator
@inline const CHUNK_WORDS: u32 = 4 * STREAM_WORDS;

// @ts-ignore: decorator
@inline function wordAt(ptr: usize, w: u32): usize {
  return ptr + (<usize>w << 3);
}

// @ts-ignore: decorator
@inline function stepAny(p: usize): bool {
  return v128.any_true(v128.or(
    v128.or(v128.or(v128.load(p), v128.load(p, 16)), v128.or(v128.load(p, 32), v128.load(p, 48))),
    v128.or(v128.or(v128.load(p, 64), v128.load(p, 80)), v128.or(v128.load(p, 96), v128.load(p, 112))),
  ));
}

// @ts-ignore: decorator
@inline function chunkAny(ptr: usize, w: u32): bool {
  const streamBytes = <usize>STREAM_WORDS << 3;
  let a = wordAt(ptr, w);
  const stop = a + streamBytes;
  for (; a < stop; a += 32) {
    const b = a + streamBytes;
    const c = b + streamBytes;
    const d = c + streamBytes;
    const x = v128.or(v128.or(v128.load(a), v128.load(a, 16)), v128.or(v128.load(b), v128.load(b, 16)));
    const y = v128.or(v128.or(v128.load(c), v128.load(c, 16)), v128.or(v128.load(d), v128.load(d, 16)));
    if (v128.any_true(v128.or(x, y))) return true;
  }
  return false;
}

// @ts-ignore: decorator
@inline function sequentialNonZero(ptr: usize, w: u32, endWord: u32): u32 {
  while (endWord - w >= STEP_WORDS && !stepAny(wordAt(ptr, w))) w += STEP_WORDS;
  while (w < endWord && load<u64>(wordAt(ptr, w)) == 0) w++;
  return w;
}

function firstNonZeroWord(ptr: usize, w: u32, endWord: u32): u32 {
  const boundary = (w + CHUNK_WORDS - 1) & ~(CHUNK_WORDS - 1);
  const prologueEnd = boundary < endWord ? boundary : endWord;
  w = sequentialNonZero(ptr, w, prologueEnd);
  if (w < prologueEnd) return w;
  while (endWord - w >= CHUNK_WORDS && !chunkAny(ptr, w)) w += CHUNK_WORDS;
  return sequentialNonZero(ptr, w, endWord);
}

export function heap_base(): usize {
  return __heap_base;
}

export function bitmap_next_set(ptr: usize, fromBit: u32, lastBit: u32): f64 {
  let w = fromBit >>> 6;
  const lastWord = lastBit >>> 6;
  let x = load<u64>(wordAt(ptr, w)) & (u64.MAX_VALUE << <u64>(fromBit & 63));
  if (x == 0) {
    w = firstNonZeroWord(ptr, w + 1, lastWord + 1);
    if (w > lastWord) return -1;
    x = load<u64>(wordAt(ptr, w));
  }
  const bit = (w << 6) + <u32>ctz<u64>(x);
  return bit <= lastBit ? <f64>bit : -1;
}

export function bitmap_set(ptr: usize, bit: u32): i32 {
  const p = ptr + (bit >>> 3);
  const old: u32 = load<u8>(p);
  store<u8>(p, <u8>(old | (<u32>1 << (bit & 7))));
  return (old >>> (bit & 7)) & 1;
}

export function bitmap_clear(ptr: usize, bit: u32): i32 {
  const p = ptr + (bit >>> 3);
  const old: u32 = load<u8>(p);
  store<u8>(p, <u8>(old & ~(<u32>1 << (bit & 7))));
  return (old >>> (bit & 7)) & 1;
}
`;

interface FlatExports {
  readonly memory: WebAssembly.Memory;
  heap_base(): number;
  bitmap_next_set(ptr: number, fromBit: number, lastBit: number): number;
  bitmap_set(ptr: number, bit: number): number;
  bitmap_clear(ptr: number, bit: number): number;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** Compiles the flat kernels (SIMD build, -O3, like the project's) with the asc API, in memory, once. */
function compileFlat(): Promise<WebAssembly.Module> {
  compiled ??= compile();
  return compiled;
}

async function compile(): Promise<WebAssembly.Module> {
  const files: Record<string, string> = { 'flat.ts': FLAT_SOURCE };
  const outputs: Record<string, Uint8Array> = {};
  let errors = '';
  const asc = ((await import(ASC_MODULE)) as { default: Asc }).default;
  const { error } = await asc.main(['flat.ts', '--outFile', 'flat.wasm', '--runtime', 'stub', '-O3', '--noAssert', '--converge', '--enable', 'simd'], {
    readFile: (name: string) => files[name] ?? null,
    writeFile: (name: string, contents: Uint8Array | string) => {
      outputs[name] = typeof contents === 'string' ? new TextEncoder().encode(contents) : contents;
    },
    listFiles: () => [],
    stdout: { write: () => true },
    stderr: {
      write: (text: string) => {
        errors += text;
        return true;
      },
    },
  });
  const binary = outputs['flat.wasm'];
  if (error || binary === undefined) throw new Error(`flat peer: asc failed: ${error?.message ?? 'no output'}\n${errors}`);
  return new WebAssembly.Module(binary);
}

export class FlatBitmap {
  readonly lastBit: number;

  private constructor(
    readonly exports: FlatExports,
    readonly ptr: number,
    readonly bitCount: number,
  ) {
    this.lastBit = bitCount - 1;
  }

  /** A flat bitmap of `bitCount` bits (a multiple of 64), all clear. */
  static async create(bitCount: number): Promise<FlatBitmap> {
    const exports = new WebAssembly.Instance(await compileFlat(), {}).exports as unknown as FlatExports;
    const ptr = Math.ceil(exports.heap_base() / 64) * 64;
    const needBytes = ptr + bitCount / 8 - exports.memory.buffer.byteLength;
    if (needBytes > 0) exports.memory.grow(Math.ceil(needBytes / PAGE_BYTES));
    return new FlatBitmap(exports, ptr, bitCount);
  }

  bytes(): Uint8Array {
    return new Uint8Array(this.exports.memory.buffer, this.ptr, this.bitCount / 8);
  }

  nextSet(from: number): number {
    return from > this.lastBit ? -1 : this.exports.bitmap_next_set(this.ptr, from, this.lastBit);
  }
}

interface FlatSlot {
  readonly owner: FlatFacade;
  readonly ptr: number;
  live: boolean;
}

/** A stand-in for the facade's WasmBuffer: opaque, its pointer kept in a WeakMap like the facade's. */
class FlatBuffer {
  constructor(readonly byteLength: number) {}
}

const flatSlots = new WeakMap<FlatBuffer, FlatSlot>();

/**
 * What set and clear went through before the summary, Kernels' side: live-instance check, slot
 * lookup with owner and liveness checks, whole-word check, bit check, then the kernel. Mirrors
 * runtime/wasm/kernels.ts as it was, so the comparison prices the summary, not the JavaScript.
 */
class FlatFacade {
  #exports: FlatExports | null;

  constructor(exports: FlatExports) {
    this.#exports = exports;
  }

  wrap(ptr: number, byteLength: number): FlatBuffer {
    const buffer = new FlatBuffer(byteLength);
    flatSlots.set(buffer, { owner: this, ptr, live: true });
    return buffer;
  }

  bitSet(buffer: FlatBuffer, bit: number): boolean {
    const ptr = this.#bits(buffer, 'bitSet');
    checkBit('bit', bit, buffer.byteLength * 8);
    return this.#exports!.bitmap_set(ptr, bit) === 1;
  }

  bitClear(buffer: FlatBuffer, bit: number): boolean {
    const ptr = this.#bits(buffer, 'bitClear');
    checkBit('bit', bit, buffer.byteLength * 8);
    return this.#exports!.bitmap_clear(ptr, bit) === 1;
  }

  #bits(buffer: FlatBuffer, what: string): number {
    if (this.#exports === null) throw new Error('these kernels were released');
    const slot = flatSlots.get(buffer);
    if (slot === undefined || slot.owner !== this) throw new Error(`${what}: the buffer does not belong to these kernels`);
    if (!slot.live) throw new Error(`${what}: the buffer was freed`);
    if (buffer.byteLength % 8 !== 0) throw new Error(`${what}: a bitmap buffer holds whole 8-byte words`);
    return slot.ptr;
  }
}

function checkBit(what: string, bit: number, capacityBits: number): void {
  if (bit >>> 0 === bit && bit < capacityBits) return;
  throw new Error(`${what} ${bit} is outside bits [0, ${capacityBits})`);
}

/**
 * RegionBitmap's set and clear as they were before the summary (its own bit and released checks,
 * then the facade), over a FlatBitmap's words.
 */
export class FlatRegionBitmap {
  readonly bitCount: number;
  #facade: FlatFacade | null;
  #words: FlatBuffer;
  #setCount = 0;

  constructor(flat: FlatBitmap) {
    this.bitCount = flat.bitCount;
    this.#facade = new FlatFacade(flat.exports);
    this.#words = this.#facade.wrap(flat.ptr, flat.bitCount / 8);
  }

  get setCount(): number {
    return this.#setCount;
  }

  set(bit: number): boolean {
    this.#checkBit(bit);
    const changed = !this.#k().bitSet(this.#words, bit);
    if (changed) this.#setCount++;
    return changed;
  }

  clear(bit: number): boolean {
    this.#checkBit(bit);
    const changed = this.#k().bitClear(this.#words, bit);
    if (changed) this.#setCount--;
    return changed;
  }

  #k(): FlatFacade {
    if (this.#facade === null) throw new Error('the bitmap was released');
    return this.#facade;
  }

  #checkBit(bit: number): void {
    if (bit >>> 0 === bit && bit < this.bitCount) return;
    throw new Error(`bit ${bit} is outside the bitmap's ${this.bitCount} bits`);
  }
}
