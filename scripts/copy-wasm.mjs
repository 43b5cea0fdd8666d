/**
 * After `tsc -p tsconfig.build.json`, puts the kernel modules beside the compiled loader
 * (dist/runtime/wasm/), where runtime/wasm/load.ts looks for them with
 * `new URL('./blockcore.<flavor>.wasm', import.meta.url)`. Fails when a module was not built.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FROM = join(ROOT, 'runtime', 'wasm');
const TO = join(ROOT, 'dist', 'runtime', 'wasm');

mkdirSync(TO, { recursive: true });
for (const name of ['blockcore.scalar.wasm', 'blockcore.simd.wasm']) {
  const source = join(FROM, name);
  if (!existsSync(source)) {
    console.error(`copy-wasm: ${source} is missing: run npm run asbuild`);
    process.exit(1);
  }
  copyFileSync(source, join(TO, name));
}
console.log(`copy-wasm: kernel modules copied to ${TO}`);
