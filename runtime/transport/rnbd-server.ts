/**
 * The RNBD server: what RTRS hands each request to (an RtrsServerHandler), serving BlockDevices
 * by name, as the kernel's drivers/block/rnbd/rnbd-srv.c serves block devices.
 *
 * State. Per RTRS session (keyed by its uuid): the protocol version from SESS_INFO and a table of
 * open devices, device_id -> {name, access, device, in-flight gate}; ids count up from 0 and are
 * not reused within a session, so a late request for a closed id can never reach another device.
 * Across sessions: the number of writers (rw and migration openers) of each device name.
 *
 * Requests (each answers errno 0 by resolving, or a RemoteError / BlockError whose errno RTRS
 * sends; a malformed message answers EINVAL for that request only, nothing here throws otherwise):
 *   SESS_INFO  'read' of >= 36 bytes: SESS_INFO_RSP with min(client version, ours) goes there.
 *   OPEN       'read' of >= 56 bytes: OPEN_RSP goes there. The name is checked before anything
 *              else (empty, absolute, `..`, NUL: EINVAL), then normalised (`a//b/./c` is `a/b/c`,
 *              so one device has one writer count). If this session has the name open already
 *              with the same access, the same device_id is answered (what a client re-opening after
 *              a reconnect gets while the server kept its session, as the kernel does); with another
 *              access, EEXIST (the kernel would answer the old mapping whatever mode was asked).
 *              Access, as rnbd-srv's check_update_open_perm, decided before the resolver runs: ro
 *              always; rw only when the name has no writer; migration while it has fewer than two
 *              (one extra writer, for a VM moving hosts); else EPERM. A writer's device must have
 *              canWrite (else EROFS) and every device whole 512-byte sectors and a logical block of
 *              at most 32 KiB (u16 on the wire; else EINVAL).
 *   IO         device_id unknown or closing: ENOTCONN (as the kernel). Then, before any byte moves:
 *              READ must be a 'read' and every other op a 'write'; READ and WRITE carry exactly
 *              bi_size bytes, the others none; a write-type op on an ro mapping is EROFS; the range
 *              is checked like a device request (EINVAL unaligned, ERANGE beyond the end); DISCARD
 *              needs canDiscard and SECURE_ERASE is never offered (EOPNOTSUPP); FLUSH has bi_size 0.
 *              READ reads into the request's data, or lends the range (fileSpan) when the RTRS
 *              server can send it from the file (spanWelcome; no PREFLUSH or FUA); WRITE writes it ({fua} with RNBD_F_FUA, a flush
 *              first with PREFLUSH); FLUSH flushes; DISCARD discards; WRITE_ZEROES discards when that
 *              leaves zeros (discardZeroes, and no NOUNMAP), else writes zeros in 1 MiB pieces; FUA
 *              on an op other than WRITE flushes after it.
 *   CLOSE      the id leaves the table at once (later IO: ENOTCONN), in-flight IO drains, then the
 *              device is released and its writer count dropped; an unknown id answers 0 (kernel).
 * sessionClosed closes every device of the session the same way, after any OPEN already running.
 *
 * OPEN_RSP geometry: nsectors from sizeBytes; logical block = max(512, device's); physical = the
 * same; max_hw_sectors and max_write_zeroes_sectors as large as bi_size can say (the client caps
 * IO by its session's max IO size), discard likewise when the mapping may discard (granularity one
 * logical block), else 0; max_segments 128 (the block layer's default); no secure discard;
 * cache_policy WRITEBACK | FUA (devices have volatile caches that flush and FUA honour).
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { OpGate } from '../devices/op-gate.ts';
import { validateRequest, type DeviceShape } from '../devices/validate.ts';
import { ERRNO, RemoteError, type RtrsRequest, type RtrsServerHandler, type RtrsServerSession } from './rtrs-api.ts';
import {
  decodeClose, decodeIo, decodeOpen, decodeSessInfo, deviceNameProblem, encodeOpenRsp, encodeSessInfoRsp, invalidClose, invalidIo,
  invalidOpen, invalidSessInfo, messageType, normalizeDeviceName, OPEN_RSP_BYTES, RNBD_CACHE_FUA, RNBD_CACHE_WRITEBACK, RNBD_F_FUA, RNBD_F_NOUNMAP,
  RNBD_F_PREFLUSH, RNBD_MSG, RNBD_OP, RNBD_PROTOCOL_VERSION_MAJOR, SECTOR_BYTES, SESS_INFO_RSP_BYTES, type Io, type RnbdAccess,
} from './rnbd-messages.ts';

export interface ResolvedDevice {
  device: BlockDevice;
  /** Gives the device back (closes it, or drops a hold on a shared one); called exactly once. */
  release(): Promise<void>;
}

