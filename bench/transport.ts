/**
 * Transport: our RTRS (over TCP) + RNBD RemoteDevice against nbdkit's file plugin driven by
 * nbdcopy and fio over TCP, on the same file, plus our own variants (two paths, always_invalidate
 * off, digest on) and failover times. Issue 9, "Targets".
 *
 * Who runs where. Our server (RtrsServer + RnbdServer over a FileDevice, bench/transport/
 * server-child.ts) runs in a child process under the same runtime; our client (RtrsClient +
 * RnbdClient, the RemoteDevice) runs in this process. The peer is two processes too (nbdkit, and
 * nbdcopy or fio). Server and client in one process would put both ends' work on one event loop
 * while the peer spreads it over two processes and their threads; on this 2-core machine that
 * would measure the sharing, not the transport, and a real deployment has the two ends on two
 * hosts. Both servers stay up for the whole run; the client side starts for each measurement.
 *
 * The file: BLOCKCORE_BENCH_TRANSPORT_MIB of pseudo-random data (no holes), served as device
 * `disk`; a second file of other pseudo-random data is the source of the writes. Both are read
 * once first, so every read comes from the page cache on both sides.
 * Checked, outside any timing: eight 1 MiB reads through our device against the file, and the file
 * against the source after our first write (in the warm-up round).
 * Durability: writes are not synced on either side. Ours are plain RNBD WRITEs (no FUA, no FLUSH)
 * that the server pwrites into the page cache; nbdcopy runs without --flush and nbdkit's file
 * plugin pwrites into the page cache too. Write-back happens when the kernel decides, for both.
 *
 * Contenders, run once each per round in this order (A B C ... A B C ...), one warm-up round first,
 * medians compared:
 *   seq-read   ours: the whole device in 1 MiB reads, IOS_IN_FLIGHT at once, bytes dropped;
 *              the session is opened (RTRS handshake, SESS_INFO, OPEN) and closed inside the
 *              timing, as nbdcopy's connect is inside its process's wall time.
 *              peer: `nbdcopy nbd://127.0.0.1:PORT/ null:` (its defaults: up to 4 connections
 *              with multi-conn, 64 requests of 256 KiB each).
 *     1 path        ours over 127.0.0.1 (cores + 1 TCP connections per path, RTRS's default), the server
 *                   with always_invalidate on (the default, as the kernel's), digest off
 *     2 paths       the same over 127.0.0.1 and 127.0.0.2, policy min-inflight
 *     invalidate off  1 path to a server with always_invalidate off
 *     digest on     1 path with the CRC32C frame digest (client option; the server follows)
 *     IO threads    1 path, the IO connections of both ends served by worker threads
 *                   (runtime/transport/rtrs-io-threads.ts; only where the runtime can hand
 *                   connections to threads: Node)
 *   seq-write  the same contenders; ours reads each 1 MiB from the source file and writes it
 *              (what nbdcopy does); peer: `nbdcopy SOURCE nbd://127.0.0.1:PORT/`.
 *   randread   ours: 4 KiB random reads at queue depth 32 on 1 path for FIO_SECONDS, IOPS (the
 *              session opened outside the timing, as fio's report leaves its setup out);
 *              peer: `fio --ioengine=nbd --rw=randread --bs=4k --iodepth=32` as long.
 * Then failover (bench/transport/failover.ts): FAILOVER_TRIALS (ROUNDS, at least 5) trials each of
 * a silent stall and of a reset of one of two paths under random reads, heartbeat interval
 * FAILOVER_HEARTBEAT_MS (100 ms); medians, and the worst.
 * Also printed: each server's CPU seconds per GiB moved (ours: the server child; nbdkit), from
 * /proc/PID/stat, which other load on the shared machine disturbs less than throughput does.
 *
 * Output: `ratio <what> (<runtime>): X` lines (above 1 = the first-named faster): 1 path /
 * nbdkit+nbdcopy, 2 paths / 1 path, IO threads / one thread, randread IOPS / nbdkit fio, and the
 * costs as off/on ratios;
 * `result failover ...` lines (no peer).
 * Run: npm run bench -- transport [--runtimes node]. Environment: BLOCKCORE_BENCH_TRANSPORT_MIB
 * (default 1024), BLOCKCORE_BENCH_ROUNDS (default 3), BLOCKCORE_BENCH_FIO_SECONDS (default 4; 0
 * skips randread).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { Prng } from '../runtime/prng.ts';
import { failoverTrial, type Break } from './transport/failover.ts';
import { BENCH_IO_THREADS, openRemote, pathsTo, randRead, seqRead, seqWrite, startServerChild } from './transport/ours.ts';
import { cpuSeconds, freePort, stopChildren } from './processes.ts';
import { fioRandreadIops, nbdcopyRate, startNbdkit } from './transport/processes.ts';
import { median, ratioLine } from './stats.ts';

const MiB = 1024 * 1024;
const FILE_BYTES = Number(process.env.BLOCKCORE_BENCH_TRANSPORT_MIB ?? 1024) * MiB;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 3);
const FIO_SECONDS = Number(process.env.BLOCKCORE_BENCH_FIO_SECONDS ?? 4);
const SEQ_IO_BYTES = MiB;
const IOS_IN_FLIGHT = 16;
const RANDOM_IO_BYTES = 4096;
const RANDOM_QUEUE_DEPTH = 32;
const FAILOVER_HEARTBEAT_MS = 100;
/** Each trial about a second; at least five, so the median of a random tick phase means something. */
const FAILOVER_TRIALS = Math.max(5, ROUNDS);
const FILL_CHUNK_BYTES = 8 * MiB;
if (!(FILE_BYTES > 0 && FILE_BYTES % FILL_CHUNK_BYTES === 0)) throw new Error(`BLOCKCORE_BENCH_TRANSPORT_MIB must be a positive multiple of ${FILL_CHUNK_BYTES / MiB}`);
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) throw new Error('BLOCKCORE_BENCH_ROUNDS must be a positive integer');

