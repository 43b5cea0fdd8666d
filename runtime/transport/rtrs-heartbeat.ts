/**
 * Heartbeats of one path, the same on both sides (rtrs.c rtrs_hb_work): every `intervalMs` the
 * path sends HB_MSG on connection 0 and counts it missed; the peer answers HB_ACK at once, which
 * clears the count and gives the round-trip time (`latencyMs`, the min-latency policy's measure).
 * When `missedMax` are outstanding at a tick the path is dead (`onDead`). Any frame received on the
 * path also clears the count (`heard`): a path busy delivering responses is alive even when its
 * acks queue behind them. The client adds a stricter rule while IO waits on the path
 * (`failFastWhenBusy`): dead at a tick when nothing at all was heard for a whole interval. A live
 * path always hears the ack of the previous tick's beat within an interval, so only a dead (or
 * badly stalled) one trips it, and IO fails over within two intervals of a silent death instead of
 * the idle rule's five (the kernel's, which rides out a slow peer while nobody waits).
 */
import { clearTimeout, setTimeout } from 'node:timers';

export interface HeartbeatOptions {
  intervalMs: number;
  missedMax: number;
  /** While `busy()` says IO waits: dead after one whole interval with nothing heard. */
  failFastWhenBusy?: boolean;
}

export class Heartbeat {
  latencyMs = 0;
  private missed = 0;
  private lastSentMs = 0;
  private lastHeardMs = 0;
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
    this.lastHeardMs = performance.now();
    this.schedule();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Any frame from the peer. */
  heard(): void {
    this.missed = 0;
    this.lastHeardMs = performance.now();
  }

  /** An HB_ACK arrived. */
  acked(): void {
    this.heard();
    if (this.lastSentMs > 0) this.latencyMs = performance.now() - this.lastSentMs;
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.tick(), this.options.intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private tick(): void {
    this.timer = null;
    const { missedMax, failFastWhenBusy = false, intervalMs } = this.options;
    if (this.missed >= missedMax) return this.onDead(`no heartbeat answered in ${this.missed} intervals of ${intervalMs} ms`);
    const silentMs = performance.now() - this.lastHeardMs;
    if (failFastWhenBusy && silentMs >= intervalMs && this.busy()) {
      return this.onDead(`IO waits and nothing heard for ${Math.round(silentMs)} ms (heartbeat interval ${intervalMs} ms)`);
    }
    this.missed += 1;
    this.lastSentMs = performance.now();
    this.sendBeat();
    this.schedule();
  }
}
