/**
 * Who holds which device file, and whether one more holder may join. A file may have many readers
 * (clone sources, read-only exports) or exactly one writer (a clone's metadata or destination, a
 * writable export) and nobody else, the rule RNBD's server applies to its devices. Files are keyed
 * by their real path, so two names for one file (a symlink inside the data directory) collide.
 */
import { ServiceError } from './errors.ts';

export type Access = 'read' | 'write';

export interface Hold {
  /** Real path of the file. */
  path: string;
  /** The name it was asked for by (for messages). */
  name: string;
  access: Access;
  /** Who holds it, for messages and listings: `clone:c1`, `export:e1`. */
  holder: string;
}

/** Refuses with EBUSY (naming `field`) when `wanted` cannot join `holds`. */
export function checkCanHold(holds: readonly Hold[], wanted: Hold, field: string): void {
  const name = wanted.name;
  const others = holds.filter((hold) => hold.path === wanted.path && hold.holder !== wanted.holder);
  const writer = others.find((hold) => hold.access === 'write');
  if (writer) throw new ServiceError('EBUSY', `device "${name}" is in use by ${writer.holder} for writing`, field);
  if (wanted.access === 'write' && others.length > 0) {
    throw new ServiceError('EBUSY', `device "${name}" is in use by ${others.map((hold) => hold.holder).join(', ')}; a writer needs it alone`, field);
  }
}

export function holdersOf(holds: readonly Hold[], path: string): string[] {
  return [...new Set(holds.filter((hold) => hold.path === path).map((hold) => hold.holder))];
}
