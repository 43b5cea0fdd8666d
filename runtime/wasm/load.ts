/**
 * Finds, compiles and caches the kernel module. Two builds of assembly/ sit beside this file:
 * blockcore.simd.wasm (v128 scans) and blockcore.scalar.wasm (u64 scans). We resolve them with
 * `new URL(name, import.meta.url)`, which works from source (tsx, Bun, Deno) and from dist/ once
 * the build copies the .wasm next to the compiled .js. The SIMD build is picked when
 * `WebAssembly.validate` accepts a tiny SIMD module; tests and benchmarks may force a flavor.
 *
 * Each flavor compiles once per process (a cached promise); instances are cheap to make from it.
 * The file is read through `process.getBuiltinModule` (Node, Bun and Deno all have it), not an
 * import, so this module imports nothing from node: and bundles for hosts without files. Such a
 * host compiles nothing at run time (workerd refuses WebAssembly.compile of bytes): it imports the
 * .wasm as a module and gives it with provideKernelModule before the first kernel call.
 */
import { BlockError } from '../errors.ts';

export type KernelFlavor = 'simd' | 'scalar';

export interface KernelModule {
  readonly flavor: KernelFlavor;
  readonly module: WebAssembly.Module;
}

const WASM_FILES: Record<KernelFlavor, string> = {
  simd: './blockcore.simd.wasm',
  scalar: './blockcore.scalar.wasm',
};

/**
 * (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): valid only where 128-bit
 * SIMD is, including i8x16.popcnt, the newest SIMD instruction the kernels use.
 */
const SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x0a, 0x0a, 0x01, 0x08, 0x00, // code section: one body of 8 bytes, no locals
  0x41, 0x00, 0xfd, 0x0f, 0xfd, 0x62, 0x0b, // i32.const 0, i8x16.splat, i8x16.popcnt, end
]);

let simdSupport: boolean | undefined;
const compiled = new Map<KernelFlavor, Promise<KernelModule>>();

export function simdSupported(): boolean {
  simdSupport ??= WebAssembly.validate(SIMD_PROBE);
  return simdSupport;
}

/** The best flavor this runtime can run. */
export function defaultFlavor(): KernelFlavor {
  return simdSupported() ? 'simd' : 'scalar';
}

export function wasmUrl(flavor: KernelFlavor): URL {
  return new URL(WASM_FILES[flavor], import.meta.url);
}

const provided = new Map<KernelFlavor, WebAssembly.Module>();

/** Uses `module` as the kernel module of `flavor` from now on (a host that imports .wasm as modules). */
export function provideKernelModule(flavor: KernelFlavor, module: WebAssembly.Module): void {
  provided.set(flavor, module);
  compiled.delete(flavor);
}

interface BuiltinModules {
  getBuiltinModule?(id: string): unknown;
}

/** The bytes of the kernel file beside this module; ENOTSUP where there is no file system. */
async function readKernelFile(url: URL): Promise<Uint8Array> {
  const builtins = (globalThis as { process?: BuiltinModules }).process;
  if (typeof builtins?.getBuiltinModule !== 'function') {
    throw new BlockError('ENOTSUP', `no file system to read ${url.href} from: give the kernel module with provideKernelModule()`);
  }
  const fs = builtins.getBuiltinModule('node:fs/promises') as typeof import('node:fs/promises');
  const { fileURLToPath } = builtins.getBuiltinModule('node:url') as typeof import('node:url');
  const path = fileURLToPath(url);
  try {
    return await fs.readFile(path);
  } catch (cause) {
    if ((cause as { code?: unknown }).code === 'ENOENT') {
      throw new BlockError('ENOENT', `kernel module ${path} is not built: run npm run asbuild`, { cause });
    }
    throw cause;
  }
}

/** Compiled kernel module of `flavor` (default: SIMD when supported), compiled once per process. */
export function loadKernelModule(flavor: KernelFlavor = defaultFlavor()): Promise<KernelModule> {
  if (flavor !== 'simd' && flavor !== 'scalar') {
    throw new BlockError('EINVAL', `unknown kernel flavor ${String(flavor)} (expected 'simd' or 'scalar')`);
  }
  let pending = compiled.get(flavor);
  if (pending === undefined) {
    pending = compile(flavor);
    compiled.set(flavor, pending);
    pending.catch(() => compiled.delete(flavor)); // a later call may succeed after `npm run asbuild`
  }
  return pending;
}

async function compile(flavor: KernelFlavor): Promise<KernelModule> {
  if (flavor === 'simd' && !simdSupported()) {
    throw new BlockError('ENOTSUP', 'this runtime has no WebAssembly SIMD; use the scalar kernels');
  }
  const given = provided.get(flavor);
  if (given !== undefined) return { flavor, module: given };
  const module = await WebAssembly.compile(await readKernelFile(wasmUrl(flavor)));
  return { flavor, module };
}
