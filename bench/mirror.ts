/**
 * The mirror (runtime/mirror) and its dirty-log server vs their physical limits, same process,
 * same files, interleaved rounds (A B A B), medians.
 *
 *   seqwrite   SIZE of 1 MiB writes (QD 4) to a 2-leg mirror with a disk log, then one flush, vs
 *              the same writes issued to both leg files directly in parallel, then a flush of
 *              both: same bytes, same durability (the mirror's marks are durable in the log too).
 *   randwrite  4 KiB random writes (QD 1) with a flush every 32, same contenders; result line:
 *              log requests per write (MARK/CLEAR/FLUSH the mirror sent).
 *   roundtrip  IS_CLEAN requests to the log server over its Unix socket vs a bare echo of the same
 *              160+8-byte frames over a Unix socket in this process: requests per second each.
 *   resync     after a crash with 1/8 of the regions dirty in a disk log, the resync of a mirror
 *              opened on it vs a full copy of leg 0 to leg 1: bytes copied and time (ratio of the
 *              time a full copy takes to the time the resync took).
 * Run: npm run bench -- mirror [--runtimes node]
 * Env: BLOCKCORE_BENCH_MIRROR_MIB (default 512), BLOCKCORE_BENCH_ROUNDS (default 5).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LogServer } from '../runtime/dirty-log/log-server.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MirrorDevice } from '../runtime/mirror/mirror-device.ts';
import { Prng } from '../runtime/prng.ts';
import { UlogClient } from '../runtime/ulog/ulog-client.ts';
import { socketLink } from '../runtime/ulog/ulog-link.ts';
import { UlogServer } from '../server/ulog/ulog-server.ts';
import { pipelined, randomBothLegs, sequentialBothLegs } from './leg-writes.ts';
import { interleave, median, ratioLine } from './stats.ts';

const MIB = 1024 * 1024;
const SIZE_BYTES = Number(process.env.BLOCKCORE_BENCH_MIRROR_MIB ?? 512) * MIB;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 5);
const WRITE_BYTES = MIB;
const QUEUE_DEPTH = 4;
const RANDOM_WRITES = 4096;
const FLUSH_EVERY = 32;
const ROUND_TRIPS = 20_000;
const REGION_SECTORS = 1024; // 512 KiB regions (LVM's default mirror region size)
const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined' ? 'deno' : 'node';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-mirror-'));
const file = (name: string) => path.join(dir, name);
for (const [name, bytes] of [['a', SIZE_BYTES], ['b', SIZE_BYTES], ['log', MIB]] as const) {
  fs.writeFileSync(file(name), '');
  fs.truncateSync(file(name), bytes);
}
const data = new Prng(0x3177).fill(new Uint8Array(WRITE_BYTES));
const small = data.subarray(0, 4096);
let mirrors = 0;

function openMirror(logArgs = `disk 3 log ${REGION_SECTORS} nosync`, clearDelayMs?: number): Promise<MirrorDevice> {
  const open = (name: string) => FileDevice.open(file(name));
  return MirrorDevice.open({ name: `bench${++mirrors}`, table: `mirror ${logArgs} 2 a 0 b 0`, openLeg: open, openDevice: open, ...(clearDelayMs !== undefined ? { clearDelayMs } : {}) });
}

async function seqOurs(): Promise<number> {
  const mirror = await openMirror();
  const start = performance.now();
  await pipelined(SIZE_BYTES / WRITE_BYTES, QUEUE_DEPTH, (i) => mirror.write(i * WRITE_BYTES, data));
  await mirror.flush();
  const seconds = (performance.now() - start) / 1000;
  await mirror.close();
  return SIZE_BYTES / seconds;
}

function seqPeer(): Promise<number> {
  return sequentialBothLegs(['a', 'b'].map(file), 0, SIZE_BYTES, data, QUEUE_DEPTH);
}

let logRequestsPerWrite = 0;

async function randomOurs(): Promise<number> {
  const mirror = await openMirror();
  const prng = new Prng(0x4a4d);
  const commitsBefore = mirror.status().logCommits;
  const start = performance.now();
  for (let i = 0; i < RANDOM_WRITES; i++) {
    await mirror.write(prng.below(SIZE_BYTES / 4096) * 4096, small);
    if ((i + 1) % FLUSH_EVERY === 0) await mirror.flush();
  }
  await mirror.flush();
  const seconds = (performance.now() - start) / 1000;
  logRequestsPerWrite = (mirror.status().logCommits - commitsBefore) / RANDOM_WRITES;
  await mirror.close();
  return RANDOM_WRITES / seconds;
}

function randomPeer(): Promise<number> {
  return randomBothLegs(['a', 'b'].map(file), 0, SIZE_BYTES, small, RANDOM_WRITES, FLUSH_EVERY, 0x4a4d);
}

/** IS_CLEAN round trips through the log server's Unix socket, one at a time. */
async function roundTripOurs(): Promise<number> {
  const logs = new LogServer();
  const server = new UlogServer({ handler: logs });
  const socketPath = file('ulog.sock');
  await server.listen({ path: socketPath });
  const client = await UlogClient.open({ link: socketLink({ path: socketPath }), uuid: 'bench', logArgs: 'core 1024 nosync', targetSectors: 1024 * 1024 });
  await client.resume();
  const start = performance.now();
  for (let i = 0; i < ROUND_TRIPS; i++) await client.isClean(i % 1024);
  const rate = ROUND_TRIPS / ((performance.now() - start) / 1000);
  await client.destroy();
  await server.close();
  await logs.close();
  return rate;
}

