/**
 * The frame facade: typed calls over assembly/frame.ts (layouts, batch validation and decoding,
 * encoding). The kernel module is the one definition of each layout: the constants below are
 * read from its exported globals, never restated, except the verdict names, which are checked
 * against the kernel's codes when a batch is created.
 *
 * NbdRequestBatch owns a private Kernels instance with two buffers allocated at creation (the
 * receive window and the record table) and allocates nothing after, so its memory never grows
 * and the views it keeps over those two buffers stay valid for its life (STYLE 2 forbids views
 * across calls that may grow memory; none here may). One decode copies up to `windowBytes` of
 * the receive buffer into the window, makes one call and leaves the records in `records`, valid
 * until the next decode. Whether that beats decoding in TypeScript depends on the runtime: see
 * server/nbd/request-codec.ts and `npm run bench -- frame`.
 */
import { BlockError, isByteCount } from '../errors.ts';
import { Kernels, pointerOf, rawExportsOf, type KernelExports, type KernelFlavor, type WasmBuffer } from './kernels.ts';

/** NBD request verdicts in the kernel's check order; index = code (assembly/frame.ts). */
export const NBD_VERDICTS = [
  'ok', 'bad-magic', 'unknown-command', 'unknown-flags', 'fua-not-advertised', 'no-hole-misplaced', 'df-misplaced',
  'req-one-misplaced', 'fast-zero-misplaced', 'read-only', 'flush-not-advertised', 'trim-not-advertised',
  'write-zeroes-not-advertised', 'block-status-not-negotiated', 'flush-not-empty', 'out-of-range', 'offset-misaligned',
  'length-misaligned', 'too-long', 'block-status-empty',
] as const;
export type NbdVerdict = (typeof NBD_VERDICTS)[number];

/** Word indexes of one NBD request record (RECORD_WORDS u32 each). */
export const NBD_RECORD = { verdict: 0, flags: 1, type: 2, cookieHigh: 3, cookieLow: 4, offsetHigh: 5, offsetLow: 6, lengthBytes: 7 } as const;
export const RECORD_WORDS = 8;
/** Headers per decode unless asked otherwise. */
export const DEFAULT_CAPACITY_RECORDS = 32;
const TWO_32 = 2 ** 32;
/** High word of 2^53: offsets from there up are reported as -1 (out of range for any export). */
const SAFE_HIGH_LIMIT = 2 ** 21;
const U32_MAX = 0xffffffff;

/** What was negotiated for one NBD connection, as the request checks need it; validated once. */
export class NbdLimits {
  readonly negotiated: number;

  constructor(
    readonly sizeBytes: number,
    readonly minimumBlockBytes: number,
    readonly transmissionFlags: number,
    structuredReplies: boolean,
    baseAllocation: boolean,
    readonly maxBlockBytes: number,
  ) {
    if (!isByteCount(sizeBytes)) throw new BlockError('EINVAL', `sizeBytes must be a safe non-negative integer, got ${sizeBytes}`);
    for (const [name, value, least] of [['minimumBlockBytes', minimumBlockBytes, 1], ['transmissionFlags', transmissionFlags, 0], ['maxBlockBytes', maxBlockBytes, 0]] as const) {
      if (!Number.isInteger(value) || value < least || value > U32_MAX) throw new BlockError('EINVAL', `${name} must be an integer in [${least}, 2^32), got ${value}`);
    }
    this.negotiated = (structuredReplies ? 1 : 0) | (baseAllocation ? 2 : 0);
  }
}

function globalValue(exports: KernelExports, name: string): number {
  const value = (exports as unknown as Record<string, unknown>)[name];
  if (!(value instanceof WebAssembly.Global)) throw new BlockError('ENOENT', `the kernel module exports no constant ${name}: run npm run asbuild`);
  return (value.value as number) >>> 0;
}

export class NbdRequestBatch {
  readonly windowBytes: number;
  readonly #exports: KernelExports;
  readonly #windowPtr: number;
  readonly #tablePtr: number;
  readonly #window: Uint8Array;
  readonly #records: Uint32Array;
  #count = 0;
  #endBytes = 0;

  private constructor(
    kernels: Kernels,
    readonly capacityRecords: number,
    window: WasmBuffer,
    table: WasmBuffer,
  ) {
    this.#exports = rawExportsOf(kernels);
    this.#windowPtr = pointerOf(kernels, window, 'NbdRequestBatch window');
    this.#tablePtr = pointerOf(kernels, table, 'NbdRequestBatch table');
    this.windowBytes = window.byteLength;
    this.#window = window.view();
    this.#records = new Uint32Array(this.#exports.memory.buffer, this.#tablePtr, capacityRecords * RECORD_WORDS);
    if (this.constant('RECORD_WORDS') !== RECORD_WORDS) throw new BlockError('EINVAL', 'kernel records are not 8 words: rebuild the kernels');
    NBD_VERDICTS.forEach((name, code) => {
      const exported = `NBD_${name.toUpperCase().replaceAll('-', '_')}`;
      if (this.constant(exported) !== code) throw new BlockError('EINVAL', `kernel verdict ${exported} is not ${code}: rebuild the kernels`);
    });
    if (this.constant('NBD_VERDICT_COUNT') !== NBD_VERDICTS.length) throw new BlockError('EINVAL', 'kernel verdict count differs: rebuild the kernels');
  }

