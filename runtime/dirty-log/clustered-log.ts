/**
 * `clustered-core <region> [sync|nosync] [block_on_error]` and `clustered-disk <dev> <region> ...`
 * as cmirrord serves them: one log shared by the log servers of several machines, each serving
 * its own mirror's client. Every request that reads or changes the log's state goes through an
 * ordering group (ordering.ts: one group per uuid), so every member applies every request in the
 * same order and holds the same replica; IN_SYNC, GET_SYNC_COUNT and GET_REGION_SIZE are answered
 * from the local replica.
 *
 * Members and their roles:
 *   joining ──(first member: loads the log: disk or core)──► valid
 *   joining ──(a checkpoint addressed to it)──► valid       (events after its join replayed)
 *   valid ──POSTSUSPEND / DTR──► left
 * The lowest member id is the server: it alone writes a clustered-disk log (at FLUSH, and when it
 * becomes the server) and answers FLUSH with FLUSH_DONE once the log is durable; the member whose
 * request it was replies to its client then. When the server leaves with FLUSHes outstanding, the
 * next one writes and answers them. A joiner gets a checkpoint (sync bits, clean bits, the region
 * being recovered and by whom, the marks and the recovery requests) from the lowest member that
 * was there before it, taken at its join's place in the order.
 *
 * Regions: a member's MARK adds it to the region's markers (the clean bit clears at the first);
 * its CLEAR removes it, and the clean bit is set only when no member still has the region marked
 * and it is in sync. A member that leaves (or dies) takes its marks with it and the regions it had
 * marked are put out of sync: its writes may have reached one leg only. Resync is handed out one
 * region at a time cluster-wide; regions other members wait to write (IS_REMOTE_RECOVERING) first.
 *
 * Messages (little-endian): kind u8, then
 *   1 REQUEST     requestId u32, type u8, data
 *   2 FLUSH_DONE  requestId u32, originator u32, error i32
 *   3 CHECKPOINT  for u32, recovering region f64 (-1: none), recoverer u32, marks count u32,
 *                 (region f64, member u32)*, requests count u32, region f64*, clean bytes u32,
 *                 clean bits, sync bits (the same length)
 */
import { BlockError } from '../errors.ts';
import { ULOG_ERRNO } from '../ulog/ulog-errno.ts';
import { decodePair, decodeRegions, decodeU64, encodePair, encodeString, encodeU64, ULOG, type UlogType } from '../ulog/ulog-frame.ts';
import type { UlogReply } from '../ulog/ulog-handler.ts';
import type { LogArgs } from './log-args.ts';
import type { LogBits } from './log-bits.ts';
import type { MembershipChange, OrderedMessage, Ordering, OrderingHandle } from './ordering.ts';
import type { LogDeviceState, RegionLog } from './region-log.ts';

const REQUEST = 1;
const FLUSH_DONE = 2;
const CHECKPOINT = 3;

/** The request types that go through the group. */
export const ORDERED_TYPES: ReadonlySet<number> = new Set([
  ULOG.IS_CLEAN, ULOG.FLUSH, ULOG.MARK_REGION, ULOG.CLEAR_REGION, ULOG.GET_RESYNC_WORK, ULOG.SET_REGION_SYNC, ULOG.IS_REMOTE_RECOVERING, ULOG.STATUS_INFO,
]);

/** What a clustered log keeps its bits in: a core or disk log of this member (only the server's is written). */
export interface ClusteredStore extends RegionLog {
  /** Writes the whole log (a member that became the server; a disk log's image may be stale). */
  writeWhole?(): Promise<void>;
}

interface Waiting {
  resolve(reply: UlogReply): void;
}

