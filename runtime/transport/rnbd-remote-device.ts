/**
 * One device an RNBD server opened for us, as a BlockDevice (the `remote:` layer; RnbdClient in
 * rnbd-client.ts makes them and re-opens them after a reconnect). It speaks only through an
 * RtrsClientSession (rtrs-api.ts), so it works over whatever paths the session has.
 *
 * Geometry from OPEN_RSP: sizeBytes = nsectors x 512, logicalBlockBytes as sent (a power of two,
 * 512 to 32 KiB, dividing the size, else the open fails EIO). canWrite unless opened ro.
 * Discard: when the server offers write-zeroes, discard() sends WRITE_ZEROES (the server unmaps
 * where that reads back as zeros, else writes zeros), so discardZeroes is true and the outcome
 * 'zeroed'; when it offers only DISCARD, that is sent as a hint (discardZeroes false, 'ignored');
 * neither: canDiscard false. writeZeroes() sends WRITE_ZEROES with FUA / NOUNMAP as asked.
 *
 * Requests. Checked once here (validate.ts: EBADF, EINVAL, ERANGE, EROFS) before anything is sent.
 * Reads and writes are cut into pieces of the session's max IO (data only: the IO header travels in
 * the session's header room, maxHeaderBytes), capped by max_hw_sectors and aligned down to 4 KiB
 * (or the block);
 * up to PIECES_IN_FLIGHT_MAX pieces of one call are in flight at once, and the call settles only
 * when every piece it sent has (so a failed read never has pieces landing in the target later).
 * FUA goes on every piece of a FUA write. Discards and write-zeroes carry no data and are cut
 * only by the server's max sectors. flush() sends FLUSH (nothing for an ro mapping).
 *
 * Reconnects. While the client's link is not up (disconnected, or re-opening after a reconnect),
 * pieces wait before they are sent. A piece refused with ENOTCONN (the transport lost every path,
 * or the server no longer knows our device id) is sent again, with the device id of the latest
 * re-open, if the link went down or a re-open happened since it was sent; at most RETRIES_MAX
 * times. A re-open that fails, or finds other geometry, leaves the device failing every request
 * with EIO until a later re-open succeeds. close() stops the waiting pieces (EBADF), waits for the
 * pieces in flight, then sends CLOSE if the link is up (if it is down, the server keeps the
 * device open until it drops our session).
 */
import { assert } from '../assert.ts';
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../devices/block-device.ts';
import { OpGate } from '../devices/op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateOpen, validateRequest } from '../devices/validate.ts';
import { BlockError } from '../errors.ts';
import {
  decodeOpenRsp, encodeClose, encodeIo, encodeOpen, invalidOpenRsp, OPEN_RSP_BYTES, RNBD_F_FUA, RNBD_F_NOUNMAP, RNBD_OP,
  SECTOR_BYTES, type OpenRsp, type RnbdAccess,
} from './rnbd-messages.ts';
import { blockErrorOf, ERRNO, RemoteError, type RtrsClientSession } from './rtrs-api.ts';

const PIECE_ALIGN_BYTES = 4096;
const PIECES_IN_FLIGHT_MAX = 64;
const RETRIES_MAX = 4;
const MAX_LOGICAL_BLOCK_BYTES = 32 * 1024;
const BI_SIZE_MAX_BYTES = 0xffffffff;
const EMPTY = new Uint8Array(0);

/** What a RemoteDevice needs of its client. */
export interface RnbdLink {
  readonly session: RtrsClientSession;
  /** True while requests may go: connected, and every device re-opened after the last reconnect. */
  readonly isUp: boolean;
  /** The session will never reconnect (every path gave up, or it closed). */
  readonly isGone: boolean;
  /** Resolves at the next change of isUp. */
  changed(): Promise<void>;
  /** The device is closing: no more re-opens for it. */
  forget(device: RemoteDevice): void;
  /**
   * A device closed while the link was down (or broken) could not send its CLOSE: the client sends
   * it for this id after the next SESS_INFO, before any OPEN, in case the server kept our session.
   */
  closeLater(deviceId: number): void;
  log(line: string): void;
}

