/**
 * Hydration on an edge host: a clone whose source is an HTTP image (served by this process on
 * 127.0.0.1) hydrating into a Durable Object's storage in the Worker under workerd, against the
 * same source hydrating into a FileDevice under this runtime, for scale. Both start with hydration
 * off, and the clock runs from enable_hydration to the last region hydrated (the Worker polled
 * every 20 ms, the file clone awaited); interleaved (Worker, file, Worker, file ...) after one
 * warm-up round, medians compared. A fresh clone, destination and metadata every round.
 * Prints `result` lines in MB/s and `ratio edge hydration, Worker DO storage/FileDevice (<rt>)`:
 * below 1 is expected (every chunk goes through the object's SQLite storage); it says how far.
 * Run: npm run bench -- edge [--runtimes node]. BLOCKCORE_BENCH_EDGE_MIB (image size, default 64),
 * BLOCKCORE_BENCH_ROUNDS (default 3).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { openCloneFromTable } from '../runtime/clone/open-table.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { FileStore } from '../runtime/devices/file-store.ts';
import { Prng } from '../runtime/prng.ts';
import { RangeServer } from '../test/support/range-server.ts';
import { startWorker } from '../test/support/workerd.ts';
import { median, ratioLine } from './stats.ts';

const IMAGE_BYTES = Number(process.env.BLOCKCORE_BENCH_EDGE_MIB ?? 64) * 1024 * 1024;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 3);
const REGION_SECTORS = 128; // 64 KiB regions, one KvDevice chunk each
const METADATA_BYTES = 1024 * 1024;
const POLL_MS = 20;
const MB = 1e6;

const adapter = await loadAdapter();
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-edge-'));
process.on('exit', () => fs.rmSync(tempDir, { recursive: true, force: true }));

const image = new RangeServer(new Prng(0xed6e).fill(new Uint8Array(IMAGE_BYTES)), { etag: '"bench-image"' });
await image.start();
// workerd on loopback with its storage in our temp dir (the bundle built first if stale).
const running = await startWorker(path.join(tempDir, 'storage'));
const worker = running.url;

async function api(method: string, route: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${worker}${route}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const json = (await response.json()) as Record<string, unknown>;
  if (response.status >= 300) throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(json)}`);
  return { status: response.status, json };
}

const table = (meta: string, dst: string) => `clone ${meta} ${dst} ${image.url} ${REGION_SECTORS} 1 no_hydration`;

/** Bytes per second into the Worker's Durable Object storage. */
async function workerRound(round: number): Promise<number> {
  const [meta, dst, name] = [`meta${round}`, `dst${round}.img`, `c${round}`];
  await api('POST', '/v1/devices', { name: meta, sizeBytes: METADATA_BYTES });
  await api('POST', '/v1/devices', { name: dst, sizeBytes: IMAGE_BYTES });
  await api('POST', '/v1/clones', { name, table: table(meta, dst) });
  const startMs = performance.now();
  await api('POST', `/v1/clones/${name}/message`, { message: 'enable_hydration' });
  for (;;) {
    const clone = (await api('GET', `/v1/clones/${name}`)).json;
    if (clone.hydrationComplete === true) break;
    if (clone.hydrationError) throw new Error(`Worker hydration failed: ${clone.hydrationError}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  const seconds = (performance.now() - startMs) / 1000;
  await api('DELETE', `/v1/clones/${name}`).catch(() => {});
  await api('DELETE', `/v1/devices/${dst}`).catch(() => {});
  await api('DELETE', `/v1/devices/${meta}`).catch(() => {});
  return IMAGE_BYTES / seconds;
}

/** Bytes per second into a FileDevice under this runtime. */
async function fileRound(round: number): Promise<number> {
  const dir = path.join(tempDir, `files${round}`);
  fs.mkdirSync(dir);
  for (const [name, size] of [['meta', METADATA_BYTES], ['dst.img', IMAGE_BYTES]] as const) await (await FileDevice.open(path.join(dir, name), { create: { sizeBytes: size } })).close();
  const clone = await openCloneFromTable(new FileStore(dir), table('meta', 'dst.img'));
  try {
    const startMs = performance.now();
    clone.message('enable_hydration');
    await clone.whenHydrated();
    return IMAGE_BYTES / ((performance.now() - startMs) / 1000);
  } finally {
    await clone.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`edge bench on ${adapter.name} ${adapter.version}: ${IMAGE_BYTES / 2 ** 20} MiB HTTP image, ${REGION_SECTORS / 2} KiB regions, ${ROUNDS} rounds (+1 warm-up)`);
const rates = { worker: [] as number[], file: [] as number[] };
try {
  for (let round = 0; round <= ROUNDS; round++) {
    const workerRate = await workerRound(round);
    const fileRate = await fileRound(round);
    if (round > 0) {
      rates.worker.push(workerRate);
      rates.file.push(fileRate);
    }
    console.log(`round ${round}${round === 0 ? ' (warm-up)' : ''}: Worker ${(workerRate / MB).toFixed(1)} MB/s, FileDevice ${(fileRate / MB).toFixed(1)} MB/s`);
  }
} finally {
  await running.stop();
  await image.stop();
}
console.log(`result Worker hydration from HTTP into Durable Object storage (${adapter.name} drives): ${(median(rates.worker) / MB).toFixed(1)} MB/s`);
console.log(`result hydration from HTTP into a FileDevice (${adapter.name}): ${(median(rates.file) / MB).toFixed(1)} MB/s`);
console.log(ratioLine(`edge hydration, Worker DO storage/FileDevice (${adapter.name})`, median(rates.worker), median(rates.file)));
