/**
 * Seeded random requests against the API (BLOCKCORE_SEED=<n> replays a run): random methods, paths
 * built from the real routes with hostile segments, random JSON and non-JSON bodies, random headers.
 * Whatever a client sends, the answer is never a 5xx, errors are JSON {error, code}, and the
 * service keeps serving.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http from 'node:http';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { makeCloneDevices, startTestServer } from './support/blockcore-server.ts';

const REQUESTS = 800;
const seed = seedFromEnv();
const METHODS = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS'];
const SEGMENTS = ['c1', 'e1', 'src.img', 'dst.img', 'meta', 'nope', '..', '%2e%2e', '.', '%2F', 'a%2Fb', '%00', '%ff', '%', '%E2%82', '%F0%9F%98%80',
  'clone:c1', '.blockcore', '.blockcore%2Fstate.json', 'x'.repeat(300), '-', '_', 'a.b', '%20', '%0A', 'NaN', '0', '%7B%7D', 'con', 'disk.img'];
const ROUTES: Array<[string, string]> = [['GET', '/v1/health'], ['GET', '/v1/openapi.json'], ['GET', '/v1/devices'], ['POST', '/v1/devices'],
  ['DELETE', '/v1/devices/*'], ['DELETE', '/v1/devices/*/*'], ['GET', '/v1/clones'], ['POST', '/v1/clones'], ['GET', '/v1/clones/*'], ['DELETE', '/v1/clones/*'],
  ['POST', '/v1/clones/*/message'], ['POST', '/v1/clones/*/suspend'], ['POST', '/v1/clones/*/resume'], ['POST', '/v1/clones/*/finalize'], ['POST', '/v1/clones/*/*'],
  ['GET', '/v1/exports'], ['POST', '/v1/exports'], ['DELETE', '/v1/exports/*'], ['GET', '/v1/events'], ['GET', '/metrics'], ['GET', '/*'], ['GET', '/v1/*/*']];
const KEYS = ['name', 'sizeBytes', 'table', 'message', 'device', 'readOnly', 'description', '__proto__', 'constructor', '', 'x'];
const STRINGS = ['', 'c1', 'disk.img', '../x', '/etc/passwd', 'clone:c1', 'clone:', 'mirror:x', 'clone meta dst.img src.img 8', 'clone meta dst.img src.img 8 1 no_hydration',
  '0 2048 clone meta dst.img src.img 8', 'clone a b c 8', 'enable_hydration', 'disable_hydration', 'hydration_threshold 9999999999', 'hydration_batch_size 0',
  '\u0000', '😀', 'x'.repeat(5000), 'e1', 'new.img', 'dir/new.img', '.blockcore/x', 'http://127.0.0.1:1/x'];

function pick<T>(prng: Prng, items: readonly T[]): T {
  return items[prng.below(items.length)]!;
}

function randomValue(prng: Prng, depth = 0): unknown {
  switch (prng.below(depth > 2 ? 6 : 8)) {
    case 0: return pick(prng, STRINGS);
    case 1: return pick(prng, [0, -1, 1, 512, 4096, 1 << 20, 1.5, 2 ** 53, -(2 ** 63), 1e308, 2 ** 44, 2 ** 44 - 4096]);
    case 2: return prng.chance(0.5);
    case 3: return null;
    case 4: return pick(prng, STRINGS) + String(prng.below(1000));
    case 5: return String.fromCharCode(...Array.from({ length: prng.below(20) }, () => prng.below(0x3000)));
    case 6: return Array.from({ length: prng.below(4) }, () => randomValue(prng, depth + 1));
    default: return randomObject(prng, depth + 1);
  }
}

function randomObject(prng: Prng, depth = 0): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  for (let i = prng.below(4); i >= 0; i--) object[pick(prng, KEYS)] = randomValue(prng, depth);
  return object;
}

