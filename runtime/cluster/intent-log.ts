/**
 * What the array asks of its record of writes that may not have reached every leg: the
 * write-intent bitmap of a node slot (write-intent.ts: clustered and internal bitmaps) or, with no
 * bitmap, md's dirty flag in the superblocks (dirty-flag.ts: a crash resyncs everything).
 */
export interface IntentLog {
  /** One bit per chunk, room for the most chunks a resize may reach (all zero with no bitmap). */
  readonly bits: Uint8Array;
  readonly chunkCount: number;
  /** Chunks whose bit is set (with no bitmap: 0, or every chunk while the array is marked dirty). */
  readonly dirtyCount: number;
  /** Bitmap commits (or dirty-flag superblock writes) made. */
  readonly commits: number;
  /** Resolves once writing chunks [first, end) is recorded durably: the data may go. */
  startWrite(first: number, end: number): Promise<void>;
  /** The writes to chunks [first, end) ended. */
  endWrite(first: number, end: number): void;
  /** Marks every chunk set in `bits` (another slot's), durably. */
  markDirtyBits(bits: Uint8Array): Promise<void>;
  /** A resync copied chunks [first, end) to every leg. */
  synced(first: number, end: number): void;
  /** Clears what has been idle for `idleForMs` (legs flushed first); how many it cleared. */
  sweep(idleForMs?: number): Promise<number>;
  /** Writes the whole record again. */
  writeAll(): Promise<void>;
  /** Waits until every change made so far is durable. */
  settle(): Promise<void>;
  /** The array now has `chunkCount` chunks (online resize, everything paused). */
  resize(chunkCount: number, syncSizeSectors: number): void;
}
