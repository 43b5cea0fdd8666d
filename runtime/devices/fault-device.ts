/**
 * A layer that injects faults into the device below it, for tests (STYLE 15, after tigerbeetle's
 * `testing/storage.zig`). It is a BlockDevice itself and owns the inner one (close closes both).
 *
 * Rules, checked in order for each request that passed validation; the first that matches acts:
 *   { op, nth, action }          on the nth request of that op (1-based, counting valid requests),
 *   { op, probability, action }  on each request of that op with that probability, drawn from the
 *                                seeded Prng, so the same seed and request sequence replay exactly.
 * Actions:
 *   'fail'  raise BlockError EIO without touching the inner device;
 *   'tear'  do a seeded prefix of the request — a whole number of logical blocks, possibly none,
 *           always fewer than all — then raise EIO: a torn write (or a short read / partial
 *           discard). A torn flush is a failed flush: the inner device is not flushed;
 *   'delay' wait `delayMs`, then proceed normally (unless crash() came meanwhile).
 * crash() makes every later request (and any delayed one still waiting) fail with EIO, like a
 * machine that lost power; close() still closes the inner device. What a real crash also loses —
 * writes not yet flushed — is not modelled here.
 *
 * blockStatus passes through to the inner device (all data when it has none), with no rules.
 *
 * Bad requests are refused by the same boundary check as every device, before any rule is
 * consulted, so they never count as requests and never consume a fault.
 */
import { BlockError } from '../errors.ts';
import { Prng } from '../prng.ts';
import type { BlockDevice, BlockExtent, DiscardOutcome, WriteOptions } from './block-device.ts';
import { statusOf } from './extents.ts';
import { OpGate } from './op-gate.ts';
import { validateOpen, validateRequest } from './validate.ts';

export type FaultOp = 'read' | 'write' | 'flush' | 'discard';
export type FaultAction = 'fail' | 'tear' | 'delay';

interface FaultRuleBase {
  op: FaultOp;
  action: FaultAction;
  /** For 'delay'; default 0. */
  delayMs?: number;
}
export type FaultRule = (FaultRuleBase & { nth: number }) | (FaultRuleBase & { probability: number });

export interface FaultDeviceOptions {
  seed: number;
  rules?: FaultRule[];
  /** For errors and logs; default `fault(<inner name>)`. */
  name?: string;
}

export type FaultCounters = Record<FaultOp, number>;

