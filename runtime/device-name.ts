/**
 * Device names, as every DeviceStore takes them: a relative path of plain segments ([A-Za-z0-9._-],
 * no empty, "." or ".." segment, no leading "/"). Pure, so hosts without a file system check names
 * the same way (data-dir.ts resolves them inside a data directory).
 */
import { BlockError } from './errors.ts';

const SEGMENT = /^[A-Za-z0-9._-]{1,255}$/;
export const NAME_BYTES_MAX = 1024;

export function checkDeviceName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw new BlockError('EINVAL', `${field} must be a non-empty string`);
  if (name.length > NAME_BYTES_MAX) throw new BlockError('EINVAL', `${field} is longer than ${NAME_BYTES_MAX} characters`);
  if (name.startsWith('/')) throw new BlockError('EINVAL', `${field} "${name}" must be relative to the data directory`);
  for (const segment of name.split('/')) {
    if (segment === '.' || segment === '..' || !SEGMENT.test(segment)) {
      throw new BlockError('EINVAL', `${field} "${name}" may hold only letters, digits, ".", "_", "-" and "/" between segments, and no "." or ".." segment`);
    }
  }
  return name;
}