export interface WriteZeroesOptions {
  fua?: boolean;
  /** Zeros must be written, not unmapped (RNBD_F_NOUNMAP). */
  noUnmap?: boolean;
}

/** Sends OPEN and returns the checked OPEN_RSP; errors are BlockErrors naming the device. */
export async function requestOpen(session: RtrsClientSession, deviceName: string, access: RnbdAccess, label: string): Promise<OpenRsp> {
  const data = new Uint8Array(OPEN_RSP_BYTES);
  try {
    await session.request({ direction: 'read', header: encodeOpen({ access, deviceName }), data });
  } catch (error) {
    throw errorOf(error, `open ${access} refused`, label);
  }
  const problem = invalidOpenRsp(data) ?? geometryProblem(decodeOpenRsp(data));
  if (problem !== null) throw new BlockError('EIO', `open answered with a bad OPEN_RSP: ${problem}`, { device: label });
  return decodeOpenRsp(data);
}

function geometryProblem(rsp: OpenRsp): string | null {
  const blockBytes = rsp.logicalBlockBytes;
  if (blockBytes < SECTOR_BYTES || blockBytes > MAX_LOGICAL_BLOCK_BYTES || (blockBytes & (blockBytes - 1)) !== 0) return `logical block size ${blockBytes}`;
  if ((rsp.sizeSectors * SECTOR_BYTES) % blockBytes !== 0) return `${rsp.sizeSectors} sectors are not whole ${blockBytes}-byte blocks`;
  if (rsp.maxHwSectors * SECTOR_BYTES < blockBytes) return `max_hw_sectors ${rsp.maxHwSectors} is less than a block`;
  return null;
}

/** A transport or remote failure as a BlockError (RemoteError errnos mapped; BlockErrors kept). */
function errorOf(error: unknown, what: string, device: string, offsetBytes?: number, lengthBytes?: number): BlockError {
  if (error instanceof BlockError) return error;
  const where = offsetBytes === undefined ? '' : ` (offset ${offsetBytes}, length ${lengthBytes})`;
  if (error instanceof RemoteError) return blockErrorOf(error.errno, `${what}${where}: ${error.message}`, device);
  return new BlockError('EIO', `${what}: ${String(error)}`, { device, offsetBytes, lengthBytes, cause: error });
}

function alignDown(valueBytes: number, alignBytes: number): number {
  return Math.floor(valueBytes / alignBytes) * alignBytes;
}

