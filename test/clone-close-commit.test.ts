/**
 * Closing a clone commits its metadata, also when a commit is already running: the commit the
 * clone starts on its own when the last region is hydrated clears the dirty set when it takes its
 * snapshot, and a close() that looked only at the dirty set went on to close the devices under
 * that commit, which then failed. After a restart the clone was not fully hydrated, and a region
 * the user had written whole counted as unhydrated again: the next hydration would have copied
 * the source over the user's data. (Seen as test/serve-start.test.ts reporting hydrationComplete
 * false after the SIGTERM of a fully hydrated clone.) Here the close comes at that exact moment:
 * from the 'hydration-complete' event, emitted just before that commit starts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { openCloneFromTable } from '../runtime/clone/open-table.ts';
import { FileStore } from '../runtime/devices/file-store.ts';
import { Prng } from '../runtime/prng.ts';
import { until } from './support/nbd-fixtures.ts';

const KiB = 1024;
const REGION_BYTES = 4 * KiB;
const SIZE_BYTES = 256 * KiB;
const FLUSHED_REGION = 5;
const USER_REGION = 6;
/** No commits by the clock: only the ones the test provokes. */
const NEVER_MS = 3_600_000;

const test = suite('clone close while its own commit runs');
let dataDir = '';

test.before.each(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'blockcore-clone-close-'));
});
test.after.each(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

test('close() from the hydration-complete event waits for that commit: reopened, the clone is hydrated and keeps the user write', async () => {
  const source = new Prng(3).fill(new Uint8Array(SIZE_BYTES));
  writeFileSync(join(dataDir, 'src.img'), source);
  writeFileSync(join(dataDir, 'dst.img'), new Uint8Array(SIZE_BYTES));
  writeFileSync(join(dataDir, 'meta'), new Uint8Array(64 * KiB));
  const table = 'clone meta dst.img src.img 8 1 no_hydration';
  const clone = await openCloneFromTable(new FileStore(dataDir), table, { commitIntervalMs: NEVER_MS });
  const userData = new Uint8Array(REGION_BYTES).fill(0xcd);
  // Whole regions: marked hydrated, no copy. The first is committed by the flush (so this is not
  // the clone's first commit, which close() always made), the second waits for the next commit.
  await clone.write(FLUSHED_REGION * REGION_BYTES, userData);
  await clone.flush();
  await clone.write(USER_REGION * REGION_BYTES, userData);
  let closing: Promise<void> | null = null;
  clone.events.on((event) => {
    if (event.type === 'hydration-complete') closing = clone.close();
  });
  clone.message('enable_hydration');
  await until(() => closing !== null, 'hydration complete');
  await closing;

  const reopened = await openCloneFromTable(new FileStore(dataDir), table, { commitIntervalMs: NEVER_MS });
  try {
    const status = reopened.statusNow();
    assert.is(status.hydratedRegions, SIZE_BYTES / REGION_BYTES, 'every hydrated region was committed by close()');
    assert.is(status.hydrationComplete, true);
    for (const region of [FLUSHED_REGION, USER_REGION]) {
      const back = new Uint8Array(REGION_BYTES);
      await reopened.read(region * REGION_BYTES, back);
      assert.ok(Buffer.from(back).equals(Buffer.from(userData)), `region ${region}: the user write, not the source`);
    }
  } finally {
    await reopened.close();
  }
});

test('status() while the completion commit runs waits for it: hydrationComplete comes with that commit counted', async () => {
  writeFileSync(join(dataDir, 'src.img'), new Prng(4).fill(new Uint8Array(SIZE_BYTES)));
  writeFileSync(join(dataDir, 'dst.img'), new Uint8Array(SIZE_BYTES));
  writeFileSync(join(dataDir, 'meta'), new Uint8Array(64 * KiB));
  const clone = await openCloneFromTable(new FileStore(dataDir), 'clone meta dst.img src.img 8 1 no_hydration', { commitIntervalMs: NEVER_MS });
  try {
    await clone.flush(); // the first commit: the completion's is the second
    const before = clone.statusNow().commits;
    let asked: Promise<ReturnType<typeof clone.statusNow>> | null = null;
    clone.events.on((event) => {
      // The event comes just before the completion commit starts; a microtask later it runs and
      // the dirty set is empty, so a status that only looked at the dirty set answered at once.
      if (event.type === 'hydration-complete') asked = Promise.resolve().then(() => clone.status());
    });
    clone.message('enable_hydration');
    await until(() => asked !== null, 'hydration complete');
    const status = await asked!;
    assert.is(status.hydrationComplete, true);
    assert.is(status.commits, before + 1, 'the completion commit is counted');
  } finally {
    await clone.close();
  }
});

test.run();
