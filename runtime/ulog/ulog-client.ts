/**
 * The userspace dirty log's client (dm-log-userspace-base.c and -transfer.c's role): a log kept
 * by a log server, asked for what a mirror needs. It is what the mirror engine holds as its log.
 *
 * Requests and replies (ulog-link.ts): each request gets a new seq; its reply is matched by seq,
 * late or unknown replies are dropped. No reply in `timeoutMs` (15 s, the kernel's
 * DM_ULOG_RETRY_TIMEOUT) -> sent again with a new seq. -EAGAIN -> sent again at once. -ESRCH (the
 * server lost the log: it restarted) or the link going down -> recovery: every `retryMs` (2 s)
 * connect if need be and send CTR with the original arguments, then RESUME, then every request
 * that was waiting again; one recovery at a time, every waiting request rides on it. CTR,
 * RESUME and the other lifecycle requests are sent once (their failure is the caller's).
 *
 * Marks and clears are queued (`mark`, `clear`) and sent at `flush` in groups of up to 32 regions,
 * clears first, then marks, then FLUSH (with `integratedFlush`, the marks ride on FLUSH itself);
 * flush resolves once FLUSH is answered, so a mark is durable in a disk log when it does.
 */
import { ULOG_ERRNO, ulogErrorName } from './ulog-errno.ts';
import { decodePair, decodeString, decodeU64, encodePair, encodeRegions, encodeString, encodeU64, ULOG, ULOG_UUID_BYTES, ULOG_VERSION, ulogTypeName, type UlogHeader, type UlogType } from './ulog-frame.ts';
import type { UlogLink, UlogLinkFactory } from './ulog-link.ts';

export const ULOG_RETRY_TIMEOUT_MS = 15_000;
export const ULOG_ESRCH_RETRY_MS = 2_000;
export const ULOG_FLUSH_GROUP = 32;

export interface UlogClientOptions {
  link: UlogLinkFactory;
  uuid: string;
  /** The log's table arguments after the uuid: "core 1024", "disk <dev> 1024 nosync", ... */
  logArgs: string;
  targetSectors: number;
  /** Locally unique (a new one per client when absent). */
  luid?: number;
  timeoutMs?: number;
  retryMs?: number;
  /**
   * Give up a recovery after this long (the waiting requests fail with ESRCH); absent: retry for
   * ever, as the kernel does. A mirror gives up after a minute and goes on with a core log.
   */
  giveUpMs?: number;
  integratedFlush?: boolean;
  log?: (line: string) => void;
}

export class UlogError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

interface Pending {
  type: UlogType;
  data: Uint8Array;
  seq: number;
  resolve(data: Uint8Array): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout> | null;
  /** Lifecycle requests are not resent through recovery. */
  once: boolean;
}

let nextLuid = Math.floor(Math.random() * 2 ** 30) * 2 ** 16;
let nextSeq = Math.floor(Math.random() * 2 ** 31);

export class UlogClient {
  readonly luid: number;
  regionSectors = 0;
  regionCount = 0;
  private link: UlogLink | null = null;
  private readonly pending = new Map<number, Pending>();
  private recovering: Promise<void> | null = null;
  private marks: number[] = [];
  private clears: number[] = [];
  private closed = false;
  /** Counters: requests sent (with resends), resends by cause, recoveries. */
  readonly counters = { requests: 0, timeouts: 0, eagain: 0, recoveries: 0 };

  private constructor(private readonly options: UlogClientOptions) {
    this.luid = options.luid ?? ++nextLuid;
  }

