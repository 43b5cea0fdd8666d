/**
 * One service per data directory: two would hydrate the same clone metadata from two processes.
 *
 * The lock is the kernel's: `.blockcore/lock` is opened and locked with flock(LOCK_EX | LOCK_NB)
 * through the runtime adapter (RuntimeAdapter.tryLockFile). The kernel holds that lock for as long
 * as the open file lives and drops it when the process ends, however it ends: a service killed
 * with SIGKILL frees its data directory as soon as the kernel has torn it down, whether or not its
 * parent has reaped it, and a pid reused since means nothing. The file also holds the owner's
 * pid, written once the lock is taken, for one purpose only: the message naming who holds it.
 *
 *   take     open (creating) the file and try the lock. Taken: check that the path still names
 *            the file we locked (a releasing owner unlinks it while it still holds the lock, so a
 *            waiter can end up holding a file no longer in the directory: then open again), and
 *            write our pid. Busy: refused at once when the pid in the file is ours (this process
 *            holds it through another open); otherwise tried again for up to BUSY_WAIT_MS (a
 *            process killed a moment ago keeps its files until the kernel has torn down its
 *            memory), then refused naming the pid in the file.
 *   release  unlink the file, then close it (the close drops the kernel lock).
 *
 * Where the host has no flock binding (not Linux, or Deno without --allow-ffi), the lock falls
 * back to the pid alone, as it was before the kernel lock: the file is created exclusively; one
 * naming a process that is running (or this process, when it holds the lock) is in use, any other
 * is taken over. That fallback cannot tell a killed process not yet reaped from a live one.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { loadAdapter, type RuntimeAdapter } from '../runtime/adapter/index.ts';
import { stateDir } from './state-file.ts';

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
}

/** How long a busy lock whose holder is another process is tried again before refusing. */
export const BUSY_WAIT_MS = 2000;
const BUSY_POLL_MS = 10;
/** Opens of the path before giving up on a lock file that keeps being replaced. */
const MAX_OPENS = 10;

export interface DataLock {
  release(): void;
}

export type FileLocker = Pick<RuntimeAdapter, 'tryLockFile'>;

const adapter = await loadAdapter();

/** Lock files this process holds in the pid-only fallback. */
const heldByPid = new Set<string>();

export function lockDataDir(dataDir: string, locker: FileLocker = adapter): DataLock {
  const dir = stateDir(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  const path = join(dir, 'lock');
  const deadlineMs = Date.now() + BUSY_WAIT_MS;
  for (let opens = 0; opens < MAX_OPENS; opens++) {
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    let outcome: ReturnType<FileLocker['tryLockFile']>;
    try {
      outcome = locker.tryLockFile(fd);
      while (outcome === 'busy') {
        const holder = pidIn(fd);
        if (holder === process.pid || Date.now() >= deadlineMs) throw lockedError(dataDir, path, holder);
        sleepMs(BUSY_POLL_MS);
        outcome = locker.tryLockFile(fd);
      }
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    if (outcome === 'unsupported') {
      fs.closeSync(fd);
      return lockByPid(dataDir, path);
    }
    if (!namesFile(path, fd)) {
      fs.closeSync(fd); // we locked a file its owner unlinked on release: the lock is the new file's
      continue;
    }
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`, 0);
    let held = true;
    return {
      release() {
        if (!held) return;
        held = false;
        fs.rmSync(path, { force: true }); // while still locked: see the design note
        fs.closeSync(fd);
      },
    };
  }
  throw new DataDirLockedError(`could not take the lock ${path}: it kept being replaced`);
}

function lockedError(dataDir: string, path: string, holder: number | null): DataDirLockedError {
  const who = holder === null ? 'another process' : `process ${holder}`;
  return new DataDirLockedError(`data directory ${dataDir} is in use by ${who} (${path})`);
}

/** The pid written in the open lock file, or null when there is none yet. */
function pidIn(fd: number): number | null {
  const bytes = Buffer.alloc(32);
  const readBytes = fs.readSync(fd, bytes, 0, bytes.length, 0);
  return parsePid(bytes.subarray(0, readBytes).toString('utf8'));
}

function parsePid(text: string): number | null {
  const pid = Number.parseInt(text, 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/** The path names the very file open as `fd` (same device and inode). */
function namesFile(path: string, fd: number): boolean {
  try {
    const named = fs.statSync(path);
    const open = fs.fstatSync(fd);
    return named.ino === open.ino && named.dev === open.dev;
  } catch {
    return false; // unlinked meanwhile
  }
}

/** Blocks this thread (startup only, never while serving). */
function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// ---- the pid-only fallback ----

function lockByPid(dataDir: string, path: string): DataLock {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      heldByPid.add(path);
      return { release: () => releaseByPid(path) };
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error;
    }
    const owner = parsePid(fs.readFileSync(path, 'utf8'));
    const inUse = owner === process.pid ? heldByPid.has(path) : owner !== null && isRunning(owner);
    if (inUse) throw lockedError(dataDir, path, owner);
    fs.rmSync(path, { force: true });
  }
  throw new DataDirLockedError(`could not take the lock ${path}`);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}

function releaseByPid(path: string): void {
  if (!heldByPid.delete(path)) return;
  try {
    if (parsePid(fs.readFileSync(path, 'utf8')) === process.pid) fs.rmSync(path, { force: true });
  } catch {
    // already gone
  }
}