/** Opens the device a client named (already checked and normalised) for `access`. */
export type DeviceResolver = (name: string, access: RnbdAccess) => Promise<ResolvedDevice>;

export interface RnbdServerOptions {
  /** One line per refused open, malformed message and failed release. */
  log?: (line: string) => void;
}

/** One open device of one session, as listed by `RnbdServer.sessions()`. */
export interface RnbdOpenDevice {
  deviceId: number;
  name: string;
  access: RnbdAccess;
}

const MAX_LOGICAL_BLOCK_BYTES = 32 * 1024;
/** The most sectors bi_size (u32) can carry. */
const MAX_REQUEST_SECTORS = Math.floor(0xffffffff / SECTOR_BYTES);
const MAX_SEGMENTS = 128;
const ZERO_PIECE_BYTES = 1 << 20;
const DEVICE_ID_MAX = 0xffffffff;
/** Writers a name may have: one, plus one more with migration. */
const MAX_WRITERS = 2;

interface OpenEntry extends RnbdOpenDevice {
  readonly resolved: ResolvedDevice;
  /** The device as the client sees it (logical block at least a sector), for range checks. */
  readonly shape: DeviceShape;
  readonly gate: OpGate;
}

interface SessionState {
  readonly session: RtrsServerSession;
  version: number;
  closed: boolean;
  readonly byId: Map<number, OpenEntry>;
  readonly byName: Map<string, OpenEntry>;
  nextDeviceId: number;
  /** OPEN, CLOSE and sessionClosed run one at a time per session (the kernel's srv_sess->lock). */
  control: Promise<unknown>;
}

export class RnbdServer implements RtrsServerHandler {
  private readonly states = new Map<string, SessionState>();
  private readonly writers = new Map<string, number>();
  private readonly log: (line: string) => void;
  private zeros: Uint8Array | undefined;

  constructor(private readonly resolve: DeviceResolver, options: RnbdServerOptions = {}) {
    this.log = options.log ?? (() => {});
  }

  async handle(session: RtrsServerSession, request: RtrsRequest): Promise<void> {
    const type = messageType(request.header);
    if (typeof type === 'string') throw this.malformed(session, type);
    switch (type) {
      case RNBD_MSG.IO:
        return this.io(this.stateOf(session), request);
      case RNBD_MSG.SESS_INFO:
        return this.sessInfo(this.stateOf(session), request);
      case RNBD_MSG.OPEN:
        return this.open(this.stateOf(session), request);
      case RNBD_MSG.CLOSE:
        return this.close(this.stateOf(session), request);
      default:
        throw this.malformed(session, `unexpected RNBD message type ${type}`);
    }
  }

  async sessionClosed(session: RtrsServerSession): Promise<void> {
    const state = this.states.get(session.sessionUuid);
    if (state === undefined) return;
    state.closed = true;
    this.states.delete(session.sessionUuid);
    await this.serially(state, () => Promise.all([...state.byId.values()].map((entry) => this.closeEntry(state, entry))));
  }

  /** Every session that has sent a request and not closed, with its open devices, for status pages. */
  sessions(): Array<{ sessionName: string; sessionUuid: string; devices: RnbdOpenDevice[] }> {
    return [...this.states.values()].map((state) => ({
      sessionName: state.session.sessionName,
      sessionUuid: state.session.sessionUuid,
      devices: [...state.byId.values()].map(({ deviceId, name, access }) => ({ deviceId, name, access })),
    }));
  }

  /** How many writers `name` (normalised) has across all sessions. */
  writerCount(name: string): number {
    return this.writers.get(name) ?? 0;
  }

