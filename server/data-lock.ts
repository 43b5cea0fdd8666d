/**
 * One service per data directory: two would hydrate the same clone metadata from two processes.
 * `.blockcore/lock` holds the owner's pid; it is created exclusively, and a lock whose pid is no
 * longer running (the owner was killed) is taken over, as is one naming our own pid that this
 * process does not hold (a container restarts its service with the same pid). Released on stop.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { stateDir } from './state-file.ts';

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
}

/** Lock files this process holds. */
const held = new Set<string>();

export interface DataLock {
  release(): void;
}

export function lockDataDir(dataDir: string): DataLock {
  const dir = stateDir(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  const path = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      held.add(path);
      return { release: () => releaseIfOurs(path) };
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error;
    }
    const owner = Number.parseInt(fs.readFileSync(path, 'utf8'), 10);
    const inUse = owner === process.pid ? held.has(path) : isRunning(owner);
    if (Number.isSafeInteger(owner) && owner > 0 && inUse) {
      throw new DataDirLockedError(`data directory ${dataDir} is in use by process ${owner} (${path})`);
    }
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

function releaseIfOurs(path: string): void {
  if (!held.delete(path)) return;
  try {
    if (Number.parseInt(fs.readFileSync(path, 'utf8'), 10) === process.pid) fs.rmSync(path, { force: true });
  } catch {
    // already gone
  }
}