function randomBody(prng: Prng): Uint8Array | string | undefined {
  switch (prng.below(7)) {
    case 0: return undefined;
    case 1: return prng.fill(new Uint8Array(prng.below(200)));
    case 2: return JSON.stringify(randomObject(prng)).slice(0, prng.chance(0.2) ? prng.below(40) : undefined);
    case 3: return JSON.stringify(randomValue(prng));
    case 4: return prng.chance(0.1) ? 'x'.repeat(70_000) : '{"name":' + '['.repeat(prng.below(5000));
    default: return JSON.stringify(randomObject(prng));
  }
}

function randomRequest(prng: Prng): [string, string] {
  const [method, template] = pick(prng, ROUTES);
  let path = template.replace(/\*/g, () => pick(prng, SEGMENTS));
  if (prng.chance(0.1)) path += '/';
  if (prng.chance(0.15)) path += `?${pick(prng, ['since=0', 'since=-1', 'since=abc', 'x=1', 'since=99999999999999999999', 'since'])}`;
  return [prng.chance(0.75) ? method : pick(prng, METHODS), path];
}

interface Reply {
  status: number;
  contentType: string;
  body: string;
}

function send(port: number, method: string, path: string, body: Uint8Array | string | undefined, headers: Record<string, string>): Promise<Reply | null> {
  return new Promise((resolve) => {
    let request: http.ClientRequest;
    try {
      request = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (response) => {
        const contentType = String(response.headers['content-type'] ?? '');
        if (contentType.startsWith('text/event-stream')) {
          response.destroy();
          resolve({ status: response.statusCode!, contentType, body: '' });
          return;
        }
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode!, contentType, body: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', () => resolve(null));
      });
    } catch {
      resolve(null); // the client refused to send it (invalid characters): not a server question
      return;
    }
    request.on('error', () => resolve(null));
    request.end(body);
  });
}

test(`seeded random requests never get a 5xx (seed ${seed})`, async () => {
  const server = await startTestServer();
  try {
    await makeCloneDevices(server);
    await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 1 no_hydration' });
    await server.call('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' });
    const prng = new Prng(seed);
    const statuses = new Map<number, number>();
    let sent = 0;
    for (let i = 0; i < REQUESTS; i++) {
      const [method, path] = randomRequest(prng);
      const body = method === 'GET' || method === 'HEAD' ? undefined : randomBody(prng);
      const headers: Record<string, string> = {};
      if (prng.chance(0.3)) headers['content-type'] = pick(prng, ['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']);
      if (prng.chance(0.1)) headers.authorization = pick(prng, ['Bearer x', 'Basic eA==', '']);
      if (prng.chance(0.1)) headers['last-event-id'] = pick(prng, ['0', '-1', 'x', '99999999999999999999']);
      if (body !== undefined && prng.chance(0.8)) headers['content-length'] = String(typeof body === 'string' ? Buffer.byteLength(body) : body.length);
      const reply = await send(server.running.http.port, method, path, body, headers);
      if (reply === null) continue;
      sent++;
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
      const what = `#${i} ${method} ${path} ${typeof body === 'string' ? body.slice(0, 200) : body ? `<${body.length} bytes>` : ''} -> ${reply.status} ${reply.body.slice(0, 300)}`;
      assert.ok(reply.status < 500, what);
      if (reply.status >= 400 && method !== 'HEAD') {
        let error: { error?: unknown; code?: unknown } = {};
        try {
          error = JSON.parse(reply.body);
        } catch {
          assert.unreachable(`not JSON: ${what}`);
        }
        assert.type(error.error, 'string', what);
        assert.type(error.code, 'string', what);
      }
    }
    if (process.env.FUZZ_DEBUG) console.log(JSON.stringify([...statuses].sort()));
    assert.ok(sent > REQUESTS * 0.9, `${sent} of ${REQUESTS} requests sent`);
    assert.ok((statuses.get(400) ?? 0) > 50, `plenty of 400s: ${JSON.stringify([...statuses])}`);
    assert.is((await server.call('GET', '/v1/health')).status, 200, 'still serving');
  } finally {
    await server.dispose();
  }
});

test.run();
