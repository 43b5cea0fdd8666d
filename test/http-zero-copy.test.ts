/**
 * Long data-plane reads sent from the device's file (server/http/send-file-body.ts): where the
 * runtime reaches the socket's fd (Node) they go with sendfile, and must still be byte-exact for
 * unaligned ranges, for a client too slow for the socket to take them (the parts written the
 * ordinary way in between), on a kept-alive connection and behind a pipelined request, and a
 * write during the transfer must still cut it. Elsewhere the same requests take the stream path.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenAPIHono } from '@hono/zod-openapi';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import type { SocketSend } from '../runtime/adapter/types.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { WriteGenerations } from '../server/data-plane/write-generation.ts';
import { BUFFERED_READ_BYTES_MAX, dataRoutes } from '../server/http/data.ts';
import { answerError } from '../server/http/errors.ts';
import { listenHttp, type Listening } from '../server/http/node-listen.ts';
import { bodyLimitBytes, isDataPut } from '../server/http/route.ts';

const MiB = 1024 * 1024;
const SIZE_BYTES = BUFFERED_READ_BYTES_MAX + 8 * MiB + 512;
const test = suite('http data plane: zero-copy sends');

interface Counts {
  sendFileCalls: number;
  socketFull: number;
}

let dir: string;
let image: Uint8Array;
let device: FileDevice;
let http: Listening;
const counts: Counts = { sendFileCalls: 0, socketFull: 0 };
let zeroCopyExpected = false;

/** The adapter's SocketSend, counting sendfile calls and the times the socket was full. */
function counting(send: SocketSend | null): SocketSend | null {
  if (send === null) return null;
  return {
    fdOf: (socket) => send.fdOf(socket),
    sendMore: (fd, bytes) => send.sendMore(fd, bytes),
    setSendBufferBytes: (fd, bytes) => send.setSendBufferBytes(fd, bytes),
    sendFile(socketFd, fileFd, offsetBytes, lengthBytes) {
      counts.sendFileCalls++;
      const movedBytes = send.sendFile(socketFd, fileFd, offsetBytes, lengthBytes);
      if (movedBytes <= 0) counts.socketFull++;
      return movedBytes;
    },
  };
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'blockcore-zero-copy-'));
  image = new Prng(77).fill(new Uint8Array(SIZE_BYTES));
  writeFileSync(join(dir, 'big.img'), image);
  device = await FileDevice.open(join(dir, 'big.img'));
  const app = new OpenAPIHono();
  const generation = new WriteGenerations().ofFile(join(dir, 'big.img'));
  dataRoutes(app, { acquire: async () => ({ device, generation, release: () => {} }) });
  app.onError(answerError);
  const adapter = await loadAdapter();
  // Node's node:http socket has a reachable fd; Bun's and Deno's do not (they take the stream path).
  zeroCopyExpected = adapter.name === 'node' && adapter.socketSend !== null;
  http = await listenHttp({ host: '127.0.0.1', port: 0, bodyLimitBytes, streamedBody: isDataPut, fetch: (request) => app.fetch(request), socketSend: counting(adapter.socketSend) });
});

test.after(async () => {
  await http.close();
  await device.close();
  rmSync(dir, { recursive: true, force: true });
});

test.before.each(() => {
  counts.sendFileCalls = 0;
  counts.socketFull = 0;
});

const url = () => `http://127.0.0.1:${http.port}/v1/devices/big.img/data`;

interface RawAnswer {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
}

/** Splits one HTTP/1.1 answer with Content-Length off the front of `bytes`; null while incomplete. */
function takeAnswer(bytes: Uint8Array): { answer: RawAnswer; rest: Uint8Array } | null {
  const headEnd = Buffer.from(bytes).indexOf('\r\n\r\n');
  if (headEnd < 0) return null;
  const [statusLine, ...lines] = Buffer.from(bytes.subarray(0, headEnd)).toString('latin1').split('\r\n');
  const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  const lengthBytes = Number(headers.get('content-length'));
  const start = headEnd + 4;
  if (bytes.length < start + lengthBytes) return null;
  return { answer: { status: Number(statusLine!.split(' ')[1]), headers, body: bytes.subarray(start, start + lengthBytes) }, rest: bytes.subarray(start + lengthBytes) };
}