  private stateOf(session: RtrsServerSession): SessionState {
    let state = this.states.get(session.sessionUuid);
    if (state === undefined) {
      state = { session, version: RNBD_PROTOCOL_VERSION_MAJOR, closed: false, byId: new Map(), byName: new Map(), nextDeviceId: 0, control: Promise.resolve() };
      this.states.set(session.sessionUuid, state);
    }
    return state;
  }

  private serially<T>(state: SessionState, work: () => Promise<T>): Promise<T> {
    const result = state.control.then(work);
    state.control = result.catch(() => undefined);
    return result;
  }

  private malformed(session: RtrsServerSession, reason: string): RemoteError {
    this.log(`rnbd: session ${session.sessionName}: malformed request: ${reason}`);
    return new RemoteError(ERRNO.EINVAL, reason);
  }

  private refuse(state: SessionState, errno: number, reason: string): RemoteError {
    this.log(`rnbd: session ${state.session.sessionName}: ${reason}`);
    return new RemoteError(errno, reason);
  }

  // ---- SESS_INFO ----

  private async sessInfo(state: SessionState, request: RtrsRequest): Promise<void> {
    const problem = invalidSessInfo(request.header) ?? responseProblem(request, SESS_INFO_RSP_BYTES, 'sess_info');
    if (problem !== null) throw this.malformed(state.session, problem);
    state.version = Math.min(decodeSessInfo(request.header).version, RNBD_PROTOCOL_VERSION_MAJOR);
    encodeSessInfoRsp({ version: state.version }, request.data);
  }

  // ---- OPEN ----

  private async open(state: SessionState, request: RtrsRequest): Promise<void> {
    const problem = invalidOpen(request.header) ?? responseProblem(request, OPEN_RSP_BYTES, 'open');
    if (problem !== null) throw this.malformed(state.session, problem);
    const { access, deviceName } = decodeOpen(request.header);
    const nameProblem = deviceNameProblem(deviceName);
    if (nameProblem !== null) throw this.refuse(state, ERRNO.EINVAL, `open '${deviceName}' refused: ${nameProblem}`);
    const name = normalizeDeviceName(deviceName);
    if (name === '') throw this.refuse(state, ERRNO.EINVAL, `open '${deviceName}' refused: device name is empty`);
    // Checked when the OPEN arrives: one queued before sessionClosed still runs, and is closed after.
    if (state.closed) throw new RemoteError(ERRNO.ENOTCONN, `session ${state.session.sessionName} is closed`);
    const entry = await this.serially(state, () => this.openEntry(state, name, access));
    encodeOpenRsp(openRspOf(entry), request.data);
  }

  private async openEntry(state: SessionState, name: string, access: RnbdAccess): Promise<OpenEntry> {
    const held = state.byName.get(name);
    if (held !== undefined) {
      if (held.access === access) return held;
      throw this.refuse(state, ERRNO.EEXIST, `open '${name}' ${access} refused: this session has it open ${held.access}`);
    }
    const writer = access !== 'ro';
    const writerCount = this.writerCount(name);
    if (writer && writerCount >= (access === 'rw' ? 1 : MAX_WRITERS)) {
      throw this.refuse(state, ERRNO.EPERM, `open '${name}' ${access} refused: it has ${writerCount} writer(s) already`);
    }
    if (writer) this.writers.set(name, writerCount + 1);
    let resolved: ResolvedDevice;
    try {
      resolved = await this.resolve(name, access);
    } catch (error) {
      if (writer) this.dropWriter(name);
      this.log(`rnbd: session ${state.session.sessionName}: open '${name}' ${access} failed: ${String(error)}`);
      throw error;
    }
    const problem = geometryProblem(resolved.device, writer);
    if (problem !== null) {
      await this.releaseQuietly(state, name, resolved);
      if (writer) this.dropWriter(name);
      throw this.refuse(state, problem.errno, `open '${name}' ${access} refused: ${problem.reason}`);
    }
    const { device } = resolved;
    const shape: DeviceShape = { name: device.name, sizeBytes: device.sizeBytes, logicalBlockBytes: advertisedBlockBytes(device), canWrite: device.canWrite };
    const entry: OpenEntry = { deviceId: this.allocateId(state), name, access, resolved, shape, gate: new OpGate() };
    state.byId.set(entry.deviceId, entry);
    state.byName.set(name, entry);
    return entry;
  }