  /** Constructs the log on the server (CTR, then GET_REGION_SIZE), as the kernel's ctr does. Inactive until `resume`. */
  static async open(options: UlogClientOptions): Promise<UlogClient> {
    if (new TextEncoder().encode(options.uuid).length >= ULOG_UUID_BYTES) throw new UlogError(ULOG_ERRNO.EINVAL, `uuid "${options.uuid.slice(0, 40)}..." is longer than ${ULOG_UUID_BYTES - 1} bytes`);
    const client = new UlogClient(options);
    try {
      await client.connect();
      try {
        await client.request(ULOG.CTR, client.ctrString(), true);
      } catch (error) {
        // A CTR resent after a timeout finds the first one's instance: ours, so constructed.
        if (!(error instanceof UlogError && error.errno === ULOG_ERRNO.EEXIST && client.counters.timeouts > 0)) throw error;
      }
      client.regionSectors = replyU64(await client.request(ULOG.GET_REGION_SIZE, new Uint8Array(0), true), 'GET_REGION_SIZE');
      if (client.regionSectors < 1) throw new UlogError(ULOG_ERRNO.EPROTO, `the server gave region size ${client.regionSectors}`);
      client.regionCount = Math.ceil(options.targetSectors / client.regionSectors);
    } catch (error) {
      client.shut();
      throw error;
    }
    return client;
  }

  get uuid(): string {
    return this.options.uuid;
  }

  /** Marks and clears queued for the next flush. */
  get queued(): number {
    return this.marks.length + this.clears.length;
  }

  async resume(): Promise<void> {
    await this.request(ULOG.RESUME, new Uint8Array(0), true);
  }

  async presuspend(): Promise<void> {
    await this.request(ULOG.PRESUSPEND, new Uint8Array(0), true);
  }

  async postsuspend(): Promise<void> {
    await this.request(ULOG.POSTSUSPEND, new Uint8Array(0), true);
  }

  /** DTR, then the link closes. */
  async destroy(): Promise<void> {
    try {
      await this.request(ULOG.DTR, new Uint8Array(0), true);
    } finally {
      this.shut();
    }
  }

  /** Lets go of the link without DTR (the log stays on the server). */
  shut(): void {
    this.closed = true;
    for (const pending of this.pending.values()) this.settle(pending, new UlogError(ULOG_ERRNO.EIO, 'the log client closed'));
    this.link?.close();
    this.link = null;
  }

  async isClean(region: number): Promise<boolean> {
    return replyU64(await this.request(ULOG.IS_CLEAN, encodeU64(region)), 'IS_CLEAN') === 1;
  }

  async inSync(region: number): Promise<boolean> {
    return replyU64(await this.request(ULOG.IN_SYNC, encodeU64(region)), 'IN_SYNC') === 1;
  }

  mark(region: number): void {
    this.marks.push(region);
  }

  clear(region: number): void {
    this.clears.push(region);
  }

  /** Sends the queued clears and marks in groups, then FLUSH; resolves once it is answered. */
  async flush(): Promise<void> {
    const clears = this.clears;
    const marks = this.marks;
    this.clears = [];
    this.marks = [];
    // A server that restarted meanwhile lost what it was sent before (its new instance was
    // constructed and resumed from the disk log alone): the whole batch goes again.
    for (;;) {
      const recoveries = this.counters.recoveries;
      await this.sendBatch(clears, marks);
      if (this.counters.recoveries === recoveries) return;
    }
  }

  private async sendBatch(clears: readonly number[], marks: readonly number[]): Promise<void> {
    for (let at = 0; at < clears.length; at += ULOG_FLUSH_GROUP) await this.request(ULOG.CLEAR_REGION, encodeRegions(clears.slice(at, at + ULOG_FLUSH_GROUP)));
    if (this.options.integratedFlush) {
      if (marks.length === 0) await this.request(ULOG.FLUSH, new Uint8Array(0));
      for (let at = 0; at < marks.length; at += ULOG_FLUSH_GROUP) await this.request(ULOG.FLUSH, encodeRegions(marks.slice(at, at + ULOG_FLUSH_GROUP)));
      return;
    }
    for (let at = 0; at < marks.length; at += ULOG_FLUSH_GROUP) await this.request(ULOG.MARK_REGION, encodeRegions(marks.slice(at, at + ULOG_FLUSH_GROUP)));
    await this.request(ULOG.FLUSH, new Uint8Array(0));
  }

  /** True while the log is being constructed again on a server that lost it (requests wait). */
  get isRecovering(): boolean {
    return this.recovering !== null;
  }

  /** The next region to resync (now recovering on the server), or null. */
  async resyncWork(): Promise<number | null> {
    const [has, region] = replyPair(await this.request(ULOG.GET_RESYNC_WORK, new Uint8Array(0)), 'GET_RESYNC_WORK');
    if (has !== 0 && (region < 0 || region >= this.regionCount)) throw new UlogError(ULOG_ERRNO.EPROTO, `GET_RESYNC_WORK gave region ${region} of ${this.regionCount}`);
    return has === 0 ? null : region;
  }