const adapter = await loadAdapter();
/** Where the runtime cannot hand connections to threads the 'ioThreads' server is the one-thread server again: no ratio then. */
const ioThreadsServe = adapter.threadSockets !== null;
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-transport-'));
const diskPath = path.join(tempDir, 'disk.img');
const sourcePath = path.join(tempDir, 'source.img');
// However the run ends (a failed start included), stop what we started, by PID, and clean up.
process.on('exit', () => {
  stopChildren();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

/** A file of pseudo-random data (every 8 MiB chunk different), then read once into the page cache. */
function fillAndWarm(filePath: string, seed: number): void {
  const chunk = new Prng(seed).fill(new Uint8Array(FILL_CHUNK_BYTES));
  const view = new DataView(chunk.buffer);
  const fd = fs.openSync(filePath, 'w');
  for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) {
    view.setFloat64(0, offsetBytes);
    fs.writeSync(fd, chunk, 0, FILL_CHUNK_BYTES, offsetBytes);
  }
  fs.closeSync(fd);
  warm(filePath);
}

function warm(filePath: string): void {
  const chunk = new Uint8Array(FILL_CHUNK_BYTES);
  const fd = fs.openSync(filePath, 'r');
  for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) fs.readSync(fd, chunk, 0, FILL_CHUNK_BYTES, offsetBytes);
  fs.closeSync(fd);
}

/** Throws unless reads through our device return the file's bytes (a few 1 MiB ranges, before any timing). */
async function assertReadsMatch(filePath: string): Promise<void> {
  const remote = await openRemote(ourPaths.twoPaths, 'ro');
  const fd = fs.openSync(filePath, 'r');
  try {
    const [viaDevice, viaFile] = [new Uint8Array(SEQ_IO_BYTES), new Uint8Array(SEQ_IO_BYTES)];
    const prng = new Prng(0x0c4e);
    for (let check = 0; check < 8; check++) {
      const offsetBytes = prng.below(FILE_BYTES / SEQ_IO_BYTES) * SEQ_IO_BYTES;
      await remote.device.read(offsetBytes, viaDevice);
      fs.readSync(fd, viaFile, 0, SEQ_IO_BYTES, offsetBytes);
      if (!Buffer.from(viaDevice.buffer).equals(Buffer.from(viaFile.buffer))) throw new Error(`our read at ${offsetBytes} differs from the file`);
    }
  } finally {
    fs.closeSync(fd);
    await remote.close();
  }
}

/** Throws unless the two files hold the same bytes (our first write is checked this way). */
function assertSameFiles(a: string, b: string): void {
  const [bufferA, bufferB] = [new Uint8Array(FILL_CHUNK_BYTES), new Uint8Array(FILL_CHUNK_BYTES)];
  const [fdA, fdB] = [fs.openSync(a, 'r'), fs.openSync(b, 'r')];
  try {
    for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) {
      fs.readSync(fdA, bufferA, 0, FILL_CHUNK_BYTES, offsetBytes);
      fs.readSync(fdB, bufferB, 0, FILL_CHUNK_BYTES, offsetBytes);
      if (!Buffer.from(bufferA.buffer).equals(Buffer.from(bufferB.buffer))) throw new Error(`our write left ${a} different from ${b} in the 8 MiB at ${offsetBytes}`);
    }
  } finally {
    fs.closeSync(fdA);
    fs.closeSync(fdB);
  }
}

