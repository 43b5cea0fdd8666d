/**
 * HTTP API under a load tool: requests per second and latency of our API server (startBlockcore,
 * the code path `blockcore serve` runs: Hono app behind server/http/node-listen.ts) vs a minimal
 * plain HTTP server on the same runtime answering the same JSON bytes, both loaded by `wrk`
 * (Debian package wrk) with fixed connections, keep-alive, for a fixed duration, interleaved
 * (ours, peer, ours, peer ...) after one warm-up round; medians compared.
 *   status        GET /v1/clones/c1: the clone status route (a clone with hydration disabled, so
 *                 every answer is computed live from the open clone)
 *   status+token  the same on a server started with an API token, every request carrying
 *                 `Authorization: Bearer <token>` (how the API runs off loopback); the peer checks
 *                 the header with the same constant-time comparison (server/token.ts)
 *   health        GET /v1/health (never needs the token)
 * Peers: on Node, node:http; on Bun and Deno, their native servers (Bun.serve, Deno.serve), and
 * node:http too, which is what our API listens with on every runtime. A peer answers the exact
 * bytes and content-type our server answered for that route (fetched once at start); status code,
 * header and body sizes and keep-alive of every server are probed and printed first.
 * All servers run in this process on 127.0.0.1 ports (only one is loaded at a time; the others are
 * idle); wrk is a child process, stopped by PID however the run ends. Also printed: this process's
 * CPU time per request (user + system, runtime threads included), which other load on the machine
 * disturbs less than requests per second do.
 * Ends with `ratio api <route> req/s (<runtime>[, vs node:http]): <ours/peer>` lines (above 1 = ours
 * faster).
 * Run: npm run bench -- api [--runtimes node]. Environment: BLOCKCORE_BENCH_API_SECONDS (per wrk
 * run, default 3), BLOCKCORE_BENCH_API_CONNECTIONS (default 32), BLOCKCORE_BENCH_API_THREADS (wrk
 * threads, default 1: the server gets the other core of a 2-core machine), BLOCKCORE_BENCH_ROUNDS
 * (default 5).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { startBlockcore, type Running } from '../server/main.ts';
import { tokenMatches } from '../server/token.ts';
import { median, ratioLine } from './stats.ts';

const SECONDS = Number(process.env.BLOCKCORE_BENCH_API_SECONDS ?? 3);
const CONNECTIONS = Number(process.env.BLOCKCORE_BENCH_API_CONNECTIONS ?? 32);
const THREADS = Number(process.env.BLOCKCORE_BENCH_API_THREADS ?? 1);
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 5);
const CLONE = 'c1';
const DEVICE_BYTES = 256 * 1024 * 1024;
const TOKEN = randomBytes(24).toString('hex');
const STATUS_PATH = `/v1/clones/${CLONE}`;
const HEALTH_PATH = '/v1/health';

const adapter = await loadAdapter();
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-api-'));
const children: ChildProcess[] = [];
const stopChildren = () => {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM');
};
// However the run ends, stop the load tool by PID; our servers live (and end) in this process.
process.on('exit', () => {
  stopChildren();
  fs.rmSync(tempDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

// ---- wrk: a Lua `done` hook prints the summary as one JSON line ----
const WRK_MARK = 'BLOCKCORE_WRK ';
const wrkScript = path.join(tempDir, 'report.lua');
fs.writeFileSync(
  wrkScript,
  `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('${WRK_MARK}{"requests":%d,"durationUs":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%.0f,"p90":%.0f,"p99":%.0f,"p999":%.0f,"max":%.0f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`,
);

interface WrkReport {
  requests: number;
  durationUs: number;
  bytes: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

function runWrk(url: string, headers: Record<string, string>): Promise<WrkReport> {
  const args = [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--timeout', '10s', '-s', wrkScript];
  for (const [key, value] of Object.entries(headers)) args.push('-H', `${key}: ${value}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      children.splice(children.indexOf(child), 1);
      const line = stdout.split('\n').find((text) => text.startsWith(WRK_MARK));
      if (code !== 0 || !line) {
        reject(new Error(`wrk ${args.join(' ')} exited ${code}: ${stderr}${stdout}`));
        return;
      }
      const report = JSON.parse(line.slice(WRK_MARK.length)) as WrkReport;
      // A non-2xx/3xx answer means a misconfigured run (a token not taken, a wrong path): stop.
      if (report.status > 0) reject(new Error(`wrk ${url}: ${report.status} of ${report.requests} answers were not 2xx/3xx`));
      else resolve(report);
    });
  });
}

// ---- our servers: one without a token, one with; each has a device and a clone ----
async function startOurs(name: string, token: string | null): Promise<Running> {
  const dataDir = path.join(tempDir, name);
  const running = await startBlockcore(
    { dataDir, http: { host: '127.0.0.1', port: 0 }, nbd: { host: '127.0.0.1', port: 0 }, token },
    { log: (line) => console.error(`blockcore (${name}): ${line}`) },
  );
  const base = `http://127.0.0.1:${running.http.port}`;
  const auth: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const call = async (method: string, route: string, body?: unknown) => {
    const response = await fetch(`${base}${route}`, { method, headers: { ...auth, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    if (response.status >= 300) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  };
  await call('POST', '/v1/devices', { name: 'dst.img', sizeBytes: DEVICE_BYTES });
  await call('POST', '/v1/devices', { name: 'meta', sizeBytes: 1024 * 1024 });
  // The source's content does not matter with hydration disabled: a sparse file of the same size.
  fs.writeFileSync(path.join(dataDir, 'src.img'), '');
  fs.truncateSync(path.join(dataDir, 'src.img'), DEVICE_BYTES);
  await call('POST', '/v1/clones', { name: CLONE, table: `clone meta dst.img src.img 8 1 no_hydration` });
  return running;
}

const open = await startOurs('open', null);
const authed = await startOurs('authed', TOKEN);

/** The exact body and content-type our server answers on a route. */
async function answerOf(port: number, route: string, headers: Record<string, string> = {}): Promise<{ body: Uint8Array; contentType: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${route}`, { headers });
  if (response.status !== 200) throw new Error(`GET ${route}: ${response.status}`);
  return { body: new Uint8Array(await response.arrayBuffer()), contentType: response.headers.get('content-type') ?? 'application/json' };
}
const answers = new Map([
  [STATUS_PATH, await answerOf(open.http.port, STATUS_PATH)],
  [HEALTH_PATH, await answerOf(open.http.port, HEALTH_PATH)],
]);

// ---- peers: minimal plain servers answering those bytes, the token checked like ours ----
interface Peer {
  port: number;
  close(): Promise<void>;
}

const authorized = (token: string | null, header: string | null | undefined) => {
  if (token === null) return true;
  const presented = /^Bearer +(\S+) *$/i.exec(header ?? '')?.[1];
  return presented !== undefined && tokenMatches(token, presented);
};
const DENIED = JSON.stringify({ error: 'wrong token', code: 'EACCES' });
const NOT_FOUND = JSON.stringify({ error: 'no route', code: 'ENOENT' });

async function nodeHttpPeer(token: string | null): Promise<Peer> {
  const server = http.createServer((req, res) => {
    const answer = answers.get(req.url ?? '');
    if (!answer) {
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(NOT_FOUND) }).end(NOT_FOUND);
    } else if (req.url !== HEALTH_PATH && !authorized(token, req.headers.authorization)) {
      res.writeHead(401, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(DENIED) }).end(DENIED);
    } else {
      res.writeHead(200, { 'content-type': answer.contentType, 'content-length': answer.body.length }).end(answer.body);
    }
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

function fetchPeerHandler(token: string | null): (request: Request) => Response {
  return (request) => {
    const route = new URL(request.url).pathname;
    const answer = answers.get(route);
    if (!answer) return new Response(NOT_FOUND, { status: 404, headers: { 'content-type': 'application/json' } });
    if (route !== HEALTH_PATH && !authorized(token, request.headers.get('authorization'))) {
      return new Response(DENIED, { status: 401, headers: { 'content-type': 'application/json' } });
    }
    return new Response(answer.body, { headers: { 'content-type': answer.contentType } });
  };
}

interface DenoServe {
  serve(options: { hostname: string; port: number; onListen?: () => void }, handler: (request: Request) => Response): { addr: { port: number }; shutdown(): Promise<void> };
}

/** Bun.serve or Deno.serve; null on Node (whose plain server is node:http). */
async function nativePeer(token: string | null): Promise<Peer | null> {
  if (adapter.name === 'bun') {
    const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: fetchPeerHandler(token) });
    return { port: server.port!, close: async () => void (await server.stop(true)) };
  }
  if (adapter.name === 'deno') {
    const deno = (globalThis as unknown as { Deno: DenoServe }).Deno;
    const server = deno.serve({ hostname: '127.0.0.1', port: 0, onListen: () => {} }, fetchPeerHandler(token));
    return { port: server.addr.port, close: () => server.shutdown() };
  }
  return null;
}

const nativeName = adapter.name === 'bun' ? 'Bun.serve' : adapter.name === 'deno' ? 'Deno.serve' : null;
const peers: Peer[] = [];
const keep = <T extends Peer | null>(peer: T): T => (peer && peers.push(peer), peer);
const nodePeerOpen = keep(await nodeHttpPeer(null));
const nodePeerAuthed = keep(await nodeHttpPeer(TOKEN));
const nativePeerOpen = keep(await nativePeer(null));
const nativePeerAuthed = keep(await nativePeer(TOKEN));

// ---- what is measured ----
type Contender = 'ours' | 'node:http' | 'native';
interface Target {
  port: number;
  headers: Record<string, string>;
}
interface Case {
  name: string;
  path: string;
  targets: Partial<Record<Contender, Target>>;
}
const bearer = { authorization: `Bearer ${TOKEN}` };
const withNative = (port: number | undefined, headers: Record<string, string>) => (port === undefined ? {} : { native: { port, headers } });
const cases: Case[] = [
  {
    name: 'status',
    path: STATUS_PATH,
    targets: { ours: { port: open.http.port, headers: {} }, 'node:http': { port: nodePeerOpen.port, headers: {} }, ...withNative(nativePeerOpen?.port, {}) },
  },
  {
    name: 'status+token',
    path: STATUS_PATH,
    targets: { ours: { port: authed.http.port, headers: bearer }, 'node:http': { port: nodePeerAuthed.port, headers: bearer }, ...withNative(nativePeerAuthed?.port, bearer) },
  },
  {
    name: 'health',
    path: HEALTH_PATH,
    targets: { ours: { port: open.http.port, headers: {} }, 'node:http': { port: nodePeerOpen.port, headers: {} }, ...withNative(nativePeerOpen?.port, {}) },
  },
];
const label = (contender: Contender) => (contender === 'native' ? nativeName! : contender);

/**
 * One raw HTTP/1.1 connection, two requests in turn: the status code, header and body sizes of the
 * second answer, and whether the connection stayed open for it (keep-alive).
 */
async function probe(port: number, route: string, headers: Record<string, string>): Promise<{ status: number; headBytes: number; bodyBytes: number; keptAlive: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let buffered = Buffer.alloc(0);
  let ended = false;
  let wake: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => ((buffered = Buffer.concat([buffered, chunk])), wake?.()));
  socket.on('close', () => ((ended = true), wake?.()));
  const more = () => new Promise<void>((resolve) => (wake = resolve));
  const request = `GET ${route} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n${Object.entries(headers).map(([key, value]) => `${key}: ${value}\r\n`).join('')}\r\n`;
  const one = async () => {
    socket.write(request);
    for (;;) {
      const headEnd = buffered.indexOf('\r\n\r\n');
      if (headEnd >= 0) {
        const head = buffered.subarray(0, headEnd).toString('latin1');
        const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
        const chunkedEnd = /\r\ntransfer-encoding: *chunked/i.test(head) ? buffered.indexOf('\r\n0\r\n\r\n', headEnd) : -1;
        const total = length !== undefined ? headEnd + 4 + Number(length) : chunkedEnd >= 0 ? chunkedEnd + 7 : -1;
        if (total >= 0 && buffered.length >= total) {
          buffered = buffered.subarray(total);
          return { status: Number(head.split(' ')[1]), headBytes: headEnd + 4, bodyBytes: total - headEnd - 4, close: /\r\nconnection: *close/i.test(head) };
        }
      }
      if (ended) throw new Error(`probe 127.0.0.1:${port}${route}: connection closed mid-answer`);
      await more();
    }
  };
  const first = await one();
  const second = first.close || ended ? null : await one().catch(() => null);
  socket.destroy();
  const last = second ?? first;
  return { status: last.status, headBytes: last.headBytes, bodyBytes: last.bodyBytes, keptAlive: second !== null };
}

console.log(
  `api bench on ${adapter.name} ${adapter.version}: wrk ${THREADS} thread(s), ${CONNECTIONS} connections (keep-alive), ${SECONDS} s per run, ` +
    `${ROUNDS} rounds (+1 warm-up), ${os.cpus().length} CPUs`,
);
for (const testCase of cases) {
  for (const [contender, target] of Object.entries(testCase.targets) as Array<[Contender, Target]>) {
    const answer = await probe(target.port, testCase.path, target.headers);
    console.log(`  ${testCase.name.padEnd(13)}${label(contender).padEnd(11)}${answer.status}, head ${answer.headBytes} B, body ${answer.bodyBytes} B on the wire, keep-alive ${answer.keptAlive ? 'yes' : 'NO'}`);
    if (answer.status !== 200 || !answer.keptAlive) throw new Error(`${label(contender)} ${testCase.name}: expected 200 over a kept-alive connection`);
  }
}

interface Run {
  rate: number;
  report: WrkReport;
  cpuUsPerRequest: number;
}
const results = new Map<string, Run[]>();
const key = (testCase: Case, contender: Contender) => `${testCase.name} ${contender}`;
const fmtRate = (rate: number) => `${(rate / 1000).toFixed(1)}k`;
try {
  for (let round = 0; round <= ROUNDS; round++) {
    const measured = round > 0;
    const parts: string[] = [];
    for (const testCase of cases) {
      const line: string[] = [];
      for (const [contender, target] of Object.entries(testCase.targets) as Array<[Contender, Target]>) {
        const cpuBefore = process.cpuUsage();
        const report = await runWrk(`http://127.0.0.1:${target.port}${testCase.path}`, target.headers);
        const cpu = process.cpuUsage(cpuBefore);
        const run = { rate: report.requests / (report.durationUs / 1e6), report, cpuUsPerRequest: (cpu.user + cpu.system) / report.requests };
        if (measured) results.set(key(testCase, contender), [...(results.get(key(testCase, contender)) ?? []), run]);
        line.push(`${label(contender)} ${fmtRate(run.rate)}`);
      }
      parts.push(`${testCase.name} ${line.join(' ')}`);
    }
    console.log(`round ${round}${measured ? '' : ' (warm-up)'} req/s: ${parts.join('; ')}`);
  }
} finally {
  stopChildren();
  for (const peer of peers) await peer.close();
  await authed.stop();
  await open.stop();
}

