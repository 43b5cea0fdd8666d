/**
 * Device names resolve inside one data directory, and nowhere else. A name is a relative path of
 * plain segments ([A-Za-z0-9._-], no empty, "." or ".." segment, no leading "/"); after symlinks
 * are resolved (realpath of the deepest existing ancestor) the result must still lie inside the
 * data directory's own realpath, so a symlink planted in the directory cannot point outside it.
 * Refusals are BlockError EINVAL naming the field: a malformed name, one that resolves outside, or
 * one under a path component that is not a directory (a regular file: ENOTDIR from the host).
 */
import { realpathSync } from 'node:fs';
import { dirname, join, relative, sep, isAbsolute } from 'node:path';
import { BlockError } from './errors.ts';
import { checkDeviceName } from './device-name.ts';

export { checkDeviceName, NAME_BYTES_MAX } from './device-name.ts';

/**
 * Deepest existing ancestor's realpath, joined with the rest: where `path` really points. Null when
 * a component of `path` is not a directory.
 */
function realpathOfNearest(path: string): string | null {
  let existing = path;
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(existing), ...rest.reverse());
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'ENOTDIR') return null;
      if (code !== 'ENOENT') throw error;
      const parent = dirname(existing);
      if (parent === existing) throw error;
      rest.push(existing.slice(parent.length + 1));
      existing = parent;
    }
  }
}

/** The absolute path of device `name` inside `dataDir`, refusing anything that escapes it. */
export function resolveDevicePath(dataDir: string, name: unknown, field = 'name'): string {
  const checked = checkDeviceName(name, field);
  const root = realpathSync(dataDir);
  const real = realpathOfNearest(join(root, checked));
  if (real === null) throw new BlockError('EINVAL', `${field} "${checked}" has a parent that is not a directory`);
  const inside = relative(root, real);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside) || inside.split(sep)[0] === '..') {
    throw new BlockError('EINVAL', `${field} "${checked}" resolves outside the data directory`);
  }
  return real;
}
