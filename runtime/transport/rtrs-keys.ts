/**
 * Keys for chunks and read buffers: 32-bit values from the system's CSPRNG, never 0 (0 marks "no
 * previous key"). Drawn 1024 at a time: a getRandomValues call per IO cost about 2% of a run's CPU
 * on each side (bench transport profile), and a key must stay unguessable, so no cheaper generator.
 */
import { webcrypto } from 'node:crypto';

const BATCH = 1024;
const pool = new Uint32Array(BATCH);
let next = BATCH;

export function randomKey(): number {
  for (;;) {
    if (next === BATCH) {
      webcrypto.getRandomValues(pool);
      next = 0;
    }
    const key = pool[next++]!;
    if (key !== 0) return key;
  }
}