export class ClusteredLog implements RegionLog {
  private handle: OrderingHandle | null = null;
  private members: number[] = [];
  private valid = false;
  private loading = false;
  private validWaiters: Array<() => void> = [];
  private buffered: Array<{ message?: OrderedMessage; change?: MembershipChange }> = [];
  private readonly marks = new Map<number, Set<number>>();
  private recovering: { region: number; by: number } | null = null;
  private readonly requests: number[] = [];
  private nextRequest = 1;
  private readonly waiting = new Map<number, Waiting>();
  /** FLUSHes delivered and not yet answered by the server: originator and request id. */
  private readonly unanswered: Array<{ originator: number; requestId: number }> = [];
  private serverWriting: Promise<void> = Promise.resolve();
  applied = 0;

  constructor(
    readonly uuid: string,
    private readonly store: ClusteredStore,
    private readonly ordering: Ordering,
  ) {}

  get args(): LogArgs {
    return this.store.args;
  }

  get bits(): LogBits {
    return this.store.bits;
  }

  get deviceName(): string | null {
    return this.store.deviceName;
  }

  get deviceState(): LogDeviceState {
    return this.store.deviceState;
  }

  get memberId(): number | null {
    return this.handle?.memberId ?? null;
  }

  get groupMembers(): number {
    return this.members.length;
  }

  get isServer(): boolean {
    return this.handle !== null && this.members[0] === this.handle.memberId;
  }

  /** Joins the group; resolves once this member holds the log's state (loaded, or a checkpoint). */
  async resume(): Promise<void> {
    if (this.handle === null) {
      this.valid = false;
      const handle = this.ordering.join(`ulog:${this.uuid}`, {
        deliver: (message) => this.event({ message }),
        membership: (change) => this.event({ change }),
        lost: (why) => this.lost(handle, why),
      });
      this.handle = handle;
    }
    if (!this.valid) await new Promise<void>((resolve) => this.validWaiters.push(resolve));
  }

  async presuspend(): Promise<void> {}

  async postsuspend(): Promise<void> {
    this.leave();
  }

  async flush(): Promise<void> {
    // FLUSH goes through the group (ordered); this is for the server's own use.
  }

  /** A request that goes through the group; resolves with this member's reply once it is applied (a FLUSH once it is durable). */
  async ordered(type: UlogType, data: Uint8Array): Promise<UlogReply> {
    // Joining again after the group lost us: wait for the checkpoint rather than refuse.
    if (this.handle !== null && !this.valid && this.rejoining) await new Promise<void>((resolve) => this.validWaiters.push(resolve));
    if (this.handle === null || !this.valid) return { error: -ULOG_ERRNO.EINVAL };
    const requestId = this.nextRequest++;
    const body = new Uint8Array(6 + data.length);
    const view = new DataView(body.buffer);
    body[0] = REQUEST;
    view.setUint32(1, requestId, true);
    body[5] = type;
    body.set(data, 6);
    return new Promise((resolve) => {
      this.waiting.set(requestId, { resolve });
      this.handle!.send(body);
    });
  }

  statusInfo(): string {
    return this.args.type === 'clustered-core' ? '1 clustered-core' : `3 clustered-disk ${this.deviceName} ${this.deviceState === 'A' ? 'A' : 'D'}`;
  }

  statusTable(): string {
    const sync = this.args.sync === 'default' ? '' : `${this.args.sync} `;
    const block = this.args.blockOnError ? 'block_on_error ' : '';
    return this.args.type === 'clustered-core' ? `clustered-core ${this.args.regionSectors} ${sync}${block}` : `clustered-disk ${this.deviceName} ${this.args.regionSectors} ${sync}${block}`;
  }

  async close(): Promise<void> {
    this.leave();
    await this.serverWriting.catch(() => {});
    await this.store.close();
  }

  // ---- the ordered stream ----

  /**
   * The ordering lost this member (lease or watch gone): every request in flight is answered
   * EAGAIN (the client sends it again) and the member joins again, taking a checkpoint from the
   * serving member (or loading the log when alone).
   */
  private lost(handle: OrderingHandle, why: string): void {
    if (this.handle !== handle) return;
    console.warn(`clustered log ${this.uuid}: out of its group (${why}); joining again`);
    this.handle = null;
    this.valid = false;
    for (const waiting of this.waiting.values()) waiting.resolve({ error: -ULOG_ERRNO.EAGAIN });
    this.waiting.clear();
    this.rejoining = true;
    void this.resume().finally(() => {
      this.rejoining = false;
    });
  }

