/**
 * Builds assembly/ into runtime/wasm/blockcore.scalar.wasm and runtime/wasm/blockcore.simd.wasm,
 * one asc run per target of ./asconfig.json (asc always reads ./asconfig.json, so the two builds
 * are targets of that one config rather than two configs). Skips both builds when every .wasm is
 * newer than every assembly/*.ts and asconfig.json, so `npm test` costs nothing when the kernels
 * did not change. `--force` rebuilds anyway.
 *
 * Plain Node ESM, no dependencies beyond assemblyscript.
 */
import { readdirSync, statSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import asc from 'assemblyscript/asc';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CONFIG = 'asconfig.json';
const SOURCE_DIR = 'assembly';
const OUT_DIR = join('runtime', 'wasm');
const TARGETS = ['scalar', 'simd'];

function mtimeMs(path) {
  try {
    return statSync(join(ROOT, path)).mtimeMs;
  } catch {
    return -Infinity;
  }
}

function newestSourceMs() {
  const sources = readdirSync(join(ROOT, SOURCE_DIR))
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(SOURCE_DIR, name));
  return Math.max(mtimeMs(CONFIG), ...sources.map(mtimeMs));
}

function outFile(target) {
  return join(OUT_DIR, `blockcore.${target}.wasm`);
}

function upToDate() {
  const newest = newestSourceMs();
  return TARGETS.every((target) => mtimeMs(outFile(target)) > newest);
}

async function build(target) {
  const started = performance.now();
  const { error } = await asc.main(['--config', CONFIG, '--target', target], {
    stdout: process.stdout,
    stderr: process.stderr,
  });
  if (error) throw new Error(`asbuild: target ${target} failed: ${error.message}`);
  const elapsedMs = Math.round(performance.now() - started);
  console.log(`asbuild: ${outFile(target)} (${statSync(join(ROOT, outFile(target))).size} bytes, ${elapsedMs} ms)`);
}

async function main() {
  process.chdir(ROOT);
  if (!process.argv.includes('--force') && upToDate()) {
    console.log('asbuild: up to date');
    return;
  }
  mkdirSync(join(ROOT, OUT_DIR), { recursive: true });
  for (const target of TARGETS) await build(target);
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
