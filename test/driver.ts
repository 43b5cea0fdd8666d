/**
 * Runs every `test/**\/*.test.ts` (or those whose path contains one of the arguments) in this
 * process with uvu, the same way under Node (tsx), Bun and Deno. `scripts/test.mjs` starts one
 * driver per runtime and reads uvu's Total/Passed/Skipped summary from each.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from 'uvu/run';

const testDir = fileURLToPath(new URL('.', import.meta.url));
const filters = process.argv.slice(2);

function listTests(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) found.push(...listTests(path));
    else if (entry.endsWith('.test.ts')) found.push(path);
  }
  return found;
}

const files = listTests(testDir).filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)));
const suites = files.map((file) => ({ name: relative(testDir, file), file }));
await run(suites);
