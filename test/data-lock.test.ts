/**
 * server/data-lock.ts in this process: the kernel's lock refuses a second holder at once (naming
 * our pid) and is free again after release (the file gone); a lock file left by a killed service
 * is taken over whatever pid it names, even a running one (a reused pid), because only the
 * kernel's lock counts. The pid-only fallback (a host without flock) keeps its old rules. The
 * cross-process cases (SIGKILL, zombies, a second live service) are in test/serve-kill.test.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { DataDirLockedError, lockDataDir, type FileLocker } from '../server/data-lock.ts';

const adapter = await loadAdapter();
const test = suite('data directory lock');
let dataDir = '';
let lockPath = '';

test.before.each(() => {
  dataDir = mkdtempSync(join(tmpdir(), 'blockcore-data-lock-'));
  lockPath = join(dataDir, '.blockcore', 'lock');
});
test.after.each(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

function refused(take: () => unknown, pattern: RegExp): void {
  try {
    take();
  } catch (error) {
    assert.instance(error, DataDirLockedError);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable('the lock was taken twice');
}

test('the runtime has the kernel lock (flock through its adapter) on Linux', () => {
  assert.is(adapter.tryLockFile(-1), process.platform === 'linux' ? 'busy' : 'unsupported', 'a bad fd is refused, not unsupported');
});

test('a second lock in this process is refused, naming this pid; after release the file is gone and the lock free', () => {
  const lock = lockDataDir(dataDir);
  assert.is(readFileSync(lockPath, 'utf8'), `${process.pid}\n`);
  refused(() => lockDataDir(dataDir), new RegExp(`is in use by process ${process.pid} \\(`));
  lock.release();
  lock.release(); // idempotent
  assert.not.ok(existsSync(lockPath));
  lockDataDir(dataDir).release();
});

test('a lock file left behind names a running process that does not hold the lock: taken over (a reused pid means nothing)', () => {
  lockDataDir(dataDir).release();
  writeFileSync(lockPath, `${process.ppid}\n`); // our parent: running, holding nothing
  const lock = lockDataDir(dataDir);
  assert.is(readFileSync(lockPath, 'utf8'), `${process.pid}\n`);
  lock.release();
  writeFileSync(lockPath, 'not a pid\n');
  lockDataDir(dataDir).release();
});

test('without flock (the fallback) the pid decides: ours while held and a running one refuse, a dead one is taken over', () => {
  const noFlock: FileLocker = { tryLockFile: () => 'unsupported' };
  const lock = lockDataDir(dataDir, noFlock);
  refused(() => lockDataDir(dataDir, noFlock), new RegExp(`in use by process ${process.pid}`));
  lock.release();
  assert.not.ok(existsSync(lockPath));
  writeFileSync(lockPath, `${process.ppid}\n`);
  refused(() => lockDataDir(dataDir, noFlock), new RegExp(`in use by process ${process.ppid}`));
  writeFileSync(lockPath, '999999999\n');
  lockDataDir(dataDir, noFlock).release();
  writeFileSync(lockPath, `${process.pid}\n`); // our pid, left by an earlier life of this pid
  lockDataDir(dataDir, noFlock).release();
});

test.run();