export class FaultDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;
  readonly seed: number;
  /** Valid requests seen, per op. */
  readonly seen: FaultCounters = { read: 0, write: 0, flush: 0, discard: 0 };
  /** Faults injected ('fail' and 'tear'; delays are not faults), per op. */
  readonly injected: FaultCounters = { read: 0, write: 0, flush: 0, discard: 0 };
  private readonly rules: FaultRule[] = [];
  private readonly prng: Prng;
  private readonly gate = new OpGate();
  private isCrashed = false;

  constructor(readonly inner: BlockDevice, options: FaultDeviceOptions) {
    this.name = options.name ?? `fault(${inner.name})`;
    this.sizeBytes = inner.sizeBytes;
    this.logicalBlockBytes = inner.logicalBlockBytes;
    this.canWrite = inner.canWrite;
    this.canDiscard = inner.canDiscard;
    this.discardZeroes = inner.discardZeroes;
    this.seed = options.seed;
    this.prng = new Prng(options.seed);
    for (const rule of options.rules ?? []) this.addRule(rule);
  }

  get crashed(): boolean {
    return this.isCrashed;
  }

  addRule(rule: FaultRule): void {
    const valid =
      ['read', 'write', 'flush', 'discard'].includes(rule.op) &&
      ['fail', 'tear', 'delay'].includes(rule.action) &&
      ('nth' in rule ? Number.isSafeInteger(rule.nth) && rule.nth >= 1 : rule.probability >= 0 && rule.probability <= 1) &&
      (rule.delayMs === undefined || (Number.isFinite(rule.delayMs) && rule.delayMs >= 0));
    if (!valid) throw new BlockError('EINVAL', `invalid fault rule ${JSON.stringify(rule)}`, { device: this.name });
    this.rules.push({ ...rule });
  }

  /** Every later request fails with EIO, as does any delayed request still waiting. */
  crash(): void {
    this.isCrashed = true;
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    return this.gate.track(async () => {
      const action = await this.decide('read', offsetBytes, target.length);
      if (action === 'tear') {
        const prefixBytes = this.tornPrefixBytes(target.length);
        if (prefixBytes > 0) await this.inner.read(offsetBytes, target.subarray(0, prefixBytes));
        throw this.fault('read', `torn read: only ${prefixBytes} bytes read`, offsetBytes, target.length);
      }
      await this.inner.read(offsetBytes, target);
    });
  }

  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
    return this.gate.track(async () => {
      const action = await this.decide('write', offsetBytes, data.length);
      if (action === 'tear') {
        const prefixBytes = this.tornPrefixBytes(data.length);
        if (prefixBytes > 0) await this.inner.write(offsetBytes, data.subarray(0, prefixBytes), options);
        throw this.fault('write', `torn write: only ${prefixBytes} bytes written`, offsetBytes, data.length);
      }
      await this.inner.write(offsetBytes, data, options);
    });
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
    return this.gate.track(async () => {
      const action = await this.decide('flush', undefined, undefined);
      if (action === 'tear') throw this.fault('flush', 'torn flush: nothing flushed', undefined, undefined);
      await this.inner.flush();
    });
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    return this.gate.track(async () => {
      const action = await this.decide('discard', offsetBytes, lengthBytes);
      if (action === 'tear') {
        const prefixBytes = this.tornPrefixBytes(lengthBytes);
        if (prefixBytes > 0) await this.inner.discard(offsetBytes, prefixBytes);
        throw this.fault('discard', `torn discard: only ${prefixBytes} bytes discarded`, offsetBytes, lengthBytes);
      }
      return this.inner.discard(offsetBytes, lengthBytes);
    });
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    validateRequest(this, this.gate.isOpen, 'status', offsetBytes, lengthBytes);
    if (lengthBytes === 0) return [];
    return this.gate.track(async () => {
      if (this.isCrashed) throw this.crashedError('read', offsetBytes, lengthBytes);
      return statusOf(this.inner, offsetBytes, lengthBytes);
    });
  }

  close(): Promise<void> {
    return this.gate.close(() => this.inner.close());
  }

  /**
   * Counts the request, picks the first matching rule, applies 'fail' and 'delay' here and
   * returns 'tear' (or nothing) for the caller, which alone knows how to do a prefix.
   */
  private async decide(op: FaultOp, offsetBytes: number | undefined, lengthBytes: number | undefined): Promise<'tear' | undefined> {
    if (this.isCrashed) throw this.crashedError(op, offsetBytes, lengthBytes);
    const nth = ++this.seen[op];
    let chosen: FaultRule | undefined;
    for (const rule of this.rules) {
      if (rule.op !== op) continue;
      // Draw for every probabilistic rule of this op, matched or not, so the stream of draws
      // depends only on the request sequence.
      const hit = 'nth' in rule ? rule.nth === nth : this.prng.chance(rule.probability);
      if (hit && chosen === undefined) chosen = rule;
    }
    if (chosen === undefined) return undefined;
    switch (chosen.action) {
      case 'fail':
        throw this.fault(op, `injected ${op} failure (request ${nth})`, offsetBytes, lengthBytes);
      case 'delay':
        await new Promise((resolve) => setTimeout(resolve, chosen.delayMs ?? 0));
        if (this.isCrashed) throw this.crashedError(op, offsetBytes, lengthBytes);
        return undefined;
      case 'tear':
        return 'tear';
    }
  }

  /** A whole number of logical blocks, fewer than all (zero when the request is empty). */
  private tornPrefixBytes(lengthBytes: number): number {
    const blockCount = lengthBytes / this.logicalBlockBytes;
    return blockCount === 0 ? 0 : this.prng.below(blockCount) * this.logicalBlockBytes;
  }

  private fault(op: FaultOp, message: string, offsetBytes: number | undefined, lengthBytes: number | undefined): BlockError {
    this.injected[op]++;
    return new BlockError('EIO', message, { offsetBytes, lengthBytes, device: this.name });
  }

  private crashedError(op: FaultOp, offsetBytes: number | undefined, lengthBytes: number | undefined): BlockError {
    return new BlockError('EIO', `${op} after crash()`, { offsetBytes, lengthBytes, device: this.name });
  }
}