  private allocateId(state: SessionState): number {
    for (;;) {
      const id = state.nextDeviceId;
      state.nextDeviceId = id === DEVICE_ID_MAX ? 0 : id + 1;
      if (!state.byId.has(id)) return id;
    }
  }

  // ---- CLOSE ----

  private async close(state: SessionState, request: RtrsRequest): Promise<void> {
    const problem = invalidClose(request.header);
    if (problem !== null) throw this.malformed(state.session, problem);
    const { deviceId } = decodeClose(request.header);
    await this.serially(state, async () => {
      const entry = state.byId.get(deviceId);
      if (entry !== undefined) await this.closeEntry(state, entry);
    });
  }

  private async closeEntry(state: SessionState, entry: OpenEntry): Promise<void> {
    state.byId.delete(entry.deviceId);
    state.byName.delete(entry.name);
    await entry.gate.close(() => this.releaseQuietly(state, entry.name, entry.resolved));
    if (entry.access !== 'ro') this.dropWriter(entry.name);
  }

  private async releaseQuietly(state: SessionState, name: string, resolved: ResolvedDevice): Promise<void> {
    try {
      await resolved.release();
    } catch (error) {
      this.log(`rnbd: session ${state.session.sessionName}: release of '${name}' failed: ${String(error)}`);
    }
  }

  private dropWriter(name: string): void {
    const count = (this.writers.get(name) ?? 0) - 1;
    if (count > 0) this.writers.set(name, count);
    else this.writers.delete(name);
  }

  // ---- IO ----

  private async io(state: SessionState, request: RtrsRequest): Promise<void> {
    const problem = invalidIo(request.header);
    if (problem !== null) throw this.malformed(state.session, problem);
    const io = decodeIo(request.header);
    const entry = state.byId.get(io.deviceId);
    if (entry === undefined || !entry.gate.isOpen) {
      throw new RemoteError(ERRNO.ENOTCONN, `IO for device id ${io.deviceId}, which session ${state.session.sessionName} has not open`);
    }
    const ioProblem = this.checkIo(entry, io, request);
    if (ioProblem !== null) throw this.refuse(state, ioProblem.errno, `IO on '${entry.name}' refused: ${ioProblem.reason}`);
    const device = entry.resolved.device;
    if (io.op === RNBD_OP.READ && request.spanWelcome === true && device.fileSpan !== undefined && (io.flags & (RNBD_F_PREFLUSH | RNBD_F_FUA)) === 0) {
      // Lent, not read: the RTRS server sends the bytes straight from the file (zero copy).
      const span = device.fileSpan(io.offsetSectors * SECTOR_BYTES, io.lengthBytes);
      if (span !== null) {
        request.span = span;
        return;
      }
    }
    await entry.gate.track(() => this.run(device, io, request.data));
  }

  /** Everything about an IO that can be judged before it runs; range errors throw BlockErrors. */
  private checkIo(entry: OpenEntry, io: Io, request: RtrsRequest): { errno: number; reason: string } | null {
    const isRead = io.op === RNBD_OP.READ;
    if (request.direction !== (isRead ? 'read' : 'write')) return { errno: ERRNO.EINVAL, reason: `op ${io.op} sent as a ${request.direction}` };
    const carriesData = isRead || io.op === RNBD_OP.WRITE;
    const dataBytes = carriesData ? io.lengthBytes : 0;
    if (request.data.length !== dataBytes) return { errno: ERRNO.EINVAL, reason: `op ${io.op} of bi_size ${io.lengthBytes} carries ${request.data.length} bytes of data` };
    if (io.op === RNBD_OP.SECURE_ERASE) return { errno: ERRNO.EOPNOTSUPP, reason: 'secure erase is not supported' };
    if (io.op === RNBD_OP.FLUSH) return io.lengthBytes === 0 ? null : { errno: ERRNO.EINVAL, reason: `flush of bi_size ${io.lengthBytes}` };
    if (!isRead && entry.access === 'ro') return { errno: ERRNO.EROFS, reason: `op ${io.op} on a read-only mapping` };
    const device = entry.resolved.device;
    if (io.op === RNBD_OP.DISCARD && !device.canDiscard) return { errno: ERRNO.EOPNOTSUPP, reason: 'the device cannot discard' };
    // Range and alignment exactly as every device checks them (BlockError EINVAL / ERANGE).
    const offsetBytes = io.offsetSectors * SECTOR_BYTES;
    if (carriesData) validateRequest(entry.shape, true, isRead ? 'read' : 'write', offsetBytes, request.data);
    else validateRequest(entry.shape, true, 'discard', offsetBytes, io.lengthBytes);
    return null;
  }