export class RemoteDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;
  private deviceId: number;
  /** Counts re-opens: a piece sent under an older one may retry with the new id. */
  private generation = 0;
  private broken: BlockError | undefined;
  private readonly maxHwBytes: number;
  private readonly maxZeroesBytes: number;
  private readonly maxDiscardBytes: number;
  private readonly gate = new OpGate();
  private closeRequested = false;
  private wakeClosing!: () => void;
  private readonly closing = new Promise<void>((resolve) => (this.wakeClosing = resolve));

  constructor(private readonly link: RnbdLink, readonly deviceName: string, readonly access: RnbdAccess, rsp: OpenRsp) {
    assert(geometryProblem(rsp) === null, 'rnbd: remote device from an unchecked OPEN_RSP');
    this.name = `rnbd:${link.session.sessionName}/${deviceName}`;
    this.deviceId = rsp.deviceId;
    this.sizeBytes = rsp.sizeSectors * SECTOR_BYTES;
    this.logicalBlockBytes = rsp.logicalBlockBytes;
    this.canWrite = access !== 'ro';
    const cap = alignDown(BI_SIZE_MAX_BYTES, this.logicalBlockBytes);
    this.maxHwBytes = Math.min(cap, rsp.maxHwSectors * SECTOR_BYTES);
    this.maxZeroesBytes = Math.min(cap, alignDown(rsp.maxWriteZeroesSectors * SECTOR_BYTES, this.logicalBlockBytes));
    this.maxDiscardBytes = Math.min(cap, alignDown(rsp.maxDiscardSectors * SECTOR_BYTES, this.logicalBlockBytes));
    this.canDiscard = this.canWrite && (this.maxZeroesBytes > 0 || this.maxDiscardBytes > 0);
    this.discardZeroes = this.maxZeroesBytes > 0;
  }

  /** The largest read or write piece the session takes now, or 0 if not even one block fits. */
  pieceBytes(): number {
    const limitBytes = Math.min(this.link.session.maxIoBytes, this.maxHwBytes);
    if (limitBytes < this.logicalBlockBytes) return 0;
    const aligned = alignDown(limitBytes, Math.max(PIECE_ALIGN_BYTES, this.logicalBlockBytes));
    return aligned > 0 ? aligned : alignDown(limitBytes, this.logicalBlockBytes);
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    const lengthBytes = validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    if (lengthBytes === 0) return;
    await this.gate.track(() => this.transfer(RNBD_OP.READ, 0, offsetBytes, target));
  }

  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const lengthBytes = validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
    if (lengthBytes === 0) return;
    await this.gate.track(() => this.transfer(RNBD_OP.WRITE, options?.fua ? RNBD_F_FUA : 0, offsetBytes, data));
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
    if (!this.canWrite) return;
    await this.gate.track(() => this.send(RNBD_OP.FLUSH, 0, 0, 0, EMPTY));
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    if (!this.canDiscard) throw new BlockError('ENOTSUP', 'the server offers no discard for this device', { device: this.name, offsetBytes, lengthBytes });
    if (lengthBytes === 0) return EMPTY_DISCARD_OUTCOME;
    if (this.discardZeroes) {
      await this.gate.track(() => this.sized(RNBD_OP.WRITE_ZEROES, 0, offsetBytes, lengthBytes, this.maxZeroesBytes));
      return 'zeroed';
    }
    await this.gate.track(() => this.sized(RNBD_OP.DISCARD, 0, offsetBytes, lengthBytes, this.maxDiscardBytes));
    return 'ignored';
  }

  /** Makes the range read as zeros with RNBD's WRITE_ZEROES (checked like a discard). */
  async writeZeroes(offsetBytes: number, lengthBytes: number, options: WriteZeroesOptions = {}): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    if (this.maxZeroesBytes === 0) throw new BlockError('ENOTSUP', 'the server offers no write-zeroes for this device', { device: this.name, offsetBytes, lengthBytes });
    if (lengthBytes === 0) return;
    const flags = (options.fua ? RNBD_F_FUA : 0) | (options.noUnmap ? RNBD_F_NOUNMAP : 0);
    await this.gate.track(() => this.sized(RNBD_OP.WRITE_ZEROES, flags, offsetBytes, lengthBytes, this.maxZeroesBytes));
  }

  close(): Promise<void> {
    if (!this.closeRequested) {
      this.closeRequested = true;
      this.wakeClosing();
    }
    return this.gate.close(async () => {
      this.link.forget(this);
      if (!this.link.isUp || this.broken !== undefined) {
        if (!this.link.isGone) this.link.closeLater(this.deviceId);
        return;
      }
      try {
        await this.link.session.request({ direction: 'write', header: encodeClose({ deviceId: this.deviceId }), data: EMPTY });
      } catch (error) {
        this.link.log(`rnbd: ${this.name}: CLOSE failed: ${String(error)}`);
      }
    });
  }

  /** Opens the device again after a reconnect (the link is not up meanwhile): new id, same geometry. */
  async reopen(): Promise<void> {
    try {
      const rsp = await requestOpen(this.link.session, this.deviceName, this.access, this.name);
      if (rsp.sizeSectors * SECTOR_BYTES !== this.sizeBytes || rsp.logicalBlockBytes !== this.logicalBlockBytes) {
        // Opened on the server, unusable here: give the server its device back.
        await this.link.session.request({ direction: 'write', header: encodeClose({ deviceId: rsp.deviceId }), data: EMPTY }).catch(() => {});
        throw new BlockError('EIO', `geometry changed to ${rsp.sizeSectors} sectors of ${rsp.logicalBlockBytes}-byte blocks`, { device: this.name });
      }
      this.deviceId = rsp.deviceId;
      this.generation++;
      this.broken = undefined;
    } catch (error) {
      this.fail(error);
    }
  }

  /** Every request fails with EIO naming `cause` until a later re-open succeeds. */
  fail(cause: unknown): void {
    this.broken = new BlockError('EIO', `could not re-open after a reconnect: ${cause instanceof Error ? cause.message : String(cause)}`, { device: this.name, cause });
    this.link.log(`rnbd: ${this.broken.message}`);
  }

  /** Reads or writes `buffer` at `offsetBytes` in pieces the session takes. */
  private transfer(op: number, flags: number, offsetBytes: number, buffer: Uint8Array): Promise<void> {
    const pieceBytes = this.pieceBytes();
    if (pieceBytes === 0) throw new BlockError('EIO', `the session's max IO ${this.link.session.maxIoBytes} cannot carry one block`, { device: this.name });
    return this.inPieces(buffer.length, pieceBytes, (atBytes, lengthBytes) =>
      this.send(op, flags, offsetBytes + atBytes, lengthBytes, buffer.subarray(atBytes, atBytes + lengthBytes)));
  }

  /** A data-less op (discard, write-zeroes) over a range, cut at `maxBytes`. */
  private sized(op: number, flags: number, offsetBytes: number, lengthBytes: number, maxBytes: number): Promise<void> {
    return this.inPieces(lengthBytes, maxBytes, (atBytes, pieceBytes) => this.send(op, flags, offsetBytes + atBytes, pieceBytes, EMPTY));
  }

  /** Runs `issue` over [0, totalBytes) in pieces, a window of them at once; settles after every started piece has. */
  private async inPieces(totalBytes: number, pieceBytes: number, issue: (atBytes: number, lengthBytes: number) => Promise<void>): Promise<void> {
    if (totalBytes <= pieceBytes) return issue(0, totalBytes);
    let nextBytes = 0;
    let failure: unknown;
    let failed = false;
    const worker = async (): Promise<void> => {
      while (nextBytes < totalBytes && !failed) {
        const atBytes = nextBytes;
        const lengthBytes = Math.min(pieceBytes, totalBytes - atBytes);
        nextBytes += lengthBytes;
        try {
          await issue(atBytes, lengthBytes);
        } catch (error) {
          if (!failed) [failed, failure] = [true, error];
        }
      }
    };
    const workerCount = Math.min(PIECES_IN_FLIGHT_MAX, Math.ceil(totalBytes / pieceBytes));
    await Promise.all(Array.from({ length: workerCount }, worker));
    if (failed) throw failure;
  }

  /** One RNBD IO request, waiting for the link and retrying across a reconnect as the note says. */
  private async send(op: number, flags: number, offsetBytes: number, lengthBytes: number, data: Uint8Array): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.ready();
      const generation = this.generation;
      const header = encodeIo({ deviceId: this.deviceId, offsetSectors: offsetBytes / SECTOR_BYTES, op, flags, lengthBytes, prio: 0 });
      try {
        await this.link.session.request({ direction: op === RNBD_OP.READ ? 'read' : 'write', header, data });
        return;
      } catch (error) {
        const lostLink = error instanceof RemoteError && error.errno === ERRNO.ENOTCONN && (!this.link.isUp || this.generation !== generation);
        if (lostLink && attempt < RETRIES_MAX) continue;
        throw errorOf(error, `${OP_NAMES[op]} failed`, this.name, offsetBytes, lengthBytes);
      }
    }
  }

  /** Waits while the link is not up; EBADF if the device closes meanwhile, EIO if its re-open failed or the session is gone. */
  private async ready(): Promise<void> {
    while (!this.link.isUp) {
      if (this.closeRequested) throw new BlockError('EBADF', 'closed while waiting for the session to reconnect', { device: this.name });
      if (this.link.isGone) throw new BlockError('EIO', 'the session has no path left and will not reconnect', { device: this.name });
      await Promise.race([this.link.changed(), this.closing]);
    }
    if (this.broken !== undefined) throw this.broken;
  }
}

const OP_NAMES: Record<number, string> = {
  [RNBD_OP.READ]: 'read', [RNBD_OP.WRITE]: 'write', [RNBD_OP.FLUSH]: 'flush', [RNBD_OP.DISCARD]: 'discard', [RNBD_OP.WRITE_ZEROES]: 'write-zeroes',
};

assert(PIECE_ALIGN_BYTES % SECTOR_BYTES === 0, 'rnbd: piece alignment');
