/**
 * Loads the kernels' component (dist/blockcore-core.wasm, world blockcore:core/core@0.1.0) through
 * its jco bindings (dist/blockcore-core/, `instantiation: async`), building both first when they
 * are missing or older than their sources: `node scripts/build-component.mjs` returns at once when
 * they are up to date. The bindings are generated, so the types here restate the WIT's JavaScript
 * shape by hand (a fresh clone has no dist/ when tsc checks the tree); the conformance test
 * checks them against the component's behaviour.
 *
 * jco maps the WIT this way: u32 and u16 are numbers (wrapped with `>>> 0` and `% 2^16` on the
 * way in, so range checks of JS numbers are the caller's), u64/s64 are bigints, option<T> is
 * T | undefined, list<u8> is a Uint8Array, and an export's `result` error comes back as a thrown
 * ComponentError whose `payload` is the error-code. A trap (a WebAssembly.RuntimeError) would
 * leave the instance unusable: every later call throws.
 */
import { spawnSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { NbdVerdict } from '../../runtime/wasm/frame.ts';

const ROOT_URL = new URL('../../', import.meta.url);
const BUILD_SCRIPT = fileURLToPath(new URL('scripts/build-component.mjs', ROOT_URL));
export const COMPONENT_URL = new URL('dist/blockcore-core.wasm', ROOT_URL);
const BINDINGS_URL = new URL('dist/blockcore-core/', ROOT_URL);
const BINDINGS_ENTRY = 'blockcore-core.js';

export const ERROR_CODES = ['out-of-range', 'invalid-argument', 'out-of-memory'] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export interface BitRun {
  startBit: number;
  lengthBits: number;
}

/** An own<bitmap> handle; drop it with dropBitmap (the host frees it on GC otherwise). */
export interface Bitmap {
  bitCount(): number;
  get(bit: number): boolean;
  set(bit: number): boolean;
  clear(bit: number): boolean;
  nextSet(fromBit: number, lastBit: number): number | undefined;
  nextZero(fromBit: number, lastBit: number): number | undefined;
  nextSetWrapping(fromBit: number, lastBit: number): number | undefined;
  nextZeroWrapping(fromBit: number, lastBit: number): number | undefined;
  countSet(firstBit: number, lastBit: number): number;
  setRange(firstBit: number, lastBit: number): number;
  clearRange(firstBit: number, lastBit: number): number;
  nextRun(fromBit: number, lastBit: number, value: boolean, maxLengthBits: number): BitRun | undefined;
  words(startWord: number, wordCount: number): Uint8Array;
  loadWords(startWord: number, bytes: Uint8Array): bigint;
  or(other: Bitmap): number;
  andNot(other: Bitmap): number;
}

export interface NbdLimits {
  sizeBytes: bigint;
  minimumBlockBytes: number;
  transmissionFlags: number;
  structuredReplies: boolean;
  baseAllocation: boolean;
  maxBlockBytes: number;
}

export interface NbdRequest {
  verdict: NbdVerdict;
  flags: number;
  command: number;
  cookie: bigint;
  offsetBytes: bigint;
  lengthBytes: number;
}

export interface NbdBatch {
  requests: NbdRequest[];
  endBytes: bigint;
}

/** The component's exports, by interface (wit/blockcore-core.wit). */
export interface CoreComponent {
  bitmap: { Bitmap: { create(bitCount: number): Bitmap } };
  bytes: {
    copy(dst: Uint8Array, dstOffsetBytes: number, src: Uint8Array, srcOffsetBytes: number, lengthBytes: number): Uint8Array;
    isZero(data: Uint8Array): boolean;
  };
  digest: {
    crc32c(seed: number, data: Uint8Array): number;
    xxh64(seed: bigint, data: Uint8Array): bigint;
  };
  frame: {
    decodeNbdRequests(bytes: Uint8Array, limits: NbdLimits, maxRequests: number): NbdBatch;
    encodeNbdRequest(flags: number, command: number, cookie: bigint, offsetBytes: bigint, lengthBytes: number): Uint8Array;
    encodeNbdSimpleReply(error: number, cookie: bigint): Uint8Array;
    encodeNbdStructuredReply(flags: number, chunkType: number, cookie: bigint, lengthBytes: number): Uint8Array;
  };
}

interface Bindings {
  instantiate(getCoreModule: (path: string) => Promise<WebAssembly.Module>, imports: Record<string, never>): Promise<CoreComponent>;
}

/** The symbol jco's bindings put the drop function under (Symbol.dispose where the runtime has it). */
const DISPOSE: symbol = (Symbol as unknown as { dispose?: symbol }).dispose ?? Symbol.for('dispose');

/** Drops a bitmap's handle now: the component frees its memory (the bindings' [Symbol.dispose]). */
export function dropBitmap(bitmap: Bitmap): void {
  (bitmap as unknown as Record<symbol, () => void>)[DISPOSE]!();
}

let built = false;
let bindings: Promise<Bindings> | undefined;
const coreModules = new Map<string, Promise<WebAssembly.Module>>();

/** Builds the component and its bindings unless they are up to date (once per process). */
export function buildCoreComponent(): void {
  if (built) return;
  const node = process.env.npm_node_execpath || 'node';
  const run = spawnSync(node, [BUILD_SCRIPT], { cwd: fileURLToPath(ROOT_URL), encoding: 'utf8' });
  if (run.status !== 0) {
    throw new Error(`node scripts/build-component.mjs failed (${run.error?.message ?? `exit ${run.status}`}):\n${run.stdout ?? ''}${run.stderr ?? ''}`);
  }
  built = true;
}

function coreModule(path: string): Promise<WebAssembly.Module> {
  let pending = coreModules.get(path);
  if (pending === undefined) {
    pending = readFile(new URL(path, BINDINGS_URL)).then((bytes) => WebAssembly.compile(bytes));
    coreModules.set(path, pending);
  }
  return pending;
}

/** A fresh instance of the component (its own memory and handle table); core modules compile once. */
export async function instantiateCoreComponent(): Promise<CoreComponent> {
  buildCoreComponent();
  bindings ??= import(pathToFileURL(fileURLToPath(new URL(BINDINGS_ENTRY, BINDINGS_URL))).href) as Promise<Bindings>;
  return (await bindings).instantiate(coreModule, {});
}

/** Bytes of dist/blockcore-core.wasm. */
export async function componentBytes(): Promise<number> {
  buildCoreComponent();
  return (await stat(COMPONENT_URL)).size;
}

/** The error-code a failed call threw (a ComponentError's payload), or null when it threw something else. */
export function errorCodeOf(error: unknown): ErrorCode | null {
  const payload = (error as { payload?: unknown } | null)?.payload;
  return typeof payload === 'string' && (ERROR_CODES as readonly string[]).includes(payload) ? (payload as ErrorCode) : null;
}
