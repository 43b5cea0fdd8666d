/**
 * Coded errors for the world: bad input and I/O faults. Each names what failed (`code`, errno-like),
 * where (`offsetBytes`, `lengthBytes`) and on what (`device`), so a caller can decide without
 * parsing messages. Bugs in blockcore are assertions (assert.ts), never BlockErrors.
 */
export type BlockErrorCode =
  | 'ERANGE' // offset/length/bit position outside the device or bitmap
  | 'EINVAL' // malformed argument: negative, not an integer, unaligned where alignment is required
  | 'EROFS' // write/discard/flush-of-writes to a read-only device
  | 'EIO' // the medium failed (real or injected)
  | 'EBADF' // the device is closed
  | 'ENOTSUP' // the operation is not supported by this device
  | 'ENOENT' // a named thing does not exist
  | 'EEXIST' // a named thing exists already
  | 'EBUSY'; // the thing is in a state that refuses this now (an active leg to remove)

export interface BlockErrorDetail {
  offsetBytes?: number;
  lengthBytes?: number;
  device?: string;
  cause?: unknown;
}

export class BlockError extends Error {
  override name = 'BlockError';
  readonly code: BlockErrorCode;
  readonly offsetBytes: number | undefined;
  readonly lengthBytes: number | undefined;
  readonly device: string | undefined;

  constructor(code: BlockErrorCode, message: string, detail: BlockErrorDetail = {}) {
    super(formatMessage(code, message, detail), detail.cause === undefined ? undefined : { cause: detail.cause });
    this.code = code;
    this.offsetBytes = detail.offsetBytes;
    this.lengthBytes = detail.lengthBytes;
    this.device = detail.device;
  }
}

function formatMessage(code: BlockErrorCode, message: string, detail: BlockErrorDetail): string {
  const where: string[] = [];
  if (detail.device !== undefined) where.push(`device ${detail.device}`);
  if (detail.offsetBytes !== undefined) where.push(`offset ${detail.offsetBytes}`);
  if (detail.lengthBytes !== undefined) where.push(`length ${detail.lengthBytes}`);
  return where.length ? `${code}: ${message} (${where.join(', ')})` : `${code}: ${message}`;
}

/** True when `value` is a non-negative safe integer (the only shape an offset or length may take). */
export function isByteCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
