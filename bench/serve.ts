/**
 * NBD serving: our NbdServer over a FileDevice vs `nbdkit file` on the same file, driven by the
 * same real clients, interleaved (ours, nbdkit, ours, nbdkit ...) after one warm-up round; medians
 * compared.
 *   nbdcopy-tcp   nbdcopy nbd://127.0.0.1:PORT/NAME null:   (whole 2 GiB file; nbdcopy's defaults:
 *                 2 connections x 64 requests of 256 KiB), throughput
 *   nbdcopy-unix  the same over a Unix socket (nbd+unix:///NAME?socket=PATH)
 *   fio-randread  fio --ioengine=nbd, 4 KiB random reads at queue depth 32 over TCP, IOPS; and at
 *                 queue depth 1: the mean completion latency (ratio: nbdkit's / ours)
 *   fio-randwrite fio 4 KiB random writes at queue depth 32 over TCP to a writable copy of the
 *                 first BLOCKCORE_BENCH_SERVE_RW_MIB (default 512) of the file (both servers write
 *                 the page cache; neither flushes), IOPS
 *   nbdcopy-threads  nbdcopy over TCP from our server with 2 NBD threads (server/nbd/threads.ts;
 *                 Node only), against nbdkit over TCP
 * The file is filled with pseudo-random data (no holes: every byte is read) and read once first, so
 * both servers read from the page cache. Both exports are read-only. Our server runs in this
 * process; clients and nbdkit are child processes stopped by PID.
 * Also printed: each server's CPU time per GiB copied / per 1000 reads (ours: this process, thread
 * pool included; nbdkit: /proc/PID/stat), which other load on the machine disturbs less than
 * throughput does.
 * Ends with `ratio <what> (<runtime>): <ours/peer>` lines (above 1 = ours faster).
 * Where the time went (perf, 1 GiB over a Unix socket, Node, 2026-11), before zero copy: both
 * servers spent about the same on the page-cache read copy (pread), but our socket-send copy cost
 * about 2.5x nbdkit's per byte (0.2 vs 0.08 CPU s/GiB) and the thread-pool hop added context
 * switches. Tried and not kept (no gain outside the noise): sending a read reply the moment its
 * data arrives instead of a batch later, reading synchronously on the event loop, 8 requests in
 * flight instead of 64. What worked: zero-copy sends (sendfile from the file to the socket, see
 * runtime/net/output-queue.ts) with a 4 MiB SO_SNDBUF: over a Unix socket 0.1 CPU s/GiB and about
 * 2x nbdkit's throughput. Over TCP our CPU per GiB is at or below nbdkit's, but the loopback TCP
 * work runs on our one event-loop thread, where nbdkit spreads it over threads; both machines sit
 * ~45% idle (perf -a): the copy is latency-bound, not CPU-bound. Zero copy on or off, with or
 * without SO_SNDBUF, TCP stayed at 0.7-0.75x on Node (A/B, 2 GiB, 2026-11); short sendfiles are
 * ~3.5% of replies. The next thing to try there is several event loops (worker threads each with
 * their own listener and connections), not more single-thread tuning.
 *   nbdcopy-tls   nbdcopy over TCP with TLS (X.509, STARTTLS required) from ours and from nbdkit
 *                 --tls=require; also ours with TLS against ours without (what TLS costs: no zero copy)
 *   http-range   the same file over our HTTP data plane (server/http/data.ts, node-listen), read as 4
 *                Range GETs of a quarter each by 4 curl processes at once, against our own NBD
 *                export over TCP (nbdcopy): the data plane should read as fast as the device
 * Run: npm run bench -- serve [--runtimes node]. Environment: BLOCKCORE_BENCH_SERVE_MIB (file size,
 * default 2048), BLOCKCORE_BENCH_ROUNDS (default 5), BLOCKCORE_BENCH_FIO_SECONDS (default 4; 0
 * skips fio), BLOCKCORE_BENCH_COPY (copy cases, default oursTcp,kitTcp,oursUnix,kitUnix,oursTls,kitTls,oursHttp).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { OpenAPIHono } from '@hono/zod-openapi';
import { WriteGenerations } from '../server/data-plane/write-generation.ts';
import { dataRoutes } from '../server/http/data.ts';
import { answerError } from '../server/http/errors.ts';
import { listenHttp } from '../server/http/node-listen.ts';
import { bodyLimitBytes } from '../server/http/route.ts';
import { NbdServer } from '../server/nbd/server.ts';
import { makeCerts, nbdTlsDirs } from '../test/support/certs.ts';
import { children, cpuSeconds, freePort, run, stopChildren } from './processes.ts';
import { median, ratioLine } from './stats.ts';

const FILE_BYTES = Number(process.env.BLOCKCORE_BENCH_SERVE_MIB ?? 2048) * 1024 * 1024;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 5);
const FIO_SECONDS = Number(process.env.BLOCKCORE_BENCH_FIO_SECONDS ?? 4);
type CopyCase = 'oursTcp' | 'kitTcp' | 'oursUnix' | 'kitUnix' | 'oursTls' | 'kitTls' | 'oursHttp' | 'oursThreads';
const adapter = await loadAdapter();
const COPY_CASES = (process.env.BLOCKCORE_BENCH_COPY ?? `oursTcp,kitTcp,oursUnix,kitUnix,oursTls,kitTls,oursHttp${adapter.threadSockets !== null ? ',oursThreads' : ''}`).split(',').filter(Boolean) as CopyCase[];
/** NBD threads of the oursThreads case. */
const NBD_THREADS = 2;
const RW_BYTES = Math.min(Number(process.env.BLOCKCORE_BENCH_SERVE_RW_MIB ?? 512) * 1024 * 1024, Number(process.env.BLOCKCORE_BENCH_SERVE_MIB ?? 2048) * 1024 * 1024);
/** curl processes reading the HTTP data plane at once, a quarter of the file each. */
const HTTP_READERS = 4;
const FILL_CHUNK_BYTES = 8 * 1024 * 1024;
/** BLOCKCORE_BENCH_ZERO_COPY=0 serves every read through memory (to compare with zero-copy sends). */
const ZERO_COPY = process.env.BLOCKCORE_BENCH_ZERO_COPY !== '0';
const EXPORT_NAME = 'bench';

