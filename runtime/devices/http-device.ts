/**
 * HttpDevice: a read-only BlockDevice over an http(s) URL, read with Range requests. It is how a
 * clone hydrates from an image on a web server or object store.
 *
 * Open: one `GET` with `Range: bytes=0-0`. The answer must be 206 with `Content-Range: bytes
 * 0-0/<size>`; a 200 means the server ignores ranges and is refused (ENOTSUP), since reading the
 * whole image for every region would be ruinous. ETag / Last-Modified are remembered.
 * Reads: split into pieces of at most `pieceBytes`; at most `maxParallel` requests are in flight
 * for the whole device; each piece is retried on network errors, 408, 429 and 5xx with exponential
 * backoff (`retryBaseMs * 2^attempt`, up to `maxRetries`), and fails at once on other statuses.
 * Every 206 is checked: its Content-Range must name exactly the asked range and the same total
 * size, and its validator must not change; otherwise EIO "source changed" (a clone must never mix
 * two versions of its source). No data is cached here: a clone writes what it reads to its
 * destination, and page-cache-like caching belongs to the caller.
 */
import { BlockError } from '../errors.ts';
import type { BlockDevice, DiscardOutcome } from './block-device.ts';
import { OpGate } from './op-gate.ts';
import { validateOpen, validateRequest } from './validate.ts';

export interface HttpDeviceOptions {
  /** Requests in flight at once for this device. */
  maxParallel?: number;
  /** Largest single Range request. */
  pieceBytes?: number;
  maxRetries?: number;
  retryBaseMs?: number;
  /** Per-request time limit. */
  timeoutMs?: number;
  logicalBlockBytes?: number;
  /** Extra request headers (e.g. Authorization). */
  headers?: Record<string, string>;
}

const DEFAULTS = { maxParallel: 8, pieceBytes: 4 << 20, maxRetries: 5, retryBaseMs: 100, timeoutMs: 30_000, logicalBlockBytes: 512 };
const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

class Semaphore {
  private waiting: Array<() => void> = [];
  constructor(private available: number) {}
  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.available++;
  }
}

