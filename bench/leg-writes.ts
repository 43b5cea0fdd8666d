/**
 * The peer of the mirror-like benchmarks (cluster, mirror): the same writes issued to every leg
 * file directly, in parallel, at the same durability (a flush of every leg where ours flushes).
 */
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';

/** Runs `count` writes through `write` with `queueDepth` in flight. */
export async function pipelined(count: number, queueDepth: number, write: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: queueDepth }, async () => {
    while (next < count) await write(next++);
  }));
}

/** `sizeBytes` of `data`-sized writes to every leg at `offsetBytes` (queue depth `queueDepth`), then a flush of each: bytes per second. */
export async function sequentialBothLegs(files: string[], offsetBytes: number, sizeBytes: number, data: Uint8Array, queueDepth: number): Promise<number> {
  const legs = await Promise.all(files.map((file) => FileDevice.open(file)));
  const start = performance.now();
  await pipelined(sizeBytes / data.length, queueDepth, (i) => Promise.all(legs.map((leg) => leg.write(offsetBytes + i * data.length, data))).then(() => {}));
  await Promise.all(legs.map((leg) => leg.flush()));
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(legs.map((leg) => leg.close()));
  return sizeBytes / seconds;
}

/** `count` 4 KiB writes at seeded offsets to every leg, a flush of each every `flushEvery`: writes per second. */
export async function randomBothLegs(files: string[], offsetBytes: number, sizeBytes: number, small: Uint8Array, count: number, flushEvery: number, seed: number): Promise<number> {
  const legs = await Promise.all(files.map((file) => FileDevice.open(file)));
  const prng = new Prng(seed);
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const offset = offsetBytes + prng.below(sizeBytes / small.length) * small.length;
    await Promise.all(legs.map((leg) => leg.write(offset, small)));
    if ((i + 1) % flushEvery === 0) await Promise.all(legs.map((leg) => leg.flush()));
  }
  await Promise.all(legs.map((leg) => leg.flush()));
  const seconds = (performance.now() - start) / 1000;
  await Promise.all(legs.map((leg) => leg.close()));
  return count / seconds;
}