const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-serve-'));
const filePath = path.join(tempDir, 'disk.img');
// However the run ends (a failed nbdkit start included), stop what we started, by PID.
process.on('exit', () => {
  stopChildren();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

/** Starts `nbdkit file` with `where` (its listening and TLS arguments); `uri` reaches it once up. */
async function startNbdkit(where: string[], uri: string, file = filePath, writable = false): Promise<number> {
  const child = spawn('nbdkit', ['-f', ...(writable ? [] : ['-r']), ...where, 'file', file], { stdio: 'ignore' });
  children.push(child);
  for (let attempt = 0; attempt < 100; attempt++) {
    if ((await run('nbdinfo', ['--size', uri])).code === 0) return child.pid!;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nbdkit ${where.join(' ')} did not come up`);
}

/** Bytes per second; adds the server's CPU seconds to `cpu`. */
async function nbdcopyRate(uri: string, server: number | 'self', cpu: number[]): Promise<number> {
  const cpuBefore = await cpuSeconds(server);
  const startMs = performance.now();
  const result = await run('nbdcopy', [uri, 'null:']);
  const seconds = (performance.now() - startMs) / 1000;
  cpu.push((await cpuSeconds(server)) - cpuBefore);
  if (result.code !== 0) throw new Error(`nbdcopy ${uri} failed: ${result.stderr}`);
  return FILE_BYTES / seconds;
}

/** Bytes per second of HTTP_READERS curls reading a part each of `url` with Range; adds our CPU seconds to `cpu`. */
async function httpRangeRate(url: string, cpu: number[]): Promise<number> {
  const cpuBefore = await cpuSeconds('self');
  const startMs = performance.now();
  const partBytes = Math.ceil(FILE_BYTES / HTTP_READERS);
  const results = await Promise.all(
    Array.from({ length: HTTP_READERS }, (_, i) => {
      const first = i * partBytes;
      const last = Math.min(FILE_BYTES, first + partBytes) - 1;
      return run('curl', ['-sS', '-f', '-r', `${first}-${last}`, '-o', '/dev/null', '-w', '%{size_download}', url]);
    }),
  );
  const seconds = (performance.now() - startMs) / 1000;
  cpu.push((await cpuSeconds('self')) - cpuBefore);
  const failed = results.find((result) => result.code !== 0);
  if (failed) throw new Error(`curl ${url} failed: ${failed.stderr}`);
  const bytes = results.reduce((total, result) => total + Number(result.stdout), 0);
  if (bytes !== FILE_BYTES) throw new Error(`curl read ${bytes} bytes of ${FILE_BYTES}`);
  return FILE_BYTES / seconds;
}

interface FioRun {
  iops: number;
  /** Mean completion latency, microseconds. */
  latencyUs: number;
}

/** 4 KiB random reads or writes at `depth`; adds the server's CPU seconds per 1000 requests to `cpu`. */
async function fioRun(uri: string, server: number | 'self', cpu: number[], rw: 'randread' | 'randwrite', depth: number, sizeBytes: number): Promise<FioRun> {
  const cpuBefore = await cpuSeconds(server);
  const result = await run('fio', [
    `--name=${rw}`, '--ioengine=nbd', `--uri=${uri}`, `--rw=${rw}`, '--bs=4k', `--iodepth=${depth}`, '--numjobs=1',
    `--size=${sizeBytes}`, `--runtime=${FIO_SECONDS}`, '--time_based', '--output-format=json',
  ]);
  if (result.code !== 0) throw new Error(`fio ${uri} failed: ${result.stderr}`);
  type Side = { iops: number; total_ios: number; clat_ns: { mean: number } };
  const report = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: Array<{ read: Side; write: Side }> };
  const side = rw === 'randread' ? report.jobs[0]!.read : report.jobs[0]!.write;
  cpu.push((((await cpuSeconds(server)) - cpuBefore) / side.total_ios) * 1000);
  return { iops: side.iops, latencyUs: side.clat_ns.mean / 1000 };
}

// ---- the file: pseudo-random, fully allocated, then read once into the page cache ----
{
  const chunk = new Prng(0x5e7e).fill(new Uint8Array(FILL_CHUNK_BYTES));
  const view = new DataView(chunk.buffer);
  const fd = fs.openSync(filePath, 'w');
  for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) {
    view.setFloat64(0, offsetBytes); // every chunk differs
    fs.writeSync(fd, chunk, 0, Math.min(FILL_CHUNK_BYTES, FILE_BYTES - offsetBytes), offsetBytes);
  }
  fs.closeSync(fd);
  const readFd = fs.openSync(filePath, 'r');
  for (let offsetBytes = 0; offsetBytes < FILE_BYTES; offsetBytes += FILL_CHUNK_BYTES) fs.readSync(readFd, chunk, 0, FILL_CHUNK_BYTES, offsetBytes);
  fs.closeSync(readFd);
}

// The writable copy fio writes to (both servers: the same bytes, each its own run of writes).
const rwPath = path.join(tempDir, 'rw.img');
fs.copyFileSync(filePath, rwPath);
fs.truncateSync(rwPath, RW_BYTES);

const device = await FileDevice.open(filePath, { readOnly: true });
const exported = { name: EXPORT_NAME, device, readOnly: true };
const rwDevice = await FileDevice.open(rwPath);
const rwExported = { name: 'rw', device: rwDevice, readOnly: false };
const lookup = (name: string) => (name === EXPORT_NAME ? exported : name === 'rw' ? rwExported : undefined);
const server = new NbdServer({ lookup, list: () => [exported, rwExported], zeroCopy: ZERO_COPY });
// The same file for NBD threads to open (a read-only export: no version to count in).
const threadedExported = { ...exported, threadable: { path: filePath, readOnly: true, logicalBlockBytes: device.logicalBlockBytes, writeCounts: null, addIo: () => {} } };
const threadedServer = new NbdServer({ lookup: (name) => (name === EXPORT_NAME ? threadedExported : undefined), list: () => [threadedExported], zeroCopy: ZERO_COPY, threads: NBD_THREADS });
const oursThreaded = (await threadedServer.listen({ host: '127.0.0.1', port: 0 })) as { port: number };
const ourSocket = path.join(tempDir, 'ours.sock');
const kitSocket = path.join(tempDir, 'nbdkit.sock');
const ours = (await server.listen({ host: '127.0.0.1', port: 0 })) as { port: number };
await server.listen({ path: ourSocket });
const kitPort = await freePort();
const kitTcpPid = await startNbdkit(['-p', String(kitPort), '-i', '127.0.0.1'], `nbd://127.0.0.1:${kitPort}/`);
const kitUnixPid = await startNbdkit(['-U', kitSocket], `nbd+unix:///?socket=${kitSocket}`);
const kitRwPort = await freePort();
const kitRwPid = await startNbdkit(['-p', String(kitRwPort), '-i', '127.0.0.1'], `nbd://127.0.0.1:${kitRwPort}/`, rwPath, true);
// TLS: a throwaway PKI in the layout nbdkit and we both read (server/nbd/tls.ts), STARTTLS required on both.
const { serverDir: serverTlsDir, clientDir: clientTlsDir } = nbdTlsDirs(makeCerts(path.join(tempDir, 'pki')), path.join(tempDir, 'tls'));
const tlsServer = new NbdServer({ lookup: (name) => (name === EXPORT_NAME ? exported : undefined), list: () => [exported], tls: { mode: 'require', certificatesDir: serverTlsDir } });
const oursTls = (await tlsServer.listen({ host: '127.0.0.1', port: 0 })) as { port: number };
const kitTlsPort = await freePort();
const kitTlsUri = `nbds://127.0.0.1:${kitTlsPort}/?tls-certificates=${clientTlsDir}`;
const kitTlsPid = await startNbdkit(['--tls=require', `--tls-certificates=${serverTlsDir}`, '-p', String(kitTlsPort), '-i', '127.0.0.1'], kitTlsUri);
const serverOf = { oursTcp: 'self', kitTcp: kitTcpPid, oursUnix: 'self', kitUnix: kitUnixPid, oursTls: 'self', kitTls: kitTlsPid, oursThreads: 'self' } as const;
// The HTTP data plane over the same device, as the service mounts it (data routes, node-listen).
const dataApp = new OpenAPIHono();
const generation = new WriteGenerations().ofFile(filePath);
dataRoutes(dataApp, { acquire: async () => ({ device, generation, release: () => {} }) });
dataApp.onError(answerError);
const http = await listenHttp({ host: '127.0.0.1', port: 0, bodyLimitBytes, fetch: (request) => dataApp.fetch(request), ...(ZERO_COPY ? {} : { socketSend: null }) });
const httpUrl = `http://127.0.0.1:${http.port}/v1/devices/disk.img/data`;

const uris = {
  oursTcp: `nbd://127.0.0.1:${ours.port}/${EXPORT_NAME}`,
  kitTcp: `nbd://127.0.0.1:${kitPort}/`,
  oursUnix: `nbd+unix:///${EXPORT_NAME}?socket=${ourSocket}`,
  kitUnix: `nbd+unix:///?socket=${kitSocket}`,
  oursTls: `nbds://127.0.0.1:${oursTls.port}/${EXPORT_NAME}?tls-certificates=${clientTlsDir}`,
  kitTls: kitTlsUri,
  oursThreads: `nbd://127.0.0.1:${oursThreaded.port}/${EXPORT_NAME}`,
  oursRw: `nbd://127.0.0.1:${ours.port}/rw`,
  kitRw: `nbd://127.0.0.1:${kitRwPort}/`,
};

console.log(`serve bench on ${adapter.name} ${adapter.version}: ${FILE_BYTES / 2 ** 20} MiB file in page cache, ${ROUNDS} rounds (+1 warm-up), fio ${FIO_SECONDS} s per run`);
const cases = (): Record<CopyCase, number[]> => ({ oursTcp: [], kitTcp: [], oursUnix: [], kitUnix: [], oursTls: [], kitTls: [], oursHttp: [], oursThreads: [] });
const copy = cases();
const copyCpu = cases();
const fio = { ours: [] as number[], kit: [] as number[] };
const fioCpu = { ours: [] as number[], kit: [] as number[] };
const fioWrite = { ours: [] as number[], kit: [] as number[] };
const fioWriteCpu = { ours: [] as number[], kit: [] as number[] };
const qd1LatencyUs = { ours: [] as number[], kit: [] as number[] };
const NONE: FioRun = { iops: 0, latencyUs: 0 };
try {
  for (let round = 0; round <= ROUNDS; round++) {
    const measured = round > 0;
    for (const key of COPY_CASES) {
      const rate = key === 'oursHttp' ? await httpRangeRate(httpUrl, measured ? copyCpu[key] : []) : await nbdcopyRate(uris[key], serverOf[key], measured ? copyCpu[key] : []);
      if (measured) copy[key].push(rate);
    }
    const fioOn = FIO_SECONDS > 0;
    const oursIops = fioOn ? (await fioRun(uris.oursTcp, 'self', measured ? fioCpu.ours : [], 'randread', 32, FILE_BYTES)).iops : 0;
    const kitIops = fioOn ? (await fioRun(uris.kitTcp, kitTcpPid, measured ? fioCpu.kit : [], 'randread', 32, FILE_BYTES)).iops : 0;
    const oursWrite = fioOn ? await fioRun(uris.oursRw, 'self', measured ? fioWriteCpu.ours : [], 'randwrite', 32, RW_BYTES) : NONE;
    const kitWrite = fioOn ? await fioRun(uris.kitRw, kitRwPid, measured ? fioWriteCpu.kit : [], 'randwrite', 32, RW_BYTES) : NONE;
    const oursQd1 = fioOn ? await fioRun(uris.oursTcp, 'self', [], 'randread', 1, FILE_BYTES) : NONE;
    const kitQd1 = fioOn ? await fioRun(uris.kitTcp, kitTcpPid, [], 'randread', 1, FILE_BYTES) : NONE;
    if (measured) {
      fio.ours.push(oursIops);
      fio.kit.push(kitIops);
      fioWrite.ours.push(oursWrite.iops);
      fioWrite.kit.push(kitWrite.iops);
      qd1LatencyUs.ours.push(oursQd1.latencyUs);
      qd1LatencyUs.kit.push(kitQd1.latencyUs);
    }
    console.log(`round ${round}${measured ? '' : ' (warm-up)'}: nbdcopy MiB/s tcp ours ${(copy.oursTcp.at(-1) ?? 0) / 2 ** 20 | 0} nbdkit ${(copy.kitTcp.at(-1) ?? 0) / 2 ** 20 | 0}, unix ours ${(copy.oursUnix.at(-1) ?? 0) / 2 ** 20 | 0} nbdkit ${(copy.kitUnix.at(-1) ?? 0) / 2 ** 20 | 0}, tls ours ${(copy.oursTls.at(-1) ?? 0) / 2 ** 20 | 0} nbdkit ${(copy.kitTls.at(-1) ?? 0) / 2 ** 20 | 0}, http ours ${(copy.oursHttp.at(-1) ?? 0) / 2 ** 20 | 0}, threads ours ${(copy.oursThreads.at(-1) ?? 0) / 2 ** 20 | 0}; fio read IOPS ours ${oursIops | 0} nbdkit ${kitIops | 0}, write IOPS ours ${oursWrite.iops | 0} nbdkit ${kitWrite.iops | 0}, qd1 read us ours ${oursQd1.latencyUs.toFixed(0)} nbdkit ${kitQd1.latencyUs.toFixed(0)}`);
  }
} finally {
  stopChildren();
  await http.close();
  await tlsServer.close();
  await threadedServer.close();
  await server.close();
  await device.close();
  await rwDevice.close();
  fs.rmSync(tempDir, { recursive: true, force: true });
}

const mib = (rate: number) => `${(rate / 2 ** 20).toFixed(0)} MiB/s`;
const perGiB = (cpu: number[]) => `${((median(cpu) / FILE_BYTES) * 2 ** 30).toFixed(2)} CPU s/GiB`;
// Only cases that ran (BLOCKCORE_BENCH_COPY, BLOCKCORE_BENCH_FIO_SECONDS=0 skip some) get lines; a
// run with zero copy off says so in its ratio labels, so it is never read as the normal result.
const variant = ZERO_COPY ? '' : ', zero copy off';
if (copy.oursTcp.length > 0 && copy.kitTcp.length > 0) {
  console.log(`nbdcopy tcp   median ours ${mib(median(copy.oursTcp))} (${perGiB(copyCpu.oursTcp)}), nbdkit ${mib(median(copy.kitTcp))} (${perGiB(copyCpu.kitTcp)})`);
  console.log(ratioLine(`nbdcopy-tcp (${adapter.name}${variant})`, median(copy.oursTcp), median(copy.kitTcp)));
}
if (copy.oursUnix.length > 0 && copy.kitUnix.length > 0) {
  console.log(`nbdcopy unix  median ours ${mib(median(copy.oursUnix))} (${perGiB(copyCpu.oursUnix)}), nbdkit ${mib(median(copy.kitUnix))} (${perGiB(copyCpu.kitUnix)})`);
  console.log(ratioLine(`nbdcopy-unix (${adapter.name}${variant})`, median(copy.oursUnix), median(copy.kitUnix)));
}
if (copy.oursTls.length > 0 && copy.kitTls.length > 0) {
  console.log(`nbdcopy tls   median ours ${mib(median(copy.oursTls))} (${perGiB(copyCpu.oursTls)}), nbdkit ${mib(median(copy.kitTls))} (${perGiB(copyCpu.kitTls)})`);
  console.log(ratioLine(`nbdcopy-tls (${adapter.name}${variant})`, median(copy.oursTls), median(copy.kitTls)));
}
if (copy.oursTls.length > 0 && copy.oursTcp.length > 0) {
  console.log(ratioLine(`nbdcopy tls-on/tls-off ours (${adapter.name}${variant})`, median(copy.oursTls), median(copy.oursTcp)));
}
if (copy.oursHttp.length > 0 && copy.oursTcp.length > 0) {
  console.log(`http ranges   median ours ${mib(median(copy.oursHttp))} (${perGiB(copyCpu.oursHttp)}), our NBD export over TCP ${mib(median(copy.oursTcp))}`);
  console.log(ratioLine(`http-range-reads/nbd-export-tcp (${adapter.name}${variant})`, median(copy.oursHttp), median(copy.oursTcp)));
}
if (FIO_SECONDS > 0) {
  console.log(`fio randread  median ours ${median(fio.ours).toFixed(0)} IOPS (${(median(fioCpu.ours) * 1000).toFixed(1)} CPU ms/1000 reads), nbdkit ${median(fio.kit).toFixed(0)} IOPS (${(median(fioCpu.kit) * 1000).toFixed(1)} CPU ms/1000 reads)`);
  console.log(ratioLine(`fio-randread-4k-qd32 (${adapter.name}${variant})`, median(fio.ours), median(fio.kit)));
  console.log(`fio randwrite median ours ${median(fioWrite.ours).toFixed(0)} IOPS (${(median(fioWriteCpu.ours) * 1000).toFixed(1)} CPU ms/1000 writes), nbdkit ${median(fioWrite.kit).toFixed(0)} IOPS (${(median(fioWriteCpu.kit) * 1000).toFixed(1)} CPU ms/1000 writes)`);
  console.log(ratioLine(`fio-randwrite-4k-qd32 (${adapter.name}${variant})`, median(fioWrite.ours), median(fioWrite.kit)));
  console.log(`fio qd1 read  median latency ours ${median(qd1LatencyUs.ours).toFixed(1)} us, nbdkit ${median(qd1LatencyUs.kit).toFixed(1)} us`);
  // A latency: the peer's over ours, so above 1 is still ours better.
  console.log(ratioLine(`fio-randread-4k-qd1-latency nbdkit/ours (${adapter.name}${variant})`, median(qd1LatencyUs.kit), median(qd1LatencyUs.ours)));
}
if (copy.oursThreads.length > 0 && copy.kitTcp.length > 0) {
  console.log(`nbdcopy tcp   median ours with ${NBD_THREADS} NBD threads ${mib(median(copy.oursThreads))} (${perGiB(copyCpu.oursThreads)}), nbdkit ${mib(median(copy.kitTcp))}`);
  console.log(ratioLine(`nbdcopy-tcp-threads (${adapter.name}${variant})`, median(copy.oursThreads), median(copy.kitTcp)));
}