function parseContentRange(header: string | null): { first: number; last: number; total: number } | null {
  const match = header?.match(/^bytes (\d+)-(\d+)\/(\d+)$/);
  if (!match) return null;
  return { first: Number(match[1]), last: Number(match[2]), total: Number(match[3]) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class HttpDevice implements BlockDevice {
  readonly canWrite = false;
  readonly canDiscard = false;
  readonly discardZeroes = false;
  private readonly gate = new OpGate();
  private readonly slots: Semaphore;
  /** Requests made, retries done: for status and tests. */
  readonly counters = { requests: 0, retries: 0, bytes: 0 };

  private constructor(
    readonly name: string,
    private readonly url: string,
    readonly sizeBytes: number,
    readonly logicalBlockBytes: number,
    private readonly validator: string | null,
    private readonly options: Required<Omit<HttpDeviceOptions, 'headers'>> & { headers: Record<string, string> },
  ) {
    this.slots = new Semaphore(options.maxParallel);
  }

  static async open(url: string, options: HttpDeviceOptions = {}): Promise<HttpDevice> {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new BlockError('EINVAL', `not a URL: ${url}`, { device: url });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new BlockError('EINVAL', `only http and https sources are supported, not ${parsed.protocol}`, { device: url });
    }
    const settings = { ...DEFAULTS, headers: {}, ...options };
    for (const key of ['maxParallel', 'pieceBytes', 'logicalBlockBytes'] as const) {
      if (!Number.isSafeInteger(settings[key]) || settings[key] < 1) throw new BlockError('EINVAL', `${key} must be a positive integer`, { device: url });
    }
    const probe = new HttpDevice(url, url, 0, settings.logicalBlockBytes, null, settings);
    const response = await probe.fetchWithRetry(0, 0);
    if (response.status === 200) {
      await response.body?.cancel();
      throw new BlockError('ENOTSUP', 'the server does not support range requests (answered 200 to a Range request)', { device: url });
    }
    await response.arrayBuffer();
    const range = parseContentRange(response.headers.get('content-range'));
    if (!range || range.first !== 0 || range.last !== 0) {
      throw new BlockError('EIO', `bad Content-Range "${response.headers.get('content-range')}" from the server`, { device: url });
    }
    if (range.total % settings.logicalBlockBytes !== 0) {
      throw new BlockError('EINVAL', `source size ${range.total} is not a multiple of ${settings.logicalBlockBytes} bytes`, { device: url });
    }
    const validator = response.headers.get('etag') ?? response.headers.get('last-modified');
    return new HttpDevice(url, url, range.total, settings.logicalBlockBytes, validator, settings);
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    const lengthBytes = validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    if (lengthBytes === 0) return;
    await this.gate.track(async () => {
      // Every piece settles before the read does, so no piece writes into `target` after the read
      // has failed (or after close() stopped waiting); once one fails, pieces not started yet skip.
      const read = { failed: false };
      const pieces: Promise<void>[] = [];
      for (let done = 0; done < lengthBytes; done += this.options.pieceBytes) {
        const pieceBytes = Math.min(this.options.pieceBytes, lengthBytes - done);
        pieces.push(
          this.readPiece(offsetBytes + done, target.subarray(done, done + pieceBytes), read).catch((error: unknown) => {
            read.failed = true;
            throw error;
          }),
        );
      }
      const outcomes = await Promise.allSettled(pieces);
      const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      if (failure) throw failure.reason;
    });
  }

  private async readPiece(offsetBytes: number, target: Uint8Array, read: { failed: boolean }): Promise<void> {
    await this.slots.acquire();
    try {
      if (read.failed) return; // another piece of this read failed: the read fails anyway
      const lastByte = offsetBytes + target.length - 1;
      const response = await this.fetchWithRetry(offsetBytes, lastByte);
      const detail = { device: this.name, offsetBytes, lengthBytes: target.length };
      if (response.status !== 206) {
        await response.body?.cancel();
        throw new BlockError('EIO', `expected 206 Partial Content, got ${response.status}`, detail);
      }
      const range = parseContentRange(response.headers.get('content-range'));
      const validator = response.headers.get('etag') ?? response.headers.get('last-modified');
      if (!range || range.total !== this.sizeBytes || (this.validator !== null && validator !== this.validator)) {
        await response.body?.cancel();
        throw new BlockError('EIO', `source changed: size or version differs from when it was opened (Content-Range ${response.headers.get('content-range')})`, detail);
      }
      if (range.first !== offsetBytes || range.last !== lastByte) {
        await response.body?.cancel();
        throw new BlockError('EIO', `server answered range ${range.first}-${range.last} instead of ${offsetBytes}-${lastByte}`, detail);
      }
      const body = new Uint8Array(await response.arrayBuffer());
      if (body.length !== target.length) throw new BlockError('EIO', `short body: ${body.length} bytes`, detail);
      target.set(body);
      this.counters.bytes += body.length;
    } finally {
      this.slots.release();
    }
  }

  /** GET one byte range, retrying transient failures with exponential backoff. */
  private async fetchWithRetry(firstByte: number, lastByte: number): Promise<Response> {
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.options.maxRetries; attempt++) {
      if (attempt > 0) {
        this.counters.retries++;
        await sleep(this.options.retryBaseMs * 2 ** (attempt - 1));
      }
      this.counters.requests++;
      try {
        const response = await fetch(this.url, {
          headers: { ...this.options.headers, range: `bytes=${firstByte}-${lastByte}` },
          signal: AbortSignal.timeout(this.options.timeoutMs),
        });
        if (!RETRYABLE_STATUS.has(response.status)) {
          if (response.status === 200 || response.status === 206) return response;
          await response.body?.cancel();
          throw new BlockError('EIO', `HTTP ${response.status} ${response.statusText}`, { device: this.name, offsetBytes: firstByte, lengthBytes: lastByte - firstByte + 1 });
        }
        await response.body?.cancel();
        lastError = new Error(`HTTP ${response.status}`);
      } catch (error) {
        if (error instanceof BlockError) throw error;
        lastError = error;
      }
    }
    throw new BlockError('EIO', `unreachable after ${this.options.maxRetries + 1} attempts: ${(lastError as Error)?.message ?? lastError}`, {
      device: this.name, offsetBytes: firstByte, lengthBytes: lastByte - firstByte + 1, cause: lastError,
    });
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    throw new BlockError('EROFS', 'discard on a read-only device', { device: this.name });
  }

  close(): Promise<void> {
    return this.gate.close(() => {});
  }
}
