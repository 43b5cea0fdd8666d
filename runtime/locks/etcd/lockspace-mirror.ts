/**
 * One member's copy of a lockspace's keys: filled by a range read at a revision, then kept up by a
 * watch of the lockspace prefix from the next revision. Changes are applied one revision at a
 * time, all keys of a transaction together, and handed to the member after each revision, so the
 * member sees every state the lockspace passed through, in etcd's order, never half a
 * transaction. `waitFor(revision)` resolves once that revision is applied (callers only wait for
 * revisions of keys under this prefix: a revision elsewhere in etcd never shows up here).
 */
import { compareRevisions, type EtcdKeyValue, type EtcdStore, type EtcdWatchEvent } from './etcd-store.ts';

export interface KeyChange {
  key: string;
  before: EtcdKeyValue | undefined;
  after: EtcdKeyValue | undefined;
}

export class LockspaceMirror {
  private readonly kvs = new Map<string, EtcdKeyValue>();
  private appliedRevision: string;
  private waiters: { revision: string; resolve: () => void; reject: (error: Error) => void }[] = [];
  private failure: Error | null = null;
  private watch: { cancel(): Promise<void> } | null = null;

  private constructor(readonly prefix: string, revision: string, kvs: EtcdKeyValue[]) {
    this.appliedRevision = revision;
    for (const kv of kvs) this.kvs.set(kv.key, kv);
  }

  /**
   * A mirror of `prefix` holding `kvs` as read at `revision`, watching from the next one;
   * `onRevision` gets each later revision's changes, `onFailure` once if the watch ends for good.
   */
  static async start(
    store: EtcdStore,
    prefix: string,
    revision: string,
    kvs: EtcdKeyValue[],
    onRevision: (changes: KeyChange[], revision: string) => void,
    onFailure: (error: Error) => void,
  ): Promise<LockspaceMirror> {
    const mirror = new LockspaceMirror(prefix, revision, kvs);
    mirror.watch = await store.watchPrefix(
      prefix,
      String(BigInt(revision) + 1n),
      (events) => mirror.apply(events, onRevision),
      (why) => {
        mirror.fail(new Error(`the watch of ${prefix} ended: ${why}`));
        onFailure(mirror.failure!);
      },
    );
    return mirror;
  }

  get revision(): string {
    return this.appliedRevision;
  }

  get(key: string): EtcdKeyValue | undefined {
    return this.kvs.get(key);
  }

  /** Every key-value under `prefix`, in key order. */
  under(prefix: string): EtcdKeyValue[] {
    const found: EtcdKeyValue[] = [];
    for (const [key, kv] of this.kvs) if (key.startsWith(prefix)) found.push(kv);
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Resolves once `revision` is applied; rejects if the mirror failed or is closed first. */
  waitFor(revision: string): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (compareRevisions(this.appliedRevision, revision) >= 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ revision, resolve, reject }));
  }

  async close(): Promise<void> {
    this.fail(new Error(`the mirror of ${this.prefix} is closed`));
    const watch = this.watch;
    this.watch = null;
    await watch?.cancel().catch(() => {});
  }

  private apply(events: EtcdWatchEvent[], onRevision: (changes: KeyChange[], revision: string) => void): void {
    if (this.failure !== null) return;
    let index = 0;
    while (index < events.length) {
      const revision = events[index]!.kv.modRevision;
      const changes: KeyChange[] = [];
      for (; index < events.length && events[index]!.kv.modRevision === revision; index++) {
        const event = events[index]!;
        if (compareRevisions(revision, this.appliedRevision) <= 0) continue; // replayed after a reconnect
        const before = this.kvs.get(event.kv.key);
        if (event.type === 'put') {
          this.kvs.set(event.kv.key, event.kv);
          changes.push({ key: event.kv.key, before, after: event.kv });
        } else {
          this.kvs.delete(event.kv.key);
          changes.push({ key: event.kv.key, before, after: undefined });
        }
      }
      if (changes.length === 0) continue;
      this.appliedRevision = revision;
      onRevision(changes, revision);
      this.wake();
    }
  }

  private wake(): void {
    const ready = this.waiters.filter((w) => compareRevisions(this.appliedRevision, w.revision) >= 0);
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const waiter of ready) waiter.resolve();
  }

  private fail(error: Error): void {
    if (this.failure !== null) return;
    this.failure = error;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }
}
