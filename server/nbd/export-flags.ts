/**
 * What an export offers a client: transmission flags and block-size constraints, computed in one
 * place for NBD_INFO_EXPORT, the EXPORT_NAME reply and the request check.
 *
 * NBD_FLAG_CAN_MULTI_CONN is advertised on every export. proto.md allows it when a FLUSH (or FUA)
 * on one connection makes the completed writes of every connection durable. That holds here:
 * every connection to an export reaches the same underlying BlockDevice, in this process (`lookup`
 * may hand each connection its own view, like the service's metered views, but a view's flush()
 * must reach the one device beneath, and the service opens each device once); we reply to a write
 * only after the device's write resolved; and the device contract makes flush() durable for every
 * write completed before it, whoever issued it (FileDevice: one fd, whose fdatasync covers the
 * file; a clone: one metadata commit). Read-only exports have no writes to lose, so the flag is
 * trivially true for them.
 */
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import {
  MAX_BLOCK_BYTES, MAX_MINIMUM_BLOCK_BYTES, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, PREFERRED_BLOCK_BYTES,
} from './constants.ts';

export interface ExportShape {
  readOnly: boolean;
  device: BlockDevice;
}

/** Writable through NBD: the export allows it and the device can. */
export function isWritable(exported: ExportShape): boolean {
  return !exported.readOnly && exported.device.canWrite;
}

export function transmissionFlags(exported: ExportShape, structuredReplies: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF; // every read is one chunk anyway
  if (!isWritable(exported)) return flags | NBD_FLAG_READ_ONLY;
  // FAST_ZERO is offered on every writable export: a WRITE_ZEROES that cannot be fast (see
  // export-session.ts) is refused with ENOTSUP at once, which is what the flag asks for.
  flags |= NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  if (exported.device.canDiscard) flags |= NBD_FLAG_SEND_TRIM;
  return flags;
}

export interface BlockSizes {
  minimumBytes: number;
  preferredBytes: number;
  maximumBytes: number;
}

/** The device's logical block is the minimum; null when it exceeds what NBD can advertise (64 KiB). */
export function blockSizes(device: BlockDevice): BlockSizes | null {
  const minimumBytes = device.logicalBlockBytes;
  if (minimumBytes > MAX_MINIMUM_BLOCK_BYTES) return null;
  return { minimumBytes, preferredBytes: Math.max(PREFERRED_BLOCK_BYTES, minimumBytes), maximumBytes: MAX_BLOCK_BYTES };
}
