/**
 * KvDevice: a BlockDevice over a key-value store, for hosts whose storage is a key-value API and
 * not files: a Durable Object's storage (workerd, Cloudflare), or memory in tests (memory-kv.ts).
 *
 * Layout (frozen: a device written by one build opens in the next). Under the prefix `dev:<name>:`
 *   `m`          the manifest, JSON {format: 1, sizeBytes, logicalBlockBytes, chunkBytes}
 *   `c<index>`   chunk `index` (decimal): bytes [index * chunkBytes, +chunkBytes) of the device, the
 *                last one shorter when the size is not a whole number of chunks; an absent chunk
 *                reads as zeros (a new device stores nothing but its manifest)
 * Chunks are 64 KiB by default: Durable Object values may be up to 128 KiB (KV backend) or 2 MiB
 * (SQLite backend), and a store call takes at most KV_BATCH_KEYS_MAX keys.
 *
 * Writes run one at a time (a write that covers part of a chunk reads, changes and puts it back,
 * so two of them on one chunk must not interleave); reads run beside them and see each chunk
 * either before or after a write. A write is in the store when it resolves, durable once a later
 * flush resolves, or at once with FUA: flush is the store's sync(), which a Durable Object
 * resolves when every earlier put and delete is on disk. Discard deletes whole chunks and zeroes
 * the parts of others; the range reads as zeros after.
 */
import { BlockError } from '../errors.ts';
import type { BlockDevice, DiscardOutcome, WriteOptions } from './block-device.ts';
import { OpGate } from './op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateGeometry, validateOpen, validateRequest } from './validate.ts';

/** The store calls a device makes; a Durable Object's `ctx.storage` has them (kv-storage adapters map them). */
export interface KvStorage {
  get(keys: string[]): Promise<Map<string, unknown>>;
  put(entries: Record<string, unknown>): Promise<void>;
  delete(keys: string[]): Promise<unknown>;
  /** Resolves once every put and delete made before it is durable. */
  sync(): Promise<void>;
  /**
   * Up to `limit` keys that start with `prefix`, in key order, after `startAfter` (null: from the
   * first). A Durable Object's list() reads the values too, so callers page with a small limit.
   */
  listKeys(prefix: string, startAfter: string | null, limit: number): Promise<string[]>;
}

/** Keys per listKeys page: 64 chunks of 64 KiB is 4 MiB a Durable Object reads per page. */
export const KV_LIST_PAGE_KEYS = 64;

/** Every key that starts with `prefix`, page by page. */
export async function* kvKeys(storage: KvStorage, prefix: string): AsyncGenerator<string[]> {
  let after: string | null = null;
  for (;;) {
    const page = await storage.listKeys(prefix, after, KV_LIST_PAGE_KEYS);
    if (page.length === 0) return;
    yield page;
    if (page.length < KV_LIST_PAGE_KEYS) return;
    after = page[page.length - 1]!;
  }
}

export const KV_BATCH_KEYS_MAX = 128;
export const KV_CHUNK_BYTES_DEFAULT = 64 * 1024;
const FORMAT = 1;

export interface KvManifest {
  format: number;
  sizeBytes: number;
  logicalBlockBytes: number;
  chunkBytes: number;
}

export interface KvDeviceCreateOptions {
  sizeBytes: number;
  logicalBlockBytes?: number;
  chunkBytes?: number;
}

export function kvDevicePrefix(name: string): string {
  return `dev:${name}:`;
}

/** The manifest of device `name`, or null when there is none; one this build cannot use is EIO. */
export async function readKvManifest(storage: KvStorage, name: string): Promise<KvManifest | null> {
  const value = (await storage.get([`${kvDevicePrefix(name)}m`])).get(`${kvDevicePrefix(name)}m`);
  if (value === undefined) return null;
  const refuse = (why: string) => new BlockError('EIO', `device ${name}: its manifest in the store ${why}`, { device: name });
  if (typeof value !== 'string') throw refuse('is not text');
  let manifest: Partial<KvManifest>;
  try {
    manifest = JSON.parse(value) as Partial<KvManifest>;
  } catch {
    throw refuse('is not JSON');
  }
  if (typeof manifest !== 'object' || manifest === null || manifest.format !== FORMAT) throw refuse(`is not format ${FORMAT}`);
  const { sizeBytes, logicalBlockBytes, chunkBytes } = manifest;
  const positive = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
  if (!positive(sizeBytes) || !positive(logicalBlockBytes) || !positive(chunkBytes)) throw refuse('has sizes that are not positive integers');
  if ((logicalBlockBytes & (logicalBlockBytes - 1)) !== 0 || sizeBytes % logicalBlockBytes !== 0 || chunkBytes % logicalBlockBytes !== 0) {
    throw refuse('has a size or chunk size that is not whole blocks of a power-of-two size');
  }
  return { format: FORMAT, sizeBytes, logicalBlockBytes, chunkBytes };
}

