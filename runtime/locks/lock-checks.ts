/**
 * The argument checks every lock manager makes at its boundary, so a malformed name or mode is the
 * same EINVAL whichever manager a caller uses.
 */
import { LockError } from './lock-error.ts';
import { isLockMode, type LockMode } from './modes.ts';

/** The DLM's limits on names (DLM_LOCKSPACE_LEN, DLM_RESNAME_MAXLEN). */
export const NAME_BYTES_MAX = 64;

export function checkName(field: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length === 0 || new TextEncoder().encode(value).length > NAME_BYTES_MAX) {
    throw new LockError('EINVAL', `${field} must be a name of 1 to ${NAME_BYTES_MAX} bytes`);
  }
}

export function checkMode(mode: unknown): asserts mode is LockMode {
  if (!isLockMode(mode)) throw new LockError('EINVAL', `mode must be a lock mode 0 (NL) to 5 (EX), not ${String(mode)}`);
}

export function cancelled(resource: string): LockError {
  return new LockError('ECANCELED', 'cancelled before a grant', resource);
}
