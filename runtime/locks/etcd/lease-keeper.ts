/**
 * A member's etcd lease, renewed by us, and the deadline the member's writes live by
 * (self-fencing: a node cut off from etcd stops writing to shared legs before the others can
 * start recovering it).
 *
 * Timing, in one place (ttlMs: the lease's TTL as etcd granted it: 5 s by default; etcd raises
 * one below its minimum, 1.5 election timeouts, 2 s with its default timeouts):
 * - a renewal goes out every ttlMs / 4 (RENEW_FRACTION), on that cadence from each send, each
 *   giving up after 4/5 of an interval;
 * - a renewal sent at t and answered proves the lease lives until at least t + ttlMs: etcd starts
 *   the TTL over when it receives the renewal, which is after t (a leader change only extends
 *   leases, and etcd checks expiry late rather than early);
 * - the member may write until t + ttlMs - marginMs for the last answered renewal's t, with
 *   marginMs = ttlMs / 4 (MARGIN_FRACTION): a write issued just before that deadline has a quarter
 *   of the TTL to land before the lease can expire and the others begin recovery; two renewals
 *   in a row can fail without fencing;
 * - past the deadline the member is fenced for good: `writesAllowed()` is false (read against the
 *   monotonic clock at each call, so a stalled event loop cannot let a late write through),
 *   `onFence` runs once, renewals stop and the lease is revoked if etcd still answers (else it
 *   expires). A fenced node rejoins as a new member with a new lease.
 */
import type { EtcdStore } from './etcd-store.ts';

export const RENEW_FRACTION = 1 / 4;
export const MARGIN_FRACTION = 1 / 4;

export class LeaseKeeper {
  private writeDeadlineMs: number;
  private fencedWhy: string | null = null;
  private stopped = false;
  private renewTimer: ReturnType<typeof setTimeout> | null = null;
  private fenceTimer: ReturnType<typeof setTimeout> | null = null;

  private constructor(
    private readonly store: EtcdStore,
    readonly id: string,
    readonly ttlMs: number,
    grantSentAtMs: number,
    private readonly onFence: (why: string) => void,
  ) {
    this.writeDeadlineMs = grantSentAtMs + ttlMs - this.marginMs;
  }

  /** A new lease of `ttlSeconds`, renewed from now on; `onFence` once the member must stop writing. */
  static async grant(store: EtcdStore, ttlSeconds: number, onFence: (why: string) => void): Promise<LeaseKeeper> {
    const sentAtMs = performance.now();
    const granted = await store.grantLease(ttlSeconds);
    // etcd may grant a longer TTL than asked (its minimum): the margins follow what it granted.
    const keeper = new LeaseKeeper(store, granted.id, Math.max(ttlSeconds, granted.ttlSeconds) * 1000, sentAtMs, onFence);
    keeper.armFence();
    keeper.scheduleRenewal();
    return keeper;
  }

  get marginMs(): number {
    return this.ttlMs * MARGIN_FRACTION;
  }

  get renewIntervalMs(): number {
    return this.ttlMs * RENEW_FRACTION;
  }

  /** True while this member may write to shared storage. */
  writesAllowed(): boolean {
    if (this.fencedWhy !== null) return false;
    if (performance.now() >= this.writeDeadlineMs) {
      this.fence(`no lease renewal answered within ${this.ttlMs - this.marginMs} ms`);
      return false;
    }
    return true;
  }

  /** Milliseconds of writing left before the fence, as of now (0 once fenced). */
  remainingMs(): number {
    return this.fencedWhy !== null ? 0 : Math.max(0, this.writeDeadlineMs - performance.now());
  }

  /** Leaving: stops renewing and ends the lease now (its keys go); a lease etcd cannot be told of expires. */
  async revoke(): Promise<void> {
    this.stop();
    await this.store.revokeLease(this.id).catch(() => {});
  }

  /** Stops renewing; the lease expires after its TTL. */
  stop(): void {
    this.stopped = true;
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    if (this.fenceTimer !== null) clearTimeout(this.fenceTimer);
    this.renewTimer = null;
    this.fenceTimer = null;
  }

  private scheduleRenewal(): void {
    if (this.stopped) return;
    this.renewTimer = setTimeout(() => void this.renew(), this.renewIntervalMs);
  }

  private async renew(): Promise<void> {
    this.renewTimer = null;
    if (this.stopped) return;
    const sentAtMs = performance.now();
    // The next renewal goes out one interval after this one was sent, whatever this one's fate:
    // a renewal that hangs (it gives up after 4/5 of an interval) holds back nothing.
    this.scheduleRenewal();
    try {
      const leftSeconds = await this.store.keepAliveOnce(this.id, this.renewIntervalMs * 0.8);
      if (this.stopped) return;
      if (leftSeconds <= 0) {
        this.fence('etcd says the lease is gone (it expired or was revoked)');
        return;
      }
      const provenMs = Math.min(leftSeconds * 1000, this.ttlMs);
      this.writeDeadlineMs = Math.max(this.writeDeadlineMs, sentAtMs + provenMs - this.marginMs);
      this.armFence();
    } catch {
      // Unanswered: the deadline stays where the last answered renewal put it.
    }
  }

  private armFence(): void {
    if (this.fenceTimer !== null) clearTimeout(this.fenceTimer);
    this.fenceTimer = setTimeout(() => {
      this.fenceTimer = null;
      if (!this.writesAllowed()) return;
      this.armFence();
    }, Math.max(0, this.writeDeadlineMs - performance.now()) + 1);
  }

  private fence(why: string): void {
    if (this.fencedWhy !== null || this.stopped) return;
    this.fencedWhy = why;
    void this.revoke();
    this.onFence(why);
  }
}