export class KvDevice implements BlockDevice {
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes = true;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  private readonly chunkBytes: number;
  private readonly prefix: string;
  private readonly gate = new OpGate();
  /** The write (or discard) running now; the next one starts after it. */
  private writeTail: Promise<unknown> = Promise.resolve();

  private constructor(readonly name: string, private readonly storage: KvStorage, manifest: KvManifest, readOnly: boolean) {
    this.sizeBytes = manifest.sizeBytes;
    this.logicalBlockBytes = manifest.logicalBlockBytes;
    this.chunkBytes = manifest.chunkBytes;
    this.prefix = kvDevicePrefix(name);
    this.canWrite = !readOnly;
    this.canDiscard = !readOnly;
  }

  /** Writes the manifest of a new, all-zero device (EEXIST if `name` has one). */
  static async create(storage: KvStorage, name: string, options: KvDeviceCreateOptions): Promise<void> {
    const manifest: KvManifest = {
      format: FORMAT,
      sizeBytes: options.sizeBytes,
      logicalBlockBytes: options.logicalBlockBytes ?? 512,
      chunkBytes: options.chunkBytes ?? KV_CHUNK_BYTES_DEFAULT,
    };
    validateGeometry(name, manifest.sizeBytes, manifest.logicalBlockBytes);
    if (!Number.isSafeInteger(manifest.chunkBytes) || manifest.chunkBytes < manifest.logicalBlockBytes || manifest.chunkBytes % manifest.logicalBlockBytes !== 0) {
      throw new BlockError('EINVAL', `chunkBytes must be a multiple of logicalBlockBytes ${manifest.logicalBlockBytes}`, { device: name });
    }
    if ((await readKvManifest(storage, name)) !== null) throw new BlockError('EEXIST', `device ${name} exists already`, { device: name });
    await storage.put({ [`${kvDevicePrefix(name)}m`]: JSON.stringify(manifest) });
    await storage.sync();
  }

  static async open(storage: KvStorage, name: string, options: { readOnly?: boolean } = {}): Promise<KvDevice> {
    const manifest = await readKvManifest(storage, name);
    if (manifest === null) throw new BlockError('ENOENT', `device ${name} does not exist`, { device: name });
    return new KvDevice(name, storage, manifest, options.readOnly === true);
  }

  /** Bytes of the chunks device `name` has stored (absent chunks take none): pages through its keys. */
  static async allocatedBytes(storage: KvStorage, name: string, manifest: KvManifest): Promise<number> {
    let chunks = 0;
    for await (const page of kvKeys(storage, `${kvDevicePrefix(name)}c`)) chunks += page.length;
    return Math.min(manifest.sizeBytes, chunks * manifest.chunkBytes);
  }

