/**
 * PowerDomain: the machines' power supply for crash tests. Devices attached to one domain
 * (PowerLossDevice, see its design note for what is cached, covered and kept) share one seeded
 * schedule and one power: a cut hits all of them at the same instant, so an engine that spreads its
 * state over several devices (a clone's metadata and destination, a mirror's legs) is tested as it
 * would fail for real, each device losing its own unflushed writes independently.
 *
 * Schedule: every operation of every device is two events, submitted and taking effect, counted in
 * one sequence (`events`); between them the operation waits a seeded number of microtask turns (0 to
 * `maxDelayTurns`), or with `timerDelayChance` one timer turn (so the caller's own timers can run
 * while it is in flight). The draws come from one Prng in the order operations are submitted, so a
 * program that is deterministic itself (no wall-clock decisions, timers of one duration) replays
 * exactly from the seed.
 *
 * Cuts: `cut()` cuts now; `cutAtEvent(n)` arms a cut at event n of the domain (or, given a
 * device, at that device's event n: a cut counted on a clone's metadata device always falls inside
 * a commit), which then happens before that event takes place (a write at its submission never starts; at its taking effect it stays in
 * flight, for the cut to judge). From the cut on, every call and every unresolved operation on
 * every device of the domain fails with EIO. The returned report (the same promise for every
 * caller) resolves once each backing holds its surviving image, with how each device's unflushed
 * writes fared; what a cut keeps is drawn from the cut's seed (by default one drawn from the
 * domain), device by device in attach order. A domain is cut once: after reboot, attach the
 * backings to a new domain.
 */
import { assert } from '../assert.ts';
import { Prng } from '../prng.ts';
import type { BlockDevice } from './block-device.ts';
import { PowerLossDevice, type DeviceCutReport, type PowerSupply, type UnflushedFate } from './power-loss-device.ts';

export interface PowerDomainOptions {
  seed: number;
  /** Most microtask turns an operation is in flight; default 3. */
  maxDelayTurns?: number;
  /** Chance that an operation is in flight for one timer turn (setTimeout 0) instead; default 0. */
  timerDelayChance?: number;
}

export interface CutAtOptions extends CutOptions {
  /** Count only this device's events (from its attach): e.g. the metadata device's, to cut inside commits. */
  device?: PowerLossDevice;
}

export interface CutOptions {
  /** Seeds what survives; default drawn from the domain's Prng. */
  seed?: number;
  /** Default 'random'. */
  unflushed?: UnflushedFate;
}

export interface PowerCutReport {
  /** Events that happened before the cut. */
  eventIndex: number;
  seed: number;
  /** In attach order. */
  devices: DeviceCutReport[];
}

const DEFAULT_MAX_DELAY_TURNS = 3;

export class PowerDomain implements PowerSupply {
  readonly seed: number;
  private readonly prng: Prng;
  private readonly maxDelayTurns: number;
  private readonly timerDelayChance: number;
  private readonly attached: PowerLossDevice[] = [];
  private eventCount = 0;
  private armed: { eventIndex: number; options: CutAtOptions } | null = null;
  private cutting: Promise<PowerCutReport> | null = null;
  private hasCut = false;

  constructor(options: PowerDomainOptions) {
    this.seed = options.seed >>> 0;
    this.prng = new Prng(this.seed);
    this.maxDelayTurns = options.maxDelayTurns ?? DEFAULT_MAX_DELAY_TURNS;
    this.timerDelayChance = options.timerDelayChance ?? 0;
    assert(Number.isSafeInteger(this.maxDelayTurns) && this.maxDelayTurns >= 0, 'power domain: maxDelayTurns is a count');
    assert(this.timerDelayChance >= 0 && this.timerDelayChance <= 1, 'power domain: timerDelayChance is a probability');
  }

  /** A device over `backing` (whose contents are what is persisted) with this domain's power. */
  attach(backing: BlockDevice, name?: string): PowerLossDevice {
    assert(!this.isCut, 'power domain: attach after the cut (attach the backings to a new domain)');
    const device = new PowerLossDevice(backing, this, name);
    this.attached.push(device);
    return device;
  }

  /** The devices of this domain, in attach order. */
  get devices(): readonly PowerLossDevice[] {
    return this.attached;
  }

  /** Events so far (every operation submitted and taking effect, on every device). */
  get events(): number {
    return this.eventCount;
  }

  get isCut(): boolean {
    return this.hasCut;
  }

  /**
   * Arms a cut at event `eventIndex` (1-based, counted from the domain's start, or from the attach of
   * `options.device` counting only its events; it must lie ahead). Replaces a cut armed before.
   */
  cutAtEvent(eventIndex: number, options: CutAtOptions = {}): void {
    assert(options.device === undefined || this.attached.includes(options.device), 'power domain: cut counted on a device of another domain');
    const counted = options.device === undefined ? this.eventCount : options.device.events;
    assert(Number.isSafeInteger(eventIndex) && eventIndex > counted, 'power domain: cut event must lie ahead');
    this.armed = { eventIndex, options };
  }

  step(device: PowerLossDevice): boolean {
    if (this.hasCut) return false;
    const armed = this.armed;
    // The armed event does not happen: the power fails just before it.
    if (armed !== null && (armed.options.device ?? device) === device && (armed.options.device === undefined ? this.eventCount : device.events) + 1 >= armed.eventIndex) {
      void this.cut(armed.options);
      return false;
    }
    this.eventCount++;
    return true;
  }

  async delay(): Promise<void> {
    if (this.timerDelayChance > 0 && this.prng.chance(this.timerDelayChance)) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      return;
    }
    for (let turns = this.prng.below(this.maxDelayTurns + 1); turns > 0; turns--) await undefined;
  }

  /** Cuts the power now (or returns the cut that already happened). */
  cut(options: CutOptions = {}): Promise<PowerCutReport> {
    if (this.cutting !== null) return this.cutting;
    const seed = (options.seed ?? this.prng.nextU32()) >>> 0;
    const eventIndex = this.eventCount;
    const fate = options.unflushed ?? 'random';
    this.hasCut = true; // from here on every device refuses everything
    this.cutting = (async () => {
      const prng = new Prng(seed);
      const devices: DeviceCutReport[] = [];
      for (const device of this.attached) devices.push(await device.settleCut(prng, fate));
      return { eventIndex, seed, devices };
    })();
    this.cutting.catch(() => {}); // a cut armed from step() has no caller yet; later callers see the rejection
    return this.cutting;
  }
}