const ms = (us: number) => `${(us / 1000).toFixed(2)}`;
console.log(`medians over ${ROUNDS} rounds (latency ms p50/p90/p99/p99.9: medians of each run's percentiles)`);
for (const testCase of cases) {
  for (const contender of Object.keys(testCase.targets) as Contender[]) {
    const runs = results.get(key(testCase, contender))!;
    const of = (pick: (run: Run) => number) => median(runs.map(pick));
    const errors = runs.reduce((sum, run) => sum + run.report.connect + run.report.read + run.report.write + run.report.timeout, 0);
    console.log(
      `  ${testCase.name.padEnd(13)}${label(contender).padEnd(11)}${of((run) => run.rate).toFixed(0).padStart(7)} req/s, latency ` +
        `${ms(of((run) => run.report.p50))}/${ms(of((run) => run.report.p90))}/${ms(of((run) => run.report.p99))}/${ms(of((run) => run.report.p999))}, ` +
        `${of((run) => run.cpuUsPerRequest).toFixed(1)} CPU µs/request, ${(of((run) => run.report.bytes / run.report.requests)).toFixed(0)} B/answer` +
        (errors ? `, ${errors} socket errors/timeouts` : ''),
    );
  }
}
for (const testCase of cases) {
  const ours = median(results.get(key(testCase, 'ours'))!.map((run) => run.rate));
  const rateOf = (contender: Contender) => median(results.get(key(testCase, contender))!.map((run) => run.rate));
  if (testCase.targets.native) {
    console.log(ratioLine(`api ${testCase.name} req/s (${adapter.name})`, ours, rateOf('native')));
    console.log(ratioLine(`api ${testCase.name} req/s (${adapter.name}, vs node:http)`, ours, rateOf('node:http')));
  } else {
    console.log(ratioLine(`api ${testCase.name} req/s (${adapter.name})`, ours, rateOf('node:http')));
  }
}