fillAndWarm(diskPath, 0x7a5f);
fillAndWarm(sourcePath, 0x50c3);
const ours = await startServerChild(diskPath);
const kitPort = await freePort();
const kitPid = await startNbdkit(diskPath, kitPort);
const kitUri = `nbd://127.0.0.1:${kitPort}/`;
const sourceFd = fs.openSync(sourcePath, 'r');

type Contender = 'onePath' | 'nbdkit' | 'twoPaths' | 'invalidateOff' | 'digestOn' | 'ioThreads';
const CONTENDERS: Contender[] = ['onePath', 'nbdkit', 'twoPaths', 'invalidateOff', 'digestOn', 'ioThreads'];
const LABELS: Record<Contender, string> = {
  onePath: 'ours 1 path', nbdkit: 'nbdkit+nbdcopy', twoPaths: 'ours 2 paths', invalidateOff: 'ours invalidate off', digestOn: 'ours digest on',
  ioThreads: 'ours IO threads',
};
const ourPaths = {
  onePath: pathsTo(ours.addresses.invalidateOn.slice(0, 1)),
  twoPaths: pathsTo(ours.addresses.invalidateOn),
  invalidateOff: pathsTo(ours.addresses.invalidateOff.slice(0, 1)),
  digestOn: pathsTo(ours.addresses.invalidateOn.slice(0, 1)),
  ioThreads: pathsTo(ours.addresses.ioThreads.slice(0, 1)),
};

/** Bytes per second of one sequential pass; adds the server's CPU seconds to `cpu`. */
async function sequential(direction: 'read' | 'write', who: Contender, cpu: number[]): Promise<number> {
  const serverPid = who === 'nbdkit' ? kitPid : ours.pid;
  const cpuBefore = await cpuSeconds(serverPid);
  let rate: number;
  if (who === 'nbdkit') {
    rate = direction === 'read' ? await nbdcopyRate(kitUri, 'null:', FILE_BYTES) : await nbdcopyRate(sourcePath, kitUri, FILE_BYTES);
  } else {
    const startMs = performance.now();
    const remote = await openRemote(ourPaths[who], direction === 'read' ? 'ro' : 'rw', { digest: who === 'digestOn', ioThreads: who === 'ioThreads' ? BENCH_IO_THREADS : 0 });
    if (remote.device.sizeBytes !== FILE_BYTES) throw new Error(`the remote device has ${remote.device.sizeBytes} bytes, the file ${FILE_BYTES}`);
    try {
      if (direction === 'read') await seqRead(remote.device, SEQ_IO_BYTES, IOS_IN_FLIGHT);
      else await seqWrite(remote.device, sourceFd, SEQ_IO_BYTES, IOS_IN_FLIGHT);
    } finally {
      await remote.close();
    }
    rate = FILE_BYTES / ((performance.now() - startMs) / 1000);
  }
  cpu.push((await cpuSeconds(serverPid)) - cpuBefore);
  return rate;
}

async function ourRandRead(round: number): Promise<number> {
  const remote = await openRemote(ourPaths.onePath, 'ro');
  try {
    return await randRead(remote.device, RANDOM_IO_BYTES, RANDOM_QUEUE_DEPTH, FIO_SECONDS, 0x4a4d + round);
  } finally {
    await remote.close();
  }
}

await assertReadsMatch(diskPath);
const emptyRecord = (): Record<Contender, number[]> => ({ onePath: [], nbdkit: [], twoPaths: [], invalidateOff: [], digestOn: [], ioThreads: [] });
const rates = { read: emptyRecord(), write: emptyRecord() };
const cpu = { read: emptyRecord(), write: emptyRecord() };
const iops = { ours: [] as number[], nbdkit: [] as number[] };
const mibPerS = (rate: number | undefined): string => `${((rate ?? 0) / MiB).toFixed(0)}`;

console.log(`transport bench on ${adapter.name} ${adapter.version}: ${FILE_BYTES / MiB} MiB file in page cache, ${ROUNDS} rounds (+1 warm-up), ` +
  `${SEQ_IO_BYTES / MiB} MiB IOs x ${IOS_IN_FLIGHT} in flight, randread ${FIO_SECONDS} s; server child pid ${ours.pid}, nbdkit pid ${kitPid}`);
