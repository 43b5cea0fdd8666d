/**
 * The one boundary check every device runs before it touches anything (STYLE 11, after nbdkit's
 * `validate_request`). A request that passes is safe to dispatch as is; a request that fails raises
 * a BlockError naming the field, and no byte has moved.
 *
 * Order of checks, first failure wins:
 *   1. EBADF   the device is closed (so after close() *every* call fails the same way);
 *   2. EINVAL  offset / length is not a non-negative safe integer (negative, fractional, NaN,
 *              Infinity, not a number), or the buffer is not a Uint8Array;
 *   3. EINVAL  offset / length is not a multiple of logicalBlockBytes ("unaligned");
 *   4. ERANGE  the range does not fit in [0, sizeBytes) — refused whole, never clamped;
 *   5. EROFS   a write or discard on a device that cannot write (reads and status queries pass).
 *
 * Zero-length requests pass through the same checks (so `offsetBytes === sizeBytes` is allowed
 * for them and nothing beyond it is) and are then no-ops: every device returns without touching
 * its medium. Defined once here so all devices agree.
 */
import { assert } from '../assert.ts';
import { BlockError, isByteCount } from '../errors.ts';
import type { DiscardOutcome } from './block-device.ts';

/** What the check needs to know about a device. Every BlockDevice has these fields. */
export interface DeviceShape {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
}

/**
 * 'status' is a block-status query, 'span' a fileSpan request and 'cache' a cache hint: ranges
 * given by length like 'discard', allowed on read-only devices.
 */
export type RequestKind = 'read' | 'write' | 'discard' | 'status' | 'span' | 'cache';

/** Outcome a device reports for a zero-length discard: nothing was released. */
export const EMPTY_DISCARD_OUTCOME: DiscardOutcome = 'zeroed';

/**
 * Checks one read/write/discard/status. `buffer` is the target or data for read/write (its length is
 * the request length); for discard and status pass the length instead. Returns the request length.
 */
export function validateRequest(
  device: DeviceShape,
  isOpen: boolean,
  kind: RequestKind,
  offsetBytes: unknown,
  bufferOrLength: unknown,
): number {
  // Fast accept: one pass with no allocation for the request that is fine (nearly all of them);
  // anything else goes to `refuse`, which finds the first failing check in the documented order.
  const lengthBytes = kind === 'discard' || kind === 'status' || kind === 'span' || kind === 'cache' ? bufferOrLength : bufferOrLength instanceof Uint8Array ? bufferOrLength.length : undefined;
  const blockBytes = device.logicalBlockBytes;
  if (
    isOpen &&
    typeof offsetBytes === 'number' && Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 &&
    typeof lengthBytes === 'number' && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0 &&
    offsetBytes % blockBytes === 0 && lengthBytes % blockBytes === 0 &&
    // Both are safe integers, so the subtraction cannot round; written so offset + length cannot overflow.
    offsetBytes <= device.sizeBytes && lengthBytes <= device.sizeBytes - offsetBytes &&
    (kind === 'read' || kind === 'status' || kind === 'span' || kind === 'cache' || device.canWrite)
  ) {
    return lengthBytes;
  }
  return refuse(device, isOpen, kind, offsetBytes, bufferOrLength, lengthBytes);
}

function refuse(device: DeviceShape, isOpen: boolean, kind: RequestKind, offsetBytes: unknown, bufferOrLength: unknown, lengthBytes: unknown): never {
  const detail = {
    offsetBytes: typeof offsetBytes === 'number' ? offsetBytes : undefined,
    lengthBytes: typeof lengthBytes === 'number' ? lengthBytes : undefined,
    device: device.name,
  };
  if (!isOpen) throw new BlockError('EBADF', `${kind} on a closed device`, detail);
  if ((kind === 'read' || kind === 'write') && !(bufferOrLength instanceof Uint8Array)) {
    throw new BlockError('EINVAL', `${kind} ${kind === 'read' ? 'target' : 'data'} must be a Uint8Array, got ${describe(bufferOrLength)}`, detail);
  }
  if (!isByteCount(offsetBytes)) throw new BlockError('EINVAL', `${kind} offsetBytes must be a non-negative safe integer, got ${describe(offsetBytes)}`, detail);
  if (!isByteCount(lengthBytes)) throw new BlockError('EINVAL', `${kind} lengthBytes must be a non-negative safe integer, got ${describe(lengthBytes)}`, detail);
  const blockBytes = device.logicalBlockBytes;
  if (offsetBytes % blockBytes !== 0) throw new BlockError('EINVAL', `${kind} offsetBytes is unaligned: not a multiple of logicalBlockBytes ${blockBytes}`, detail);
  if (lengthBytes % blockBytes !== 0) throw new BlockError('EINVAL', `${kind} lengthBytes is unaligned: not a multiple of logicalBlockBytes ${blockBytes}`, detail);
  if (offsetBytes > device.sizeBytes || lengthBytes > device.sizeBytes - offsetBytes) {
    throw new BlockError('ERANGE', `${kind} range ends beyond the device size ${device.sizeBytes}`, detail);
  }
  if ((kind === 'write' || kind === 'discard') && !device.canWrite) throw new BlockError('EROFS', `${kind} on a read-only device`, detail);
  assert(false, `validate: fast path refused a valid ${kind} request`);
}

/** Checks a call that takes no range (flush): only that the device is open. */
export function validateOpen(device: DeviceShape, isOpen: boolean, operation: string): void {
  if (!isOpen) throw new BlockError('EBADF', `${operation} on a closed device`, { device: device.name });
}

/**
 * Checks a device's geometry when it is made: logicalBlockBytes a power of two >= 1, sizeBytes a
 * non-negative safe integer and a multiple of it. Raises EINVAL naming the device.
 */
export function validateGeometry(name: string, sizeBytes: unknown, logicalBlockBytes: unknown): void {
  if (!isByteCount(logicalBlockBytes) || logicalBlockBytes < 1 || (logicalBlockBytes & (logicalBlockBytes - 1)) !== 0 || logicalBlockBytes > 2 ** 30) {
    throw new BlockError('EINVAL', `logicalBlockBytes must be a power of two between 1 and 2^30, got ${describe(logicalBlockBytes)}`, { device: name });
  }
  if (!isByteCount(sizeBytes)) {
    throw new BlockError('EINVAL', `sizeBytes must be a non-negative safe integer, got ${describe(sizeBytes)}`, { device: name });
  }
  if (sizeBytes % logicalBlockBytes !== 0) {
    throw new BlockError('EINVAL', `sizeBytes ${sizeBytes} is not a multiple of logicalBlockBytes ${logicalBlockBytes}`, { device: name });
  }
}

function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'bigint') return `bigint ${value}`;
  return typeof value;
}
