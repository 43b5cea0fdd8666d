/**
 * Runs every `test/**\/*.test.ts` (or those whose path contains one of the arguments) in this
 * process with uvu, the same way under Node (tsx), Bun and Deno. `scripts/test.mjs` starts one
 * driver per runtime and reads uvu's Total/Passed/Skipped summary from each.
 *
 * An error no test caught (an unhandled rejection, an exception thrown from a timer or a socket
 * callback) would end the whole process, and with it the summary of every file run so far, on some
 * runtimes with no word of where it came from. Here it is printed with its stack, under the name
 * of the file that was running, the run goes on, and the driver exits non-zero, so the runtime's
 * line counts it as a failure. A process that lingers after the last test (something a test left
 * open) ends after LINGER_MS, as a failure too.
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

let uncaught = 0;
function reportUncaught(kind: string, error: unknown): void {
  uncaught++;
  const text = error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);
  process.stderr.write(`\n!! ${kind} outside any test (a failure): ${text}\n`);
  process.exitCode = 1;
}
process.on('unhandledRejection', (reason) => reportUncaught('unhandled rejection', reason));
process.on('uncaughtException', (error) => reportUncaught('uncaught exception', error));

await run(suites);
if (uncaught > 0) {
  process.stderr.write(`!! ${uncaught} error(s) outside any test: see "!!" above\n`);
  process.exitCode = 1;
}
// Every test has ended: a runtime that still has work queued this long after is held open by
// something a test left behind (a socket, a timer, a worker thread). Say so and end, as a failure,
// rather than wait for scripts/test.mjs to kill a silent run minutes later. The timer holds
// nothing open itself: a clean run exits at once.
const LINGER_MS = 10_000;
setTimeout(() => {
  process.stderr.write(`!! the process was still running ${LINGER_MS / 1000} s after the last test: a test left something open (a socket, a timer, a thread)\n`);
  process.exit(1);
}, LINGER_MS).unref();