  private rejoining = false;

  private leave(): void {
    if (this.handle === null) return;
    this.handle.leave();
    this.handle = null;
    this.valid = false;
    for (const waiting of this.waiting.values()) waiting.resolve({ error: -ULOG_ERRNO.EINVAL });
    this.waiting.clear();
  }

  private event(event: { message?: OrderedMessage; change?: MembershipChange }): void {
    if (this.handle === null) return;
    if (!this.valid) {
      // Before this member has state, a checkpoint for it is applied and the rest kept for after.
      if (event.message !== undefined && event.message.body[0] === CHECKPOINT && this.checkpointFor(event.message.body) === this.handle.memberId) {
        this.importCheckpoint(event.message.body);
        this.becomeValid();
        const later = this.buffered;
        this.buffered = [];
        for (const next of later) this.event(next);
        return;
      }
      if (!this.loading && event.change !== undefined && event.change.members[0] === this.handle.memberId) {
        // First member, or every member that had state left: load the log itself. What comes
        // meanwhile (a joiner) waits and is applied once it holds the state.
        this.members = event.change.members;
        this.buffered = [];
        this.loading = true;
        void this.loadOwn();
        return;
      }
      this.buffered.push(event);
      return;
    }
    this.applied += 1;
    if (event.change !== undefined) this.membershipChanged(event.change);
    else if (event.message !== undefined) this.apply(event.message);
  }

  private async loadOwn(): Promise<void> {
    try {
      await this.store.resume();
    } catch (error) {
      // A disk log that cannot be read or written: every region out of sync (the store's bits
      // say so), the device marked failed in the status line; the members go on.
      this.bits.sync.clearRange(0, this.args.regionCount);
      this.bits.restartSearch();
      void error;
    } finally {
      this.loading = false;
      this.becomeValid();
      const later = this.buffered;
      this.buffered = [];
      for (const next of later) this.event(next);
    }
  }

  private becomeValid(): void {
    this.valid = true;
    const waiters = this.validWaiters;
    this.validWaiters = [];
    for (const wake of waiters) wake();
  }

  private membershipChanged(change: MembershipChange): void {
    const before = this.members;
    const wasServer = this.isServer;
    this.members = change.members;
    for (const gone of change.left) {
      for (const [region, markers] of this.marks) {
        if (!markers.delete(gone)) continue;
        // Its writes there may have reached one leg only: resync the region.
        this.bits.setSync(region, false);
        if (markers.size === 0) this.marks.delete(region);
      }
      if (this.recovering?.by === gone) {
        this.bits.setSync(this.recovering.region, false);
        this.recovering = null;
      }
    }
    // The lowest member that was there before the joiners sends each its checkpoint.
    const senders = before.filter((id) => !change.left.includes(id));
    if (change.joined.length > 0 && senders[0] === this.handle!.memberId) {
      for (const joiner of change.joined) if (joiner !== this.handle!.memberId) this.handle!.send(this.exportCheckpoint(joiner));
    }
    if (!wasServer && this.isServer) {
      // The new server writes the log as it holds it, then answers the FLUSHes the old one left.
      this.serverWrite(() => this.store.writeWhole?.() ?? this.store.flush(), this.unanswered.splice(0));
    }
  }