  async setRegionSync(region: number, inSync: boolean): Promise<void> {
    await this.request(ULOG.SET_REGION_SYNC, encodePair(region, inSync ? 1 : 0));
  }

  async syncCount(): Promise<number> {
    return replyU64(await this.request(ULOG.GET_SYNC_COUNT, new Uint8Array(0)), 'GET_SYNC_COUNT');
  }

  async isRemoteRecovering(region: number): Promise<{ recovering: boolean; inSyncHint: number }> {
    const [recovering, hint] = replyPair(await this.request(ULOG.IS_REMOTE_RECOVERING, encodeU64(region)), 'IS_REMOTE_RECOVERING');
    return { recovering: recovering !== 0, inSyncHint: hint };
  }

  async statusInfo(): Promise<string> {
    return decodeString(await this.request(ULOG.STATUS_INFO, new Uint8Array(0))) ?? '';
  }

  /** The log's own table words from its server (STATUS_TABLE: `core 1 1024 `, `disk 2 <dev> 1024 `). */
  async statusTableFromServer(): Promise<string> {
    return decodeString(await this.request(ULOG.STATUS_TABLE, new Uint8Array(0))) ?? '';
  }

  /** The userspace log's table arguments as dm prints them: `userspace <#args> <uuid> <log args> `. */
  statusTable(): string {
    const words = [this.options.uuid, ...(this.options.integratedFlush ? ['integrated_flush'] : []), ...this.options.logArgs.trim().split(/\s+/)];
    return `userspace ${words.length} ${words.join(' ')} `;
  }

  // ---- requests ----

  private ctrString(): Uint8Array {
    return encodeString(`${this.options.targetSectors} ${this.options.logArgs.trim()}`);
  }

