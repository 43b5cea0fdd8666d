/**
 * FileDevice read path vs the raw node:fs calls it could be built on: 4 KiB random reads from a
 * 256 MiB file that sits in the page cache. Contenders, interleaved A B C D A B C D … for ROUNDS
 * rounds after one warm-up round, each doing the same seeded offset sequence; medians compared.
 *   filedevice-sync   FileDevice (io 'sync', the default): validation + fs.readSync loop
 *   filedevice-async  FileDevice (io 'async'): validation + fs.read through the thread pool
 *   readSync          fs.readSync in a plain loop: the floor for any synchronous path
 *   filehandle        FileHandle.read: the usual async way to read a file in Node
 * Ends with `ratio <what>: <ours/peer>` lines (above 1 = FileDevice faster).
 * Run: npx tsx bench/device.ts | npx bun bench/device.ts | npx deno run -A bench/device.ts
 * BLOCKCORE_BENCH_OPS overrides the reads per contender per round.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { interleave, median, ratioLine } from './stats.ts';

const FILE_BYTES = 256 * 1024 * 1024;
const READ_BYTES = 4096;
const FILL_CHUNK_BYTES = 1024 * 1024;
const READ_COUNT = Number(process.env.BLOCKCORE_BENCH_OPS ?? 30_000);
const ROUNDS = 7;
const OFFSET_SEED = 0xb10c;

const adapter = await loadAdapter();
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-device-'));
const filePath = path.join(tempDir, 'bench.img');

// Pre-write the file, then read it once, so every contender reads from the page cache.
const writer = await FileDevice.open(filePath, { create: { sizeBytes: FILE_BYTES }, logicalBlockBytes: READ_BYTES });
const fillPrng = new Prng(1);
const chunk = new Uint8Array(FILL_CHUNK_BYTES);
for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) {
  await writer.write(offsetBytes, fillPrng.fill(chunk));
}
await writer.flush();
for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) await writer.read(offsetBytes, chunk);
await writer.close();

const offsetPrng = new Prng(OFFSET_SEED);
const offsets = new Float64Array(READ_COUNT);
for (let i = 0; i < READ_COUNT; i++) offsets[i] = offsetPrng.below(FILE_BYTES / READ_BYTES) * READ_BYTES;

const syncDevice = await FileDevice.open(filePath, { readOnly: true, logicalBlockBytes: READ_BYTES, io: 'sync' });
const asyncDevice = await FileDevice.open(filePath, { readOnly: true, logicalBlockBytes: READ_BYTES, io: 'async' });
const fd = fs.openSync(filePath, 'r');
const handle = await fs.promises.open(filePath, 'r');
const buffer = new Uint8Array(READ_BYTES);

/** Every contender folds the first byte of each read into this; they must agree. */
const checksums: Record<string, number> = {};

function rate(name: string, startMs: number, checksum: number): number {
  const elapsedMs = performance.now() - startMs;
  checksums[name] = checksum;
  return READ_COUNT / (elapsedMs / 1000);
}

const contenders = {
  'filedevice-sync': async () => {
    let checksum = 0;
    const startMs = performance.now();
    for (let i = 0; i < READ_COUNT; i++) {
      await syncDevice.read(offsets[i]!, buffer);
      checksum = (checksum + buffer[0]!) | 0;
    }
    return rate('filedevice-sync', startMs, checksum);
  },
  'filedevice-async': async () => {
    let checksum = 0;
    const startMs = performance.now();
    for (let i = 0; i < READ_COUNT; i++) {
      await asyncDevice.read(offsets[i]!, buffer);
      checksum = (checksum + buffer[0]!) | 0;
    }
    return rate('filedevice-async', startMs, checksum);
  },
  readSync: () => {
    let checksum = 0;
    const startMs = performance.now();
    for (let i = 0; i < READ_COUNT; i++) {
      fs.readSync(fd, buffer, 0, READ_BYTES, offsets[i]!);
      checksum = (checksum + buffer[0]!) | 0;
    }
    return rate('readSync', startMs, checksum);
  },
  filehandle: async () => {
    let checksum = 0;
    const startMs = performance.now();
    for (let i = 0; i < READ_COUNT; i++) {
      await handle.read(buffer, 0, READ_BYTES, offsets[i]!);
      checksum = (checksum + buffer[0]!) | 0;
    }
    return rate('filehandle', startMs, checksum);
  },
};

console.log(`device bench on ${adapter.name} ${adapter.version}: ${READ_COUNT} random ${READ_BYTES} B reads per contender per round, ${ROUNDS} rounds (+1 warm-up), 256 MiB file in page cache`);
await interleave(1, contenders);
const results = await interleave(ROUNDS, contenders);

const distinctChecksums = new Set(Object.values(checksums));
if (distinctChecksums.size !== 1) throw new Error(`contenders read different bytes: ${JSON.stringify(checksums)}`);

const medians = {} as Record<keyof typeof contenders, number>;
for (const name of Object.keys(results) as Array<keyof typeof contenders>) {
  const rates = results[name];
  medians[name] = median(rates);
  const low = Math.min(...rates);
  const high = Math.max(...rates);
  console.log(`${name.padEnd(18)} ${Math.round(medians[name]).toLocaleString('en-US').padStart(11)} op/s  (min ${Math.round(low).toLocaleString('en-US')}, max ${Math.round(high).toLocaleString('en-US')})`);
}

await syncDevice.close();
await asyncDevice.close();
fs.closeSync(fd);
await handle.close();
fs.rmSync(tempDir, { recursive: true, force: true });

console.log(ratioLine(`filedevice-read-4k/readSync (${adapter.name})`, medians['filedevice-sync'], medians.readSync));
console.log(ratioLine(`filedevice-read-4k/filehandle (${adapter.name})`, medians['filedevice-sync'], medians.filehandle));
console.log(ratioLine(`filedevice-async-read-4k/filehandle (${adapter.name})`, medians['filedevice-async'], medians.filehandle));