  private apply(message: OrderedMessage): void {
    const body = message.body;
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    if (body[0] === CHECKPOINT) return; // for a joiner
    if (body[0] === FLUSH_DONE) {
      const requestId = view.getUint32(1, true);
      const originator = view.getUint32(5, true);
      const error = view.getInt32(9, true);
      const at = this.unanswered.findIndex((flush) => flush.originator === originator && flush.requestId === requestId);
      if (at >= 0) this.unanswered.splice(at, 1);
      if (originator === this.handle!.memberId) this.answer(requestId, { error });
      return;
    }
    const requestId = view.getUint32(1, true);
    const type = body[5] as UlogType;
    const data = body.subarray(6);
    const mine = message.from === this.handle!.memberId;
    let reply: UlogReply | 'later';
    try {
      reply = this.applyRequest(message.from, requestId, type, data);
    } catch (error) {
      reply = { error: -(error instanceof BlockError && error.code === 'ERANGE' ? ULOG_ERRNO.EINVAL : ULOG_ERRNO.EIO) };
    }
    if (mine && reply !== 'later') this.answer(requestId, reply);
  }

  /** Applies one request to this replica: the reply, or 'later' (a disk FLUSH: answered by FLUSH_DONE). */
  private applyRequest(from: number, requestId: number, type: UlogType, data: Uint8Array): UlogReply | 'later' {
    const bits = this.bits;
    const regionCount = this.args.regionCount;
    const region = (): number => {
      const value = decodeU64(data) as number;
      if (value >= regionCount) throw new BlockError('ERANGE', `region ${value} past the log`);
      return value;
    };
    const regions = (): number[] => {
      const list = decodeRegions(data) as number[];
      for (const value of list) if (value >= regionCount) throw new BlockError('ERANGE', `region ${value} past the log`);
      return list;
    };
    switch (type) {
      case ULOG.MARK_REGION:
        for (const r of regions()) this.mark(r, from);
        return { error: 0 };
      case ULOG.CLEAR_REGION:
        for (const r of regions()) this.clear(r, from);
        return { error: 0 };
      case ULOG.FLUSH: {
        for (const r of regions()) this.mark(r, from);
        if (this.args.type === 'clustered-core') {
          bits.touchedCleaned = false;
          bits.touchedDirtied = false;
          return { error: 0 };
        }
        this.unanswered.push({ originator: from, requestId });
        if (this.isServer) this.serverWrite(() => this.store.flush(), this.unanswered.splice(0));
        return 'later';
      }
      case ULOG.IS_CLEAN:
        return { error: 0, data: encodeU64(bits.isClean(region()) ? 1 : 0) };
      case ULOG.GET_RESYNC_WORK: {
        if (this.recovering !== null) {
          return { error: 0, data: this.recovering.by === from ? encodePair(1, this.recovering.region) : encodePair(0, 0) };
        }
        while (this.requests.length > 0) {
          const wanted = this.requests.pop()!;
          if (bits.takeForResync(wanted)) {
            this.recovering = { region: wanted, by: from };
            return { error: 0, data: encodePair(1, wanted) };
          }
        }
        const next = bits.resyncWork();
        if (next === null) return { error: 0, data: encodePair(0, 0) };
        this.recovering = { region: next, by: from };
        return { error: 0, data: encodePair(1, next) };
      }
      case ULOG.SET_REGION_SYNC: {
        const [r, inSync] = decodePair(data) as [number, number];
        if (r >= regionCount) throw new BlockError('ERANGE', `region ${r} past the log`);
        bits.setSync(r, inSync !== 0);
        if (this.recovering?.region === r) this.recovering = null;
        return { error: 0 };
      }
      case ULOG.IS_REMOTE_RECOVERING: {
        const r = region();
        const recovering = !bits.inSync(r);
        if (recovering && this.recovering?.region !== r && !this.requests.includes(r)) this.requests.push(r);
        return { error: 0, data: encodePair(recovering ? 1 : 0, 0) };
      }
      case ULOG.STATUS_INFO:
        return { error: 0, data: encodeString(this.statusInfo()) };
      default:
        return { error: -ULOG_ERRNO.EINVAL };
    }
  }

  private mark(region: number, member: number): void {
    let markers = this.marks.get(region);
    if (markers === undefined) this.marks.set(region, (markers = new Set()));
    if (markers.size === 0) this.bits.mark(region);
    markers.add(member);
  }