try {
  for (let round = 0; round <= ROUNDS; round++) {
    const measured = round > 0;
    for (const direction of ['read', 'write'] as const) {
      for (const who of CONTENDERS) {
        const rate = await sequential(direction, who, measured ? cpu[direction][who] : []);
        if (measured) rates[direction][who].push(rate);
        // The first write of the run is ours: check it put the source's bytes in the file.
        if (!measured && direction === 'write' && who === 'onePath') assertSameFiles(diskPath, sourcePath);
        if (!measured) console.log(`  warm-up seq-${direction} ${LABELS[who]}: ${mibPerS(rate)} MiB/s`);
      }
    }
    let oursIops = 0;
    let kitIops = 0;
    if (FIO_SECONDS > 0) {
      oursIops = await ourRandRead(round);
      kitIops = await fioRandreadIops(kitUri, FILE_BYTES, RANDOM_IO_BYTES, RANDOM_QUEUE_DEPTH, FIO_SECONDS);
      if (measured) {
        iops.ours.push(oursIops);
        iops.nbdkit.push(kitIops);
      }
    }
    const line = (direction: 'read' | 'write') => CONTENDERS.map((who) => `${LABELS[who]} ${mibPerS(measured ? rates[direction][who].at(-1) : undefined)}`).join(', ');
    if (measured) console.log(`round ${round}: seq-read MiB/s ${line('read')}; seq-write MiB/s ${line('write')}; randread IOPS ours ${oursIops | 0} nbdkit fio ${kitIops | 0}`);
  }
} finally {
  fs.closeSync(sourceFd);
}

const failover: Record<Break, { heldMs: number[]; moved: number[]; inflight: number[] }> = {
  stall: { heldMs: [], moved: [], inflight: [] },
  reset: { heldMs: [], moved: [], inflight: [] },
};
for (let trial = 0; trial < FAILOVER_TRIALS; trial++) {
  for (const how of ['stall', 'reset'] as const) {
    const result = await failoverTrial(ours, how, FAILOVER_HEARTBEAT_MS, 0xfa11 + trial);
    failover[how].heldMs.push(result.heldMs);
    failover[how].moved.push(result.movedRequests);
    failover[how].inflight.push(result.inflightAtBreak);
    console.log(`failover trial ${trial} ${how}: reads held ${result.heldMs.toFixed(0)} ms, ${result.inflightAtBreak} in flight on the broken path, ${result.movedRequests} moved`);
  }
}
stopChildren();

const gib = FILE_BYTES / 2 ** 30;
for (const direction of ['read', 'write'] as const) {
  for (const who of CONTENDERS) {
    console.log(`seq-${direction} ${LABELS[who].padEnd(20)} median ${mibPerS(median(rates[direction][who])).padStart(5)} MiB/s, server ${(median(cpu[direction][who]) / gib).toFixed(2)} CPU s/GiB`);
  }
}
if (FIO_SECONDS > 0) console.log(`randread-4k-qd32 median ours ${median(iops.ours).toFixed(0)} IOPS, nbdkit fio ${median(iops.nbdkit).toFixed(0)} IOPS`);

const runtime = adapter.name;
for (const direction of ['read', 'write'] as const) {
  const rate = (who: Contender): number => median(rates[direction][who]);
  console.log(ratioLine(`seq-${direction} 1 path/nbdkit+nbdcopy (${runtime})`, rate('onePath'), rate('nbdkit')));
  console.log(ratioLine(`seq-${direction} 2 paths/1 path (${runtime})`, rate('twoPaths'), rate('onePath')));
  console.log(ratioLine(`seq-${direction} invalidate off/on (${runtime})`, rate('invalidateOff'), rate('onePath')));
  console.log(ratioLine(`seq-${direction} digest off/on (${runtime})`, rate('onePath'), rate('digestOn')));
  if (ioThreadsServe) console.log(ratioLine(`seq-${direction} IO threads both ends/one thread (${runtime})`, rate('ioThreads'), rate('onePath')));
}
if (FIO_SECONDS > 0) console.log(ratioLine(`randread-4k-qd32 IOPS/nbdkit fio (${runtime})`, median(iops.ours), median(iops.nbdkit)));
const silentMs = median(failover.stall.heldMs);
console.log(`result failover after silent death: ${silentMs.toFixed(0)} ms (${(silentMs / FAILOVER_HEARTBEAT_MS).toFixed(1)} heartbeat intervals)`);
console.log(`result failover after reset: ${median(failover.reset.heldMs).toFixed(0)} ms`);
console.log(`failover worst of ${FAILOVER_TRIALS}: ${Math.max(...failover.stall.heldMs).toFixed(0)} ms after silent death, ${Math.max(...failover.reset.heldMs).toFixed(0)} ms after reset`);
