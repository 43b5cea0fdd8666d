/**
 * Seeded damage to a valid frame or message, for decoder fuzzing: 1 to 4 edits, each a flipped
 * bit, an overwritten byte, a truncation, random bytes appended (up to `extendMaxBytes`), or one of
 * the protocol's own `fieldEdits` (a type byte changed, a count or length blown up). One helper for
 * NBD, RTRS and RNBD; each passes its own field edits.
 */
import type { Prng } from '../../runtime/prng.ts';

export type FieldEdit = (prng: Prng, out: Uint8Array) => void;

export function mutateBytes(prng: Prng, bytes: Uint8Array, extendMaxBytes: number, fieldEdits: readonly FieldEdit[] = []): Uint8Array {
  let out = bytes.slice();
  const edits = prng.range(1, 4);
  for (let i = 0; i < edits; i++) {
    const kind = prng.below(4 + fieldEdits.length);
    switch (kind) {
      case 0:
        if (out.length) out[prng.below(out.length)]! ^= 1 << prng.below(8);
        break;
      case 1:
        if (out.length) out[prng.below(out.length)] = prng.below(256);
        break;
      case 2:
        out = out.slice(0, prng.below(out.length + 1));
        break;
      case 3: {
        const longer = new Uint8Array(out.length + prng.range(1, extendMaxBytes));
        longer.set(out);
        prng.fill(longer.subarray(out.length));
        out = longer;
        break;
      }
      default:
        fieldEdits[kind - 4]!(prng, out);
    }
  }
  return out;
}

/** RNBD messages: a new type in the first byte, or a run of 0xff over the large fields. */
export function mutateMessage(prng: Prng, message: Uint8Array): Uint8Array {
  return mutateBytes(prng, message, 16, [
    (p, out) => { if (out.length >= 2) out[0] = p.below(8); },
    (p, out) => { if (out.length >= 20) out.fill(0xff, p.below(out.length)); },
  ]);
}
