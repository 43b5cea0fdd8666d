/**
 * Heartbeats of one path, the same on both sides (rtrs.c rtrs_hb_work): every `intervalMs` the
 * path sends HB_MSG on connection 0 and counts it missed; the peer answers HB_ACK at once, which
 * clears the count and gives the round-trip time (`latencyMs`, the min-latency policy's measure).
 * When `missedMax` are outstanding at a tick the path is dead (`onDead`). Any frame received on the
 * path also clears the count (`heard`): a path busy delivering responses is alive even when its
 * acks queue behind them. The client adds a stricter rule while IO waits on the path: dead after
 * `busyMissedMax` silent intervals, so IO fails over within two intervals of a silent death (the
 * idle rule is the kernel's 5, to ride out a slow peer when nobody is waiting).
 */
import { clearTimeout, setTimeout } from 'node:timers';

export interface HeartbeatOptions {
  intervalMs: number;
  missedMax: number;
  /** Missed intervals that kill the path while `busy()` says IO waits on it (0: no such rule). */
  busyMissedMax?: number;
}

export class Heartbeat {
  latencyMs = 0;
  private missed = 0;
  private lastSentMs = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly options: HeartbeatOptions,
    private readonly sendBeat: () => void,
    private readonly onDead: (why: string) => void,
    private readonly busy: () => boolean = () => false,
  ) {}

  start(): void {
    this.stop();
    this.missed = 0;
    this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Any frame from the peer. */
  heard(): void {
    this.missed = 0;
  }

  /** An HB_ACK arrived. */
  acked(): void {
    this.missed = 0;
    if (this.lastSentMs > 0) this.latencyMs = performance.now() - this.lastSentMs;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.tick(), this.options.intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private tick(): void {
    this.timer = null;
    const { missedMax, busyMissedMax = 0, intervalMs } = this.options;
    if (this.missed >= missedMax) return this.onDead(`no heartbeat answered in ${this.missed} intervals of ${intervalMs} ms`);
    if (busyMissedMax > 0 && this.missed >= busyMissedMax && this.busy()) {
      return this.onDead(`IO waits and nothing heard in ${this.missed} intervals of ${intervalMs} ms`);
    }
    this.missed += 1;
    this.lastSentMs = performance.now();
    this.sendBeat();
    this.schedule();
  }
}