  private clear(region: number, member: number): void {
    const markers = this.marks.get(region);
    markers?.delete(member);
    if (markers !== undefined && markers.size > 0) return;
    this.marks.delete(region);
    if (this.bits.inSync(region)) this.bits.clear(region);
  }

  /** The server writes the log (one write at a time, in order), then answers `flushes` with FLUSH_DONE. */
  private serverWrite(write: () => Promise<void>, flushes: Array<{ originator: number; requestId: number }>): void {
    this.serverWriting = this.serverWriting.catch(() => {}).then(async () => {
      let error = 0;
      try {
        await write();
      } catch {
        error = -ULOG_ERRNO.EIO;
      }
      for (const flush of flushes) {
        const body = new Uint8Array(13);
        const view = new DataView(body.buffer);
        body[0] = FLUSH_DONE;
        view.setUint32(1, flush.requestId, true);
        view.setUint32(5, flush.originator, true);
        view.setInt32(9, error, true);
        this.handle?.send(body);
      }
    });
  }

  private answer(requestId: number, reply: UlogReply): void {
    const waiting = this.waiting.get(requestId);
    if (waiting === undefined) return;
    this.waiting.delete(requestId);
    waiting.resolve(reply);
  }

  // ---- checkpoints ----

  private checkpointFor(body: Uint8Array): number {
    return new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(1, true);
  }

  private exportCheckpoint(joiner: number): Uint8Array {
    const marks: Array<[number, number]> = [];
    for (const [region, markers] of this.marks) for (const member of markers) marks.push([region, member]);
    const clean = this.bits.clean.toBytes();
    const sync = this.bits.sync.toBytes();
    const size = 1 + 4 + 8 + 4 + 4 + marks.length * 12 + 4 + this.requests.length * 8 + 4 + clean.length * 2;
    const body = new Uint8Array(size);
    const view = new DataView(body.buffer);
    let at = 0;
    body[at] = CHECKPOINT;
    at += 1;
    view.setUint32(at, joiner, true);
    at += 4;
    view.setFloat64(at, this.recovering?.region ?? -1, true);
    at += 8;
    view.setUint32(at, this.recovering?.by ?? 0, true);
    at += 4;
    view.setUint32(at, marks.length, true);
    at += 4;
    for (const [region, member] of marks) {
      view.setFloat64(at, region, true);
      view.setUint32(at + 8, member, true);
      at += 12;
    }
    view.setUint32(at, this.requests.length, true);
    at += 4;
    for (const region of this.requests) {
      view.setFloat64(at, region, true);
      at += 8;
    }
    view.setUint32(at, clean.length, true);
    at += 4;
    body.set(clean, at);
    body.set(sync, at + clean.length);
    return body;
  }

  private importCheckpoint(body: Uint8Array): void {
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    let at = 5;
    const region = view.getFloat64(at, true);
    const by = view.getUint32(at + 8, true);
    at += 12;
    this.recovering = region < 0 ? null : { region, by };
    const markCount = view.getUint32(at, true);
    at += 4;
    this.marks.clear();
    for (let i = 0; i < markCount; i++) {
      const r = view.getFloat64(at, true);
      const member = view.getUint32(at + 8, true);
      at += 12;
      let markers = this.marks.get(r);
      if (markers === undefined) this.marks.set(r, (markers = new Set()));
      markers.add(member);
    }
    const requestCount = view.getUint32(at, true);
    at += 4;
    this.requests.length = 0;
    for (let i = 0; i < requestCount; i++) {
      this.requests.push(view.getFloat64(at, true));
      at += 8;
    }
    const length = view.getUint32(at, true);
    at += 4;
    this.bits.clean.loadBytes(0, body.subarray(at, at + length));
    this.bits.sync.loadBytes(0, body.subarray(at + length, at + 2 * length));
    this.bits.restartSearch();
    if (this.recovering !== null) this.bits.takeForResync(this.recovering.region);
  }
}
