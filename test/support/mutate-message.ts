/** Seeded damage to a valid message for decoder fuzzing: flipped bits, overwritten bytes, truncation, extension, a new type, a run of 0xff over the large fields. */
import type { Prng } from '../../runtime/prng.ts';

export function mutateMessage(prng: Prng, message: Uint8Array): Uint8Array {
  let out = message.slice();
  const edits = prng.range(1, 4);
  for (let i = 0; i < edits; i++) {
    switch (prng.below(6)) {
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
        const longer = new Uint8Array(out.length + prng.range(1, 16));
        longer.set(out);
        prng.fill(longer.subarray(out.length));
        out = longer;
        break;
      }
      case 4:
        if (out.length >= 2) out[0] = prng.below(8);
        break;
      default:
        if (out.length >= 20) out.fill(0xff, prng.below(out.length));
    }
  }
  return out;
}
