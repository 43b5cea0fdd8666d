/**
 * PowerLossKv: a key-value store that loses what was not synced when the power is cut, for crash
 * tests of KvDevice and what runs on it (as PowerLossDevice is for block devices). Modelled on a
 * Durable Object's SQLite storage: each put or delete call is one transaction, applied in call
 * order; reads see every call made so far; sync() makes every call before it durable. A cut keeps
 * what was durable plus a seeded prefix of the calls after it (a write-ahead log survives up to
 * some commit, never a later commit without an earlier one), each call whole or not at all.
 */
import type { KvStorage } from './kv-device.ts';

type Change = { kind: 'put'; entries: Array<[string, unknown]> } | { kind: 'delete'; keys: string[] };

function copyOf(value: unknown): unknown {
  return value instanceof Uint8Array ? value.slice() : value;
}

function apply(map: Map<string, unknown>, change: Change): void {
  if (change.kind === 'put') for (const [key, value] of change.entries) map.set(key, copyOf(value));
  else for (const key of change.keys) map.delete(key);
}

export class PowerLossKv implements KvStorage {
  private durable: Map<string, unknown>;
  private readonly current: Map<string, unknown>;
  /** Calls since the last sync, in order. */
  private pending: Change[] = [];
  private powered = true;
  syncs = 0;

  constructor(initial: ReadonlyMap<string, unknown> = new Map()) {
    this.durable = new Map([...initial].map(([key, value]) => [key, copyOf(value)]));
    this.current = new Map([...initial].map(([key, value]) => [key, copyOf(value)]));
  }

  async get(keys: string[]): Promise<Map<string, unknown>> {
    this.checkPower();
    const found = new Map<string, unknown>();
    for (const key of keys) if (this.current.has(key)) found.set(key, copyOf(this.current.get(key)));
    return found;
  }

  async put(entries: Record<string, unknown>): Promise<void> {
    this.change({ kind: 'put', entries: Object.entries(entries).map(([key, value]) => [key, copyOf(value)]) });
  }

  async delete(keys: string[]): Promise<number> {
    const count = keys.filter((key) => this.current.has(key)).length;
    this.change({ kind: 'delete', keys: [...keys] });
    return count;
  }

  async sync(): Promise<void> {
    this.checkPower();
    for (const change of this.pending) apply(this.durable, change);
    this.pending = [];
    this.syncs++;
  }

  async listKeys(prefix: string, startAfter: string | null, limit: number): Promise<string[]> {
    this.checkPower();
    return [...this.current.keys()].filter((key) => key.startsWith(prefix) && (startAfter === null || key > startAfter)).sort().slice(0, limit);
  }


  /**
   * Cuts the power: every later call fails. Returns what survives: the durable entries and the
   * first `keptCalls` unsynced calls (draw it from 0 to `unsyncedCalls`).
   */
  cut(keptCalls: number): Map<string, unknown> {
    this.powered = false;
    const survived = new Map([...this.durable].map(([key, value]) => [key, copyOf(value)]));
    for (const change of this.pending.slice(0, keptCalls)) apply(survived, change);
    return survived;
  }

  get unsyncedCalls(): number {
    return this.pending.length;
  }

  private change(change: Change): void {
    this.checkPower();
    apply(this.current, change);
    this.pending.push(change);
  }

  private checkPower(): void {
    if (!this.powered) throw new Error('power cut');
  }
}