/**
 * Sends `requests` (raw text, possibly several at once: pipelined) and reads `answers` answers,
 * pausing the socket for `pauseMs` after every `pauseEveryBytes` so the server finds it full.
 */
function rawExchange(requests: string, answers: number, pauseEveryBytes = Infinity, pauseMs = 0): Promise<RawAnswer[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(http.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let sinceBytes = 0;
    const got: RawAnswer[] = [];
    let pending: Uint8Array = new Uint8Array(0);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      sinceBytes += chunk.length;
      if (sinceBytes >= pauseEveryBytes) {
        sinceBytes = 0;
        socket.pause();
        setTimeout(() => socket.resume(), pauseMs);
      }
    });
    const settle = () => {
      pending = Buffer.concat([pending, ...chunks.splice(0)]);
      for (let taken = takeAnswer(pending); taken !== null; taken = takeAnswer(pending)) {
        got.push(taken.answer);
        pending = taken.rest;
      }
    };
    socket.on('data', () => {
      settle();
      if (got.length === answers) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`the connection closed after ${got.length} of ${answers} answers`)));
    socket.write(requests);
  });
}

const getText = (first: number, last: number, close = false) =>
  `GET /v1/devices/big.img/data HTTP/1.1\r\nhost: x\r\nrange: bytes=${first}-${last}\r\n${close ? 'connection: close\r\n' : ''}\r\n`;

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

test('long unaligned ranges are byte-exact, with sendfile where the fd is reachable', async () => {
  for (const [first, last] of [[0, SIZE_BYTES - 1], [12_345, 12_345 + BUFFERED_READ_BYTES_MAX + 3], [1, SIZE_BYTES - 2]]) {
    const response = await fetch(url(), { headers: { range: `bytes=${first}-${last}` } });
    assert.is(response.status, 206);
    assert.ok(same(new Uint8Array(await response.arrayBuffer()), image.subarray(first, last + 1)), `bytes ${first}-${last}`);
  }
  if (zeroCopyExpected) assert.ok(counts.sendFileCalls > 0, 'sendfile was used');
  else assert.is(counts.sendFileCalls, 0, 'no sendfile where the socket fd is out of reach');
});

test('a slow client: parts go the ordinary way while the socket is full, then sendfile again; a short answer follows on the same connection', async () => {
  const last = 3 + BUFFERED_READ_BYTES_MAX + 5 * MiB;
  const answers = await rawExchange(getText(3, last) + getText(5, 100), 2, 2 * MiB, 30);
  assert.is(answers[0]!.status, 206);
  assert.ok(same(answers[0]!.body, image.subarray(3, last + 1)), 'the long answer');
  assert.ok(same(answers[1]!.body, image.subarray(5, 101)), 'the pipelined short answer behind it');
  if (zeroCopyExpected) {
    assert.ok(counts.socketFull > 0, 'the socket was found full');
    assert.ok(counts.sendFileCalls > counts.socketFull, 'sendfile went on after a part');
  }
});

test('a pipelined long read behind another long read, to a slow client, waits its turn and is byte-exact', async () => {
  const lastA = BUFFERED_READ_BYTES_MAX + MiB;
  const answers = await rawExchange(getText(0, lastA) + getText(7, SIZE_BYTES - 1), 2, 4 * MiB, 10);
  assert.ok(same(answers[0]!.body, image.subarray(0, lastA + 1)), 'first');
  assert.ok(same(answers[1]!.body, image.subarray(7)), 'second');
});

test('a write during a long read cuts the transfer short of its length', async () => {
  let gotBytes = 0;
  const socket = net.connect(http.port, '127.0.0.1');
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.on('error', () => {});
  let wrote = false;
  socket.on('data', (chunk: Buffer) => {
    gotBytes += chunk.length;
    if (wrote) return;
    wrote = true;
    socket.pause();
    // The server is mid-transfer (the socket is full): a PUT to the device now must cut it.
    void fetch(url(), { method: 'PUT', body: new Uint8Array(512).fill(9), headers: { 'content-range': 'bytes 0-511/*' } }).then(async (answer) => {
      assert.is(answer.status, 204);
      socket.resume();
    });
  });
  socket.write(getText(0, SIZE_BYTES - 1, true));
  await closed;
  assert.ok(gotBytes < SIZE_BYTES, `the transfer was cut (${gotBytes} bytes of ${SIZE_BYTES} came, headers included)`);
  image.fill(9, 0, 512);
});

test.run();
