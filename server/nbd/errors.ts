/**
 * Device errors to NBD error values (proto.md "Error values": EPERM, EIO, ENOMEM, EINVAL, ENOSPC,
 * EOVERFLOW, ENOTSUP, ESHUTDOWN only). BlockError codes map by meaning; an EIO whose cause is an OS
 * ENOSPC / EDQUOT / EFBIG becomes ENOSPC, as proto.md asks; anything unknown is EIO.
 */
import { errnoName } from '../../runtime/devices/file-io.ts';
import { BlockError } from '../../runtime/errors.ts';
import { describeError } from '../../runtime/net/fault-domain.ts';
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_EPERM, NBD_ESHUTDOWN } from './constants.ts';

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

export function nbdErrorOf(error: unknown): number {
  if (error instanceof BlockError) {
    switch (error.code) {
      case 'EROFS':
        return NBD_EPERM;
      case 'EINVAL':
      case 'ERANGE':
      case 'ENOTSUP':
        return NBD_EINVAL;
      case 'EBADF':
        return NBD_ESHUTDOWN; // the device was closed under the export: it is going away
      default:
        return NO_SPACE.has(errnoOf((error as { cause?: unknown }).cause)) ? NBD_ENOSPC : NBD_EIO;
    }
  }
  return NO_SPACE.has(errnoOf(error)) ? NBD_ENOSPC : NBD_EIO;
}

/** errnoName, for any thrown value (one with no string form has no errno either). */
function errnoOf(error: unknown): string {
  try {
    return errnoName(error);
  } catch {
    return 'UNKNOWN';
  }
}

/** The message for an error reply: never throws, even for a thrown value with no string form. */
export function messageOf(error: unknown): string {
  return describeError(error);
}