  /** One request; resent on timeout and -EAGAIN, through recovery on -ESRCH (unless `once`). */
  private request(type: UlogType, data: Uint8Array, once = false): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new UlogError(ULOG_ERRNO.EIO, 'the log client is closed'));
    return new Promise((resolve, reject) => {
      const pending: Pending = { type, data, seq: 0, resolve, reject, timer: null, once };
      if (this.recovering !== null && !once) {
        this.afterRecovery(pending);
        return;
      }
      this.send(pending);
    });
  }

  private send(pending: Pending): void {
    if (this.closed) {
      this.settle(pending, new UlogError(ULOG_ERRNO.EIO, 'the log client is closed'));
      return;
    }
    pending.seq = nextSeq = (nextSeq + 1) >>> 0;
    this.pending.set(pending.seq, pending);
    this.counters.requests += 1;
    const timeoutMs = this.options.timeoutMs ?? ULOG_RETRY_TIMEOUT_MS;
    pending.timer = setTimeout(() => {
      if (this.pending.get(pending.seq) !== pending) return;
      this.pending.delete(pending.seq);
      this.counters.timeouts += 1;
      this.say(`request timed out: [${ulogTypeName(pending.type)}/${pending.seq}] - retrying`);
      this.send(pending);
    }, timeoutMs); // not unref'd: a request waiting for its reply keeps the process alive
    const header: UlogHeader = { luid: this.luid, uuid: this.options.uuid, version: ULOG_VERSION, error: 0, seq: pending.seq, type: pending.type, typeFlags: 0, dataBytes: pending.data.length };
    if (this.link === null) {
      // No link (it went down): the request waits for the recovery that makes one.
      this.pending.delete(pending.seq);
      clearTimeout(pending.timer);
      if (pending.once) this.settle(pending, new UlogError(ULOG_ERRNO.ESRCH, 'no connection to the log server'));
      else this.afterRecovery(pending);
      return;
    }
    this.link.send(header, pending.data);
  }

  private replied(header: UlogHeader, data: Uint8Array): void {
    const pending = this.pending.get(header.seq);
    if (pending === undefined || pending.type !== header.type) return; // late (resent since) or not ours
    this.pending.delete(header.seq);
    clearTimeout(pending.timer ?? undefined);
    if (header.error === 0) {
      pending.resolve(data);
      return;
    }
    if (header.error === -ULOG_ERRNO.EAGAIN) {
      this.counters.eagain += 1;
      this.send(pending);
      return;
    }
    if (header.error === -ULOG_ERRNO.ESRCH && !pending.once) {
      this.afterRecovery(pending);
      return;
    }
    pending.reject(new UlogError(-header.error, `${ulogTypeName(pending.type)} for log ${this.options.uuid}: ${ulogErrorName(header.error)}`));
  }

  /** The request goes again once the log is back on the server (starting the recovery if none runs). */
  private afterRecovery(pending: Pending): void {
    this.recovering ??= this.recover().finally(() => {
      this.recovering = null;
    });
    this.recovering.then(() => this.send(pending), (error: Error) => this.settle(pending, error));
  }

  /** Every retryMs: a link if there is none, CTR, RESUME; until both succeed or the client closes. */
  private async recover(): Promise<void> {
    this.counters.recoveries += 1;
    const retryMs = this.options.retryMs ?? ULOG_ESRCH_RETRY_MS;
    const startedMs = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, retryMs));
      if (this.closed) throw new UlogError(ULOG_ERRNO.EIO, 'the log client closed');
      if (this.options.giveUpMs !== undefined && Date.now() - startedMs > this.options.giveUpMs) {
        this.say(`log ${this.options.uuid} unreachable for ${this.options.giveUpMs} ms: giving up`);
        throw new UlogError(ULOG_ERRNO.ESRCH, `log ${this.options.uuid}: no log server for ${this.options.giveUpMs} ms`);
      }
      try {
        if (this.link === null) await this.connect();
        try {
          await this.request(ULOG.CTR, this.ctrString(), true);
        } catch (error) {
          if (!(error instanceof UlogError && error.errno === ULOG_ERRNO.EEXIST)) throw error; // EEXIST: it is there after all
        }
        await this.request(ULOG.RESUME, new Uint8Array(0), true);
        this.say(`log ${this.options.uuid} constructed and resumed again on the server`);
        return;
      } catch (error) {
        if (attempt === 0 || attempt % 5 === 0) this.say(`log ${this.options.uuid} unreachable, retrying every ${retryMs} ms: ${(error as Error).message}`);
      }
    }
  }

  private async connect(): Promise<void> {
    const link = await this.options.link({
      reply: (header, data) => {
        if (this.link === link) this.replied(header, data);
      },
      down: (why) => {
        if (this.link !== link) return;
        this.link = null;
        if (this.closed) return;
        this.say(`link to the log server down: ${why}`);
        // Every request in flight goes through recovery (lifecycle requests fail: they are the recovery's own).
        const inFlight = [...this.pending.values()];
        this.pending.clear();
        for (const pending of inFlight) {
          clearTimeout(pending.timer ?? undefined);
          if (pending.once) this.settle(pending, new UlogError(ULOG_ERRNO.ESRCH, `the log server went away: ${why}`));
          else this.afterRecovery(pending);
        }
      },
    });
    if (this.closed) {
      link.close();
      throw new UlogError(ULOG_ERRNO.EIO, 'the log client closed');
    }
    this.link = link;
  }

  private settle(pending: Pending, error: Error): void {
    clearTimeout(pending.timer ?? undefined);
    this.pending.delete(pending.seq);
    pending.reject(error);
  }

  private say(line: string): void {
    try {
      this.options.log?.(`ulog client ${this.options.uuid}/${this.luid}: ${line}`);
    } catch {
      // a log sink that throws loses its line
    }
  }
}

/** A u64 reply, or EPROTO: a server's malformed reply is its fault, never a NaN of ours. */
function replyU64(data: Uint8Array, what: string): number {
  const value = decodeU64(data);
  if (typeof value === 'string') throw new UlogError(ULOG_ERRNO.EPROTO, `${what} reply: ${value}`);
  return value;
}

function replyPair(data: Uint8Array, what: string): [number, number] {
  const pair = decodePair(data);
  if (typeof pair === 'string') throw new UlogError(ULOG_ERRNO.EPROTO, `${what} reply: ${pair}`);
  return pair;
}
