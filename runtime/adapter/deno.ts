/** Deno adapter: fallocate through Deno.dlopen (needs --allow-ffi; without it discards write zeros). */
import { LIBC_PATH, punchWith, type RuntimeAdapter } from './types.ts';

interface DenoFfi {
  version: { deno: string };
  build: { os: string };
  dlopen(path: string, symbols: Record<string, { parameters: string[]; result: string }>): {
    symbols: Record<string, (...args: unknown[]) => unknown>;
  };
}
const Deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;

function bindFallocate(): Fallocate | null {
  if (Deno.build.os !== 'linux') return null;
  try {
    const lib = Deno.dlopen(LIBC_PATH, {
      fallocate: { parameters: ['i32', 'i32', 'i64', 'i64'], result: 'i32' },
    });
    return (fd, mode, off, len) => lib.symbols.fallocate!(fd, mode, off, len) as number;
  } catch {
    return null;
  }
}

export const adapter: RuntimeAdapter = {
  name: 'deno',
  version: Deno.version.deno,
  punchHole: punchWith(bindFallocate()),
};