  private async run(device: BlockDevice, io: Io, data: Uint8Array): Promise<void> {
    const offsetBytes = io.offsetSectors * SECTOR_BYTES;
    const fua = (io.flags & RNBD_F_FUA) !== 0;
    if ((io.flags & RNBD_F_PREFLUSH) !== 0 && io.op !== RNBD_OP.FLUSH) await device.flush();
    switch (io.op) {
      case RNBD_OP.READ:
        return device.read(offsetBytes, data);
      case RNBD_OP.WRITE:
        return device.write(offsetBytes, data, fua ? { fua: true } : undefined);
      case RNBD_OP.FLUSH:
        return device.flush();
      case RNBD_OP.DISCARD:
        await device.discard(offsetBytes, io.lengthBytes);
        break;
      case RNBD_OP.WRITE_ZEROES:
        await this.writeZeroes(device, offsetBytes, io.lengthBytes, (io.flags & RNBD_F_NOUNMAP) === 0);
        break;
    }
    if (fua) await device.flush();
  }

  private async writeZeroes(device: BlockDevice, offsetBytes: number, lengthBytes: number, mayUnmap: boolean): Promise<void> {
    if (mayUnmap && device.canDiscard && device.discardZeroes) {
      await device.discard(offsetBytes, lengthBytes);
      return;
    }
    this.zeros ??= new Uint8Array(ZERO_PIECE_BYTES);
    for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += ZERO_PIECE_BYTES) {
      const pieceBytes = Math.min(ZERO_PIECE_BYTES, lengthBytes - doneBytes);
      await device.write(offsetBytes + doneBytes, this.zeros.subarray(0, pieceBytes));
    }
  }
}

function responseProblem(request: RtrsRequest, needBytes: number, label: string): string | null {
  if (request.direction !== 'read') return `${label} sent as a ${request.direction}, not a read`;
  if (request.data.length < needBytes) return `${label} response buffer of ${request.data.length} bytes, ${needBytes} needed`;
  return null;
}

function geometryProblem(device: BlockDevice, writer: boolean): { errno: number; reason: string } | null {
  if (writer && !device.canWrite) return { errno: ERRNO.EROFS, reason: 'the device is read-only' };
  if (device.sizeBytes % SECTOR_BYTES !== 0) return { errno: ERRNO.EINVAL, reason: `size ${device.sizeBytes} is not whole 512-byte sectors` };
  if (device.logicalBlockBytes > MAX_LOGICAL_BLOCK_BYTES) return { errno: ERRNO.EINVAL, reason: `logical block ${device.logicalBlockBytes} is over 32 KiB` };
  return null;
}

function advertisedBlockBytes(device: BlockDevice): number {
  return Math.max(SECTOR_BYTES, device.logicalBlockBytes);
}

function openRspOf(entry: OpenEntry): Parameters<typeof encodeOpenRsp>[0] {
  const device = entry.resolved.device;
  const blockBytes = entry.shape.logicalBlockBytes;
  const mayWrite = entry.access !== 'ro';
  const mayDiscard = mayWrite && device.canDiscard;
  return {
    deviceId: entry.deviceId,
    sizeSectors: device.sizeBytes / SECTOR_BYTES,
    maxHwSectors: MAX_REQUEST_SECTORS,
    maxWriteZeroesSectors: mayWrite ? MAX_REQUEST_SECTORS : 0,
    maxDiscardSectors: mayDiscard ? MAX_REQUEST_SECTORS : 0,
    discardGranularityBytes: mayDiscard ? blockBytes : 0,
    discardAlignmentBytes: 0,
    physicalBlockBytes: blockBytes,
    logicalBlockBytes: blockBytes,
    maxSegments: MAX_SEGMENTS,
    secureDiscard: 0,
    rotational: 0,
    cachePolicy: RNBD_CACHE_WRITEBACK | RNBD_CACHE_FUA,
  };
}