  /** Deletes device `name`: the chunks it has stored (whatever its size), then its manifest. */
  static async remove(storage: KvStorage, name: string): Promise<void> {
    const manifest = await readKvManifest(storage, name);
    if (manifest === null) throw new BlockError('ENOENT', `device ${name} does not exist`, { device: name });
    const prefix = kvDevicePrefix(name);
    for (;;) {
      // Deleting as we go: each page starts again from the first key left.
      const page = await storage.listKeys(`${prefix}c`, null, KV_BATCH_KEYS_MAX);
      if (page.length === 0) break;
      await storage.delete(page);
    }
    await storage.delete([`${prefix}m`]);
    await storage.sync();
  }

  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    return this.gate.track(async () => {
      const lengthBytes = validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
      if (lengthBytes === 0) return;
      const chunks = await this.getChunks(this.chunkIndexes(offsetBytes, lengthBytes));
      this.forEachChunk(offsetBytes, lengthBytes, (index, inChunkBytes, doneBytes, spanBytes) => {
        const chunk = chunks.get(index);
        if (chunk === undefined) target.fill(0, doneBytes, doneBytes + spanBytes);
        else target.set(chunk.subarray(inChunkBytes, inChunkBytes + spanBytes), doneBytes);
      });
    });
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.gate.track(async () => {
      const lengthBytes = validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
      if (lengthBytes === 0) return;
      await this.oneAtATime(() => this.change(offsetBytes, lengthBytes, (chunk, inChunkBytes, doneBytes, spanBytes) => chunk.set(data.subarray(doneBytes, doneBytes + spanBytes), inChunkBytes)));
      if (options?.fua === true) await this.storage.sync();
    });
  }

  flush(): Promise<void> {
    return this.gate.track(async () => {
      validateOpen(this, this.gate.isOpen, 'flush');
      await this.writeTail;
      await this.storage.sync();
    });
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    return this.gate.track(async () => {
      validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
      if (lengthBytes === 0) return EMPTY_DISCARD_OUTCOME;
      let partial = false;
      await this.oneAtATime(() =>
        this.change(offsetBytes, lengthBytes, (chunk, inChunkBytes, _doneBytes, spanBytes) => {
          chunk.fill(0, inChunkBytes, inChunkBytes + spanBytes);
          partial = true;
        }, true),
      );
      return partial ? 'zeroed' : 'punched';
    });
  }

  close(): Promise<void> {
    return this.gate.close(() => {});
  }

  private oneAtATime<T>(work: () => Promise<T>): Promise<T> {
    const run = this.writeTail.then(work);
    this.writeTail = run.catch(() => {});
    return run;
  }

  /**
   * Applies `edit` to every chunk the range touches and stores them: a chunk the range covers
   * whole starts as zeros (or, with `dropWhole`, is deleted instead), any other starts as stored.
   */
  private async change(
    offsetBytes: number, lengthBytes: number,
    edit: (chunk: Uint8Array, inChunkBytes: number, doneBytes: number, spanBytes: number) => void,
    dropWhole = false,
  ): Promise<void> {
    const partial: number[] = [];
    this.forEachChunk(offsetBytes, lengthBytes, (index, _inChunkBytes, _doneBytes, spanBytes) => {
      if (spanBytes !== this.chunkLength(index)) partial.push(index);
    });
    const stored = await this.getChunks(partial);
    const puts: Record<string, Uint8Array> = {};
    const deletes: string[] = [];
    this.forEachChunk(offsetBytes, lengthBytes, (index, inChunkBytes, doneBytes, spanBytes) => {
      const whole = spanBytes === this.chunkLength(index);
      if (whole && dropWhole) {
        deletes.push(this.chunkKey(index));
        return;
      }
      const chunk = new Uint8Array(this.chunkLength(index));
      const before = stored.get(index);
      if (!whole && before !== undefined) chunk.set(before.subarray(0, chunk.length));
      edit(chunk, inChunkBytes, doneBytes, spanBytes);
      puts[this.chunkKey(index)] = chunk;
    });
    const putKeys = Object.keys(puts);
    for (let first = 0; first < putKeys.length; first += KV_BATCH_KEYS_MAX) {
      await this.storage.put(Object.fromEntries(putKeys.slice(first, first + KV_BATCH_KEYS_MAX).map((key) => [key, puts[key]])));
    }
    for (let first = 0; first < deletes.length; first += KV_BATCH_KEYS_MAX) await this.storage.delete(deletes.slice(first, first + KV_BATCH_KEYS_MAX));
  }

  private chunkKey(index: number): string {
    return `${this.prefix}c${index}`;
  }

  private chunkLength(index: number): number {
    return Math.min(this.chunkBytes, this.sizeBytes - index * this.chunkBytes);
  }

  private chunkIndexes(offsetBytes: number, lengthBytes: number): number[] {
    const first = Math.floor(offsetBytes / this.chunkBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / this.chunkBytes);
    return Array.from({ length: last - first + 1 }, (_, i) => first + i);
  }

  private async getChunks(indexes: number[]): Promise<Map<number, Uint8Array>> {
    const found = new Map<number, Uint8Array>();
    for (let first = 0; first < indexes.length; first += KV_BATCH_KEYS_MAX) {
      const batch = indexes.slice(first, first + KV_BATCH_KEYS_MAX);
      const values = await this.storage.get(batch.map((index) => this.chunkKey(index)));
      for (const index of batch) {
        const value = values.get(this.chunkKey(index));
        if (value === undefined) continue;
        const bytes = value instanceof Uint8Array ? value : value instanceof ArrayBuffer ? new Uint8Array(value) : null;
        if (bytes === null || bytes.length !== this.chunkLength(index)) {
          throw new BlockError('EIO', `chunk ${index} in the store is not ${this.chunkLength(index)} bytes`, { device: this.name });
        }
        found.set(index, bytes);
      }
    }
    return found;
  }

  /** Calls `visit(chunkIndex, inChunkBytes, doneBytes, spanBytes)` for each chunk of the range, in order. */
  private forEachChunk(offsetBytes: number, lengthBytes: number, visit: (index: number, inChunkBytes: number, doneBytes: number, spanBytes: number) => void): void {
    let doneBytes = 0;
    while (doneBytes < lengthBytes) {
      const at = offsetBytes + doneBytes;
      const index = Math.floor(at / this.chunkBytes);
      const inChunkBytes = at - index * this.chunkBytes;
      const spanBytes = Math.min(this.chunkLength(index) - inChunkBytes, lengthBytes - doneBytes);
      visit(index, inChunkBytes, doneBytes, spanBytes);
      doneBytes += spanBytes;
    }
  }
}