  /** A batch over its own kernel instance: `capacityRecords` headers, a window of that many headers' bytes. */
  static async create(options: { flavor?: KernelFlavor; capacityRecords?: number } = {}): Promise<NbdRequestBatch> {
    const capacityRecords = options.capacityRecords ?? DEFAULT_CAPACITY_RECORDS;
    if (!Number.isInteger(capacityRecords) || capacityRecords < 1 || capacityRecords > 4096) {
      throw new BlockError('EINVAL', `capacityRecords must be an integer in [1, 4096], got ${capacityRecords}`);
    }
    const kernels = await Kernels.create({ flavor: options.flavor });
    const headerBytes = globalValue(rawExportsOf(kernels), 'NBD_REQUEST_BYTES');
    const window = kernels.alloc(capacityRecords * headerBytes);
    const table = kernels.alloc(capacityRecords * RECORD_WORDS * 4);
    return new NbdRequestBatch(kernels, capacityRecords, window, table);
  }

  /** A layout constant of assembly/frame.ts (e.g. 'NBD_REQUEST_MAGIC'). */
  constant(name: string): number {
    return globalValue(this.#exports, name);
  }

  /**
   * Decodes and checks the request headers starting at `at` in `bytes` (at most `windowBytes` of
   * them are looked at) against `limits`. Returns the record count (0 when no whole header is
   * there); the records are in `records` until the next decode, `endBytes` says where the walk
   * stopped, counted from `at`.
   */
  decode(bytes: Uint8Array, at: number, limits: NbdLimits): number {
    if (!(bytes instanceof Uint8Array)) throw new BlockError('EINVAL', 'decode: bytes must be a Uint8Array');
    if (!isByteCount(at) || at > bytes.length) throw new BlockError('ERANGE', `decode: at ${at} is outside the ${bytes.length}-byte buffer`);
    if (!(limits instanceof NbdLimits)) throw new BlockError('EINVAL', 'decode: limits must be NbdLimits');
    const inBytes = Math.min(bytes.length - at, this.windowBytes);
    this.#window.set(inBytes === bytes.length ? bytes : bytes.subarray(at, at + inBytes));
    const count = this.#exports.nbd_request_batch(
      this.#windowPtr, inBytes, this.#tablePtr, this.capacityRecords,
      limits.sizeBytes, limits.minimumBlockBytes, limits.transmissionFlags, limits.negotiated, limits.maxBlockBytes,
    );
    this.#count = count;
    this.#endBytes = this.#exports.frame_batch_end();
    return count;
  }

  /** Records of the last decode: RECORD_WORDS u32 per header, NBD_RECORD names the words. */
  get records(): Uint32Array {
    return this.#records;
  }

  get count(): number {
    return this.#count;
  }

  /** Where the last decode's walk stopped, in bytes from its `at` (past the window when a payload is cut). */
  get endBytes(): number {
    return this.#endBytes;
  }

  verdict(index: number): NbdVerdict {
    return NBD_VERDICTS[this.#word(index, NBD_RECORD.verdict)]!;
  }

  /** The record's offset as a number; -1 when it is 2^53 or more. */
  offsetBytes(index: number): number {
    const high = this.#word(index, NBD_RECORD.offsetHigh);
    return high >= SAFE_HIGH_LIMIT ? -1 : high * TWO_32 + this.#records[index * RECORD_WORDS + NBD_RECORD.offsetLow]!;
  }

  // ---- encoding (into the window, copied out) ----

  encodeRequest(flags: number, type: number, cookieHigh: number, cookieLow: number, offsetBytes: number, lengthBytes: number): Uint8Array {
    checkFields({ flags, type }, 0xffff);
    checkFields({ cookieHigh, cookieLow, lengthBytes }, U32_MAX);
    if (!isByteCount(offsetBytes)) throw new BlockError('EINVAL', `offsetBytes must be a safe non-negative integer, got ${offsetBytes}`);
    this.#exports.nbd_request_encode(this.#windowPtr, flags, type, cookieHigh, cookieLow, Math.floor(offsetBytes / TWO_32), offsetBytes >>> 0, lengthBytes);
    return this.#window.slice(0, this.constant('NBD_REQUEST_BYTES'));
  }

  encodeSimpleReply(error: number, cookieHigh: number, cookieLow: number): Uint8Array {
    checkFields({ error, cookieHigh, cookieLow }, U32_MAX);
    this.#exports.nbd_simple_reply_encode(this.#windowPtr, error, cookieHigh, cookieLow);
    return this.#window.slice(0, this.constant('NBD_SIMPLE_REPLY_BYTES'));
  }

  encodeStructuredReply(flags: number, type: number, cookieHigh: number, cookieLow: number, lengthBytes: number): Uint8Array {
    checkFields({ flags, type }, 0xffff);
    checkFields({ cookieHigh, cookieLow, lengthBytes }, U32_MAX);
    this.#exports.nbd_structured_reply_encode(this.#windowPtr, flags, type, cookieHigh, cookieLow, lengthBytes);
    return this.#window.slice(0, this.constant('NBD_STRUCTURED_REPLY_BYTES'));
  }

  #word(index: number, word: number): number {
    if (!Number.isInteger(index) || index < 0 || index >= this.#count) throw new BlockError('ERANGE', `record ${index} is outside the ${this.#count} decoded`);
    return this.#records[index * RECORD_WORDS + word]!;
  }
}

function checkFields(fields: Record<string, number>, max: number): void {
  for (const [name, value] of Object.entries(fields)) {
    if (!Number.isInteger(value) || value < 0 || value > max) throw new BlockError('EINVAL', `${name} must be an integer in [0, ${max}], got ${value}`);
  }
}
