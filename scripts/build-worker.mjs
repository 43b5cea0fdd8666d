#!/usr/bin/env node
// `npm run build:worker`: bundles server/edge/worker.ts with esbuild into dist/worker/worker.js (ES
// module, no node: imports: the build fails if any remain) and puts the kernel modules beside it as
// blockcore.simd.wasm and blockcore.scalar.wasm, which the Worker imports as WebAssembly modules.
// Skips the build when dist/worker is newer than every source it bundles. Used by the workerd test
// and the README's Worker example (whose config names these three files).
import { copyFileSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { WORKER_DIR } from './workerd.mjs';

export { WORKER_DIR };

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENTRY = join(ROOT, 'server', 'edge', 'worker.ts');
const KERNELS = ['blockcore.simd.wasm', 'blockcore.scalar.wasm'];

function mtimeMs(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return -Infinity;
  }
}

/** Keeps `import x from '<...>/blockcore.simd.wasm'` as an import of the module beside worker.js. */
const wasmBeside = {
  name: 'wasm-beside',
  setup(build) {
    build.onResolve({ filter: /\.wasm$/ }, (args) => ({ path: `./${basename(args.path)}`, external: true }));
  },
};

export async function buildWorker({ force = false } = {}) {
  const out = join(WORKER_DIR, 'worker.js');
  const inputs = join(WORKER_DIR, 'inputs.json');
  if (!force && mtimeMs(out) > -Infinity) {
    let newest = -Infinity;
    try {
      for (const input of JSON.parse((await import('node:fs')).readFileSync(inputs, 'utf8'))) newest = Math.max(newest, mtimeMs(join(ROOT, input)));
      for (const kernel of KERNELS) newest = Math.max(newest, mtimeMs(join(ROOT, 'runtime', 'wasm', kernel)));
      if (newest !== -Infinity && newest < mtimeMs(out)) return out;
    } catch {
      // no inputs list: build
    }
  }
  mkdirSync(WORKER_DIR, { recursive: true });
  const result = await esbuild.build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    target: 'es2022',
    outfile: out,
    metafile: true,
    logLevel: 'warning',
    plugins: [wasmBeside],
  });
  const output = Object.values(result.metafile.outputs)[0];
  const strays = output.imports.filter((entry) => entry.path.startsWith('node:') || (!entry.path.endsWith('.wasm') && entry.external));
  if (strays.length > 0) throw new Error(`the Worker bundle imports ${strays.map((entry) => entry.path).join(', ')}: the edge entry must import no node: module`);
  for (const kernel of KERNELS) copyFileSync(join(ROOT, 'runtime', 'wasm', kernel), join(WORKER_DIR, kernel));
  writeFileSync(inputs, JSON.stringify(Object.keys(result.metafile.inputs).filter((input) => !input.startsWith('node_modules'))));
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await buildWorker({ force: process.argv.includes('--force') });
  console.log(`build-worker: ${out} (${statSync(out).size} bytes)`);
}
