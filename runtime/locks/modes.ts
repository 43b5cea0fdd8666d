/**
 * The DLM's six lock modes, their compatibility matrix and the lock value block rules, as
 * REFERENCE.md gives them (md-cluster section). Every lock manager implementation decides grants
 * and value-block copies through these tables, so they cannot drift apart.
 */
import { assert } from '../assert.ts';

/** Mode numbers are the DLM's (NL 0 ... EX 5); a higher number is a stronger mode. */
export const LockMode = { NL: 0, CR: 1, CW: 2, PR: 3, PW: 4, EX: 5 } as const;
export type LockMode = (typeof LockMode)[keyof typeof LockMode];

export const LOCK_MODE_NAMES: readonly string[] = ['NL', 'CR', 'CW', 'PR', 'PW', 'EX'];
export const LOCK_MODES: readonly LockMode[] = [0, 1, 2, 3, 4, 5];

/** Bytes of a lock value block: the DLM's DLM_USER_LVB_LEN, and what md-cluster's messages fit in. */
export const VALUE_BLOCK_BYTES = 64;

/** COMPATIBLE[held][requested]: 1 when both can be granted at once. */
const COMPATIBLE: readonly (readonly number[])[] = [
  /*        NL CR CW PR PW EX */
  /* NL */ [1, 1, 1, 1, 1, 1],
  /* CR */ [1, 1, 1, 1, 1, 0],
  /* CW */ [1, 1, 1, 0, 0, 0],
  /* PR */ [1, 1, 0, 1, 0, 0],
  /* PW */ [1, 1, 0, 0, 0, 0],
  /* EX */ [1, 0, 0, 0, 0, 0],
];
for (const a of LOCK_MODES) for (const b of LOCK_MODES) assert(COMPATIBLE[a]![b] === COMPATIBLE[b]![a], 'compatibility is symmetric');

export function isLockMode(value: unknown): value is LockMode {
  return typeof value === 'number' && Number.isInteger(value) && value >= LockMode.NL && value <= LockMode.EX;
}

export function compatible(held: LockMode, requested: LockMode): boolean {
  return COMPATIBLE[held]![requested] === 1;
}

export function modeName(mode: LockMode): string {
  return LOCK_MODE_NAMES[mode]!;
}

/**
 * What a grant or a release does with the value block, by the DLM's rule: a holder of PW or EX
 * that moves down (or unlocks) writes its block to the resource; every other grant (a new lock,
 * an up-conversion, PW to EX) reads the resource's block into the lock.
 */
export type ValueBlockOp = 'read' | 'write' | 'none';

/** `from` null is a new request; `to` null is an unlock. */
export function valueBlockOp(from: LockMode | null, to: LockMode | null): ValueBlockOp {
  if (from !== null && from >= LockMode.PW) return to === LockMode.EX && from === LockMode.PW ? 'read' : 'write';
  if (to === null) return 'none';
  if (from === null || to >= from) return 'read';
  return 'none';
}