/** The same frame sizes echoed by a bare server over a Unix socket: the transport's floor. */
async function roundTripPeer(): Promise<number> {
  const socketPath = file('echo.sock');
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer((socket) => {
    let held = 0;
    socket.on('data', (chunk: Uint8Array) => {
      held += chunk.length;
      while (held >= 168) {
        held -= 168;
        socket.write(new Uint8Array(168));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const socket = net.connect(socketPath);
  await new Promise((resolve) => socket.once('connect', resolve));
  let waiting: (() => void) | null = null;
  let got = 0;
  socket.on('data', (chunk: Uint8Array) => {
    got += chunk.length;
    if (got >= 168) {
      got -= 168;
      waiting?.();
    }
  });
  const frame = new Uint8Array(168);
  const start = performance.now();
  for (let i = 0; i < ROUND_TRIPS; i++) {
    await new Promise<void>((resolve) => {
      waiting = resolve;
      socket.write(frame);
    });
  }
  const rate = ROUND_TRIPS / ((performance.now() - start) / 1000);
  socket.destroy();
  await new Promise((resolve) => server.close(resolve));
  return rate;
}

/** A crash with 1/8 of the regions dirty: the resync of the disk log's regions vs a full copy. */
async function resync(): Promise<{ oursBytes: number; oursMs: number; fullMs: number }> {
  // Dirty 1/8 of the regions in the log, as a crash would leave them: each write's mark durable
  // before it went out, no flush after (which would clear them), no clear timer before the crash.
  const mirror = await openMirror(undefined, 3_600_000);
  const regionBytes = REGION_SECTORS * 512;
  const regions = SIZE_BYTES / regionBytes;
  for (let region = 0; region < regions; region += 8) await mirror.write(region * regionBytes, small);
  // The crash: the mirror is dropped as it is. Reopen on the same files with the log's own bits.
  const start = performance.now();
  const again = await openMirror(`disk 2 log ${REGION_SECTORS}`);
  await again.quiet();
  const oursMs = performance.now() - start;
  const oursBytes = again.status().bytesResynced;
  await again.close();
  const [from, to] = await Promise.all(['a', 'b'].map((name) => FileDevice.open(file(name))));
  const buffer = new Uint8Array(WRITE_BYTES);
  const copyStart = performance.now();
  for (let at = 0; at < SIZE_BYTES; at += WRITE_BYTES) {
    await from!.read(at, buffer);
    await to!.write(at, buffer);
  }
  await to!.flush();
  const fullMs = performance.now() - copyStart;
  await from!.close();
  await to!.close();
  return { oursBytes, oursMs, fullMs };
}

try {
  const seq = await interleave(ROUNDS, { ours: seqOurs, peer: seqPeer });
  console.log(`seqwrite ${SIZE_BYTES / MIB} MiB: mirror ${(median(seq.ours) / MIB).toFixed(1)} MiB/s, both legs directly ${(median(seq.peer) / MIB).toFixed(1)} MiB/s`);
  const random = await interleave(ROUNDS, { ours: randomOurs, peer: randomPeer });
  console.log(`randwrite 4 KiB, flush every ${FLUSH_EVERY}: mirror ${median(random.ours).toFixed(0)} IOPS, both legs directly ${median(random.peer).toFixed(0)} IOPS; ${logRequestsPerWrite.toFixed(3)} log FLUSHes per write`);
  const trips = await interleave(ROUNDS, { ours: roundTripOurs, peer: roundTripPeer });
  console.log(`log round trip over a Unix socket: ${median(trips.ours).toFixed(0)} requests/s, bare echo ${median(trips.peer).toFixed(0)} round trips/s`);
  const rec = await resync();
  console.log(`resync after a crash (disk log, 1/8 dirty): ${(rec.oursBytes / MIB).toFixed(1)} MiB copied in ${rec.oursMs.toFixed(0)} ms; full copy ${SIZE_BYTES / MIB} MiB in ${rec.fullMs.toFixed(0)} ms`);
  console.log(ratioLine(`mirror seq 1 MiB writes, disk log/both legs directly (${runtime})`, median(seq.ours), median(seq.peer)));
  console.log(ratioLine(`mirror 4 KiB random writes flush/32, disk log/both legs directly (${runtime})`, median(random.ours), median(random.peer)));
  console.log(ratioLine(`ulog round trip/bare echo over a Unix socket (${runtime})`, median(trips.ours), median(trips.peer)));
  console.log(ratioLine(`mirror resync after a crash/full copy (${runtime})`, 1 / rec.oursMs, 1 / rec.fullMs));
  console.log(`result mirror log FLUSHes per 4 KiB random write: ${logRequestsPerWrite.toFixed(3)}`);
  console.log(`result mirror resync after a crash: ${rec.oursBytes} bytes copied (full copy ${SIZE_BYTES})`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
