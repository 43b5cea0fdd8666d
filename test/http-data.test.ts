/**
 * The HTTP data plane of the service (server/http/data.ts): GET with Range, HEAD, PUT with
 * Content-Range, entity tags with If-Match / If-None-Match, against a service in this process on
 * free ports. Clients: fetch, curl (a real one), NBD (writes there change the tag too), and
 * HttpDevice itself as the source of a clone of a clone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpDevice } from '../runtime/devices/http-device.ts';
import { Prng } from '../runtime/prng.ts';
import { attachNbd } from './support/nbd-attach.ts';
import { callApi, startTestServer, until, writeImage, type TestServer } from './support/blockcore-server.ts';
import { mustRun, requireTools, runTool } from './support/tools.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 256 * KiB;

const test = suite('http data plane');
let server: TestServer;
let image: Uint8Array;

test.before.each(async () => {
  server = await startTestServer();
  image = writeImage(server.dataDir, 'disk.img', SIZE, 7);
});
test.after.each(async () => {
  await server.dispose();
});

const dataPath = (ref: string) => `/v1/devices/${ref}/data`;
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

async function get(ref: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; bytes: Uint8Array }> {
  const response = await fetch(`${server.url}${dataPath(ref)}`, { headers });
  return { status: response.status, headers: response.headers, bytes: new Uint8Array(await response.arrayBuffer()) };
}

function put(ref: string, offsetBytes: number, data: Uint8Array, headers: Record<string, string> = {}) {
  return server.call('PUT', dataPath(ref), data, { 'content-range': `bytes ${offsetBytes}-${offsetBytes + data.length - 1}/*`, ...headers });
}

function refusal(answer: { status: number; json: { code?: string; field?: string } }, status: number, code: string, field: string): void {
  assert.is(answer.status, status, JSON.stringify(answer.json));
  assert.is(answer.json.code, code);
  assert.is(answer.json.field, field);
}

test('GET: the whole device, one range of each form, unaligned; HEAD says size and version', async () => {
  const whole = await get('disk.img');
  assert.is(whole.status, 200);
  assert.ok(same(whole.bytes, image));
  assert.is(whole.headers.get('accept-ranges'), 'bytes');
  const etag = whole.headers.get('etag');
  assert.match(etag ?? '', /^"[0-9a-f]+\.[0-9a-z]+\.[0-9a-z]+"$/);
  const cases: Array<[string, number, number]> = [
    ['bytes=0-99', 0, 100],
    ['bytes=1000-2999', 1000, 2000],
    ['bytes=-100', SIZE - 100, 100],
    [`bytes=${SIZE - 10}-`, SIZE - 10, 10],
    [`bytes=${SIZE - 5}-${SIZE + 100}`, SIZE - 5, 5],
    [`bytes=-${SIZE * 2}`, 0, SIZE],
  ];
  for (const [range, offsetBytes, lengthBytes] of cases) {
    const answer = await get('disk.img', { range });
    assert.is(answer.status, 206, range);
    assert.is(answer.headers.get('content-range'), `bytes ${offsetBytes}-${offsetBytes + lengthBytes - 1}/${SIZE}`, range);
    assert.ok(same(answer.bytes, image.subarray(offsetBytes, offsetBytes + lengthBytes)), range);
    assert.is(answer.headers.get('etag'), etag, range);
  }
  const head = await fetch(`${server.url}${dataPath('disk.img')}`, { method: 'HEAD' });
  assert.is(head.status, 200);
  assert.is(head.headers.get('content-length'), String(SIZE));
  assert.is(head.headers.get('etag'), etag);
  assert.is((await head.arrayBuffer()).byteLength, 0);
});

test('GET refusals: past the end is 416 with the size; malformed or several ranges 400 naming range; unknown devices 404', async () => {
  for (const range of [`bytes=${SIZE}-`, `bytes=${SIZE + 512}-${SIZE + 1023}`, 'bytes=-0']) {
    const answer = await server.call('GET', dataPath('disk.img'), undefined, { range });
    refusal(answer, 416, 'ENXIO', 'range');
    assert.is(answer.headers.get('content-range'), `bytes */${SIZE}`, range);
  }
  for (const range of ['bytes=0-1,4-5', 'bytes=9-3', 'bytes=-', 'bytes=1234567890123456-']) {
    refusal(await server.call('GET', dataPath('disk.img'), undefined, { range }), 400, 'EINVAL', 'range');
  }
  refusal(await server.call('GET', dataPath('nope.img')), 404, 'ENOENT', 'ref');
  refusal(await server.call('GET', dataPath('clone:nope')), 404, 'ENOENT', 'ref');
  refusal(await server.call('GET', dataPath('..%2Fescape')), 400, 'EINVAL', 'ref');
  refusal(await server.call('GET', dataPath('bogus:thing')), 400, 'EINVAL', 'ref');
  refusal(await server.call('GET', dataPath('disk.img'), undefined, { 'if-match': 'not-a-tag' }), 400, 'EINVAL', 'if-match');
});

test('PUT: whole blocks at Content-Range, durable on 204 with the new version; refusals name their field and change nothing', async () => {
  const before = (await get('disk.img')).headers.get('etag')!;
  const data = new Prng(3).fill(new Uint8Array(8 * KiB));
  const written = await put('disk.img', 64 * KiB, data);
  assert.is(written.status, 204, written.text);
  const after = written.headers.get('etag');
  assert.ok(after !== null && after !== before, 'a write makes a new version');
  image.set(data, 64 * KiB);
  assert.ok(same((await get('disk.img')).bytes, image));
  assert.ok(same(new Uint8Array(readFileSync(join(server.dataDir, 'disk.img'))), image), 'the file holds it');

  const block = new Uint8Array(512).fill(9);
  refusal(await server.call('PUT', dataPath('disk.img'), block, { 'content-range': 'bytes 100-611/*' }), 400, 'EINVAL', 'content-range');
  refusal(await server.call('PUT', dataPath('disk.img'), new Uint8Array(100), { 'content-range': 'bytes 0-99/*' }), 400, 'EINVAL', 'content-range');
  refusal(await server.call('PUT', dataPath('disk.img'), block, { 'content-range': 'bytes 0-1023/*' }), 400, 'EINVAL', 'body');
  refusal(await server.call('PUT', dataPath('disk.img'), block, { 'content-range': `bytes 0-511/${SIZE * 2}` }), 400, 'EINVAL', 'content-range');
  refusal(await server.call('PUT', dataPath('disk.img'), block, { 'content-range': `bytes ${SIZE}-${SIZE + 511}/*` }), 416, 'ENXIO', 'content-range');
  refusal(await server.call('PUT', dataPath('disk.img'), block, { 'content-range': 'bytes 0-511' }), 400, 'EINVAL', 'content-range');
  refusal(await server.call('PUT', dataPath('disk.img'), new Uint8Array(1000)), 400, 'EINVAL', 'body');
  refusal(await put('disk.img', 0, block, { 'if-match': before }), 412, 'ESTALE', 'if-match');
  refusal(await put('disk.img', 0, block, { 'if-none-match': '*' }), 412, 'ESTALE', 'if-none-match');
  assert.ok(same((await get('disk.img')).bytes, image), 'no refused PUT wrote');
  assert.is((await get('disk.img')).headers.get('etag'), after, 'nor changed the version');

  const matched = await put('disk.img', 0, block, { 'if-match': after });
  assert.is(matched.status, 204, matched.text);
  image.set(block, 0);
  assert.ok(same((await get('disk.img')).bytes, image));
});

test('conditional GET: If-None-Match of the current version is 304, If-Match of an old one 412', async () => {
  const etag = (await get('disk.img')).headers.get('etag')!;
  const unchanged = await get('disk.img', { 'if-none-match': etag });
  assert.is(unchanged.status, 304);
  assert.is(unchanged.bytes.length, 0);
  assert.is((await put('disk.img', 0, new Uint8Array(512))).status, 204);
  assert.is((await get('disk.img', { 'if-none-match': etag })).status, 200);
  refusal(await server.call('GET', dataPath('disk.img'), undefined, { 'if-match': etag }), 412, 'ESTALE', 'if-match');
  assert.is((await get('disk.img', { 'if-match': '*' })).status, 200);
});

test('concurrent PUTs: of two with the same If-Match exactly one writes; without it both land', async () => {
  for (let round = 0; round < 20; round++) {
    const etag = (await get('disk.img')).headers.get('etag')!;
    const a = new Uint8Array(4 * KiB).fill(1 + (round % 100));
    const b = new Uint8Array(4 * KiB).fill(101 + (round % 100));
    const answers = await Promise.all([put('disk.img', 0, a, { 'if-match': etag }), put('disk.img', 0, b, { 'if-match': etag })]);
    const statuses = answers.map((answer) => answer.status).sort();
    assert.equal(statuses, [204, 412], `round ${round}: ${answers.map((answer) => answer.text).join(' | ')}`);
    const winner = answers[0]!.status === 204 ? a : b;
    assert.ok(same((await get('disk.img', { range: 'bytes=0-4095' })).bytes, winner), `round ${round}: the device holds the PUT that was answered 204`);
  }
  const parts = Array.from({ length: 8 }, (_, i) => new Uint8Array(4 * KiB).fill(200 + i));
  const answers = await Promise.all(parts.map((part, i) => put('disk.img', 32 * KiB + i * 4 * KiB, part)));
  assert.ok(answers.every((answer) => answer.status === 204));
  const back = (await get('disk.img', { range: `bytes=${32 * KiB}-${64 * KiB - 1}` })).bytes;
  parts.forEach((part, i) => assert.ok(same(back.subarray(i * 4 * KiB, (i + 1) * 4 * KiB), part), `part ${i}`));
});

test('If-Range, other units, weak If-None-Match, If-Match *; a recreated device never keeps its tag', async () => {
  const etag = (await get('disk.img')).headers.get('etag')!;
  const ranged = await get('disk.img', { range: 'bytes=0-99', 'if-range': etag });
  assert.is(ranged.status, 206);
  const stale = await get('disk.img', { range: 'bytes=0-99', 'if-range': '"nope"' });
  assert.is(stale.status, 200, 'a stale If-Range gets the whole device');
  assert.is(stale.bytes.length, SIZE);
  assert.is((await get('disk.img', { range: 'items=0-1' })).status, 200, 'a unit other than bytes is ignored');
  assert.is((await get('disk.img', { 'if-none-match': `W/${etag}` })).status, 304, 'If-None-Match compares weakly');
  assert.is((await put('disk.img', 0, new Uint8Array(512), { 'if-match': '*' })).status, 204);
  const before = (await get('disk.img')).headers.get('etag')!;
  assert.is((await server.call('POST', '/v1/devices', { name: 'other.img', sizeBytes: SIZE })).status, 201);
  assert.is((await get('disk.img')).headers.get('etag'), before, 'a change elsewhere leaves the tag alone');
  assert.is((await server.call('POST', '/v1/exports', { name: 'e1', device: 'disk.img', readOnly: true })).status, 201);
  const exported = (await get('disk.img')).headers.get('etag')!;
  assert.is.not(exported, before, 'a new holder makes a new tag');
  assert.is((await server.call('DELETE', '/v1/exports/e1')).status, 204);
  assert.is((await server.call('DELETE', dataPath('disk.img').replace('/data', ''))).status, 204);
  assert.is((await server.call('POST', '/v1/devices', { name: 'disk.img', sizeBytes: SIZE })).status, 201);
  refusal(await put('disk.img', 0, new Uint8Array(512), { 'if-match': before }), 412, 'ESTALE', 'if-match');
  assert.is((await get('disk.img', { 'if-none-match': before })).status, 200, 'nor does it answer 304 to the old tag');
  assert.is((await get('disk.img', { 'if-none-match': exported })).status, 200);
});

test('a client that goes away mid-stream leaves nothing held; a PUT holds its device from before its body arrives', async () => {
  writeImage(server.dataDir, 'big.img', 40 * MiB, 3);
  const abort = new AbortController();
  const response = await fetch(`${server.url}${dataPath('big.img')}`, { signal: abort.signal });
  await response.body!.getReader().read();
  abort.abort();
  await until(async () => (await server.call('DELETE', '/v1/devices/big.img')).status === 204, 'the device to be free again', 10_000);

  // A PUT whose body comes slowly holds disk.img for writing meanwhile: a clone cannot take it.
  for (const [name, size] of [['src.img', SIZE], ['meta', 64 * KiB]] as const) {
    if (name === 'src.img') writeImage(server.dataDir, name, size, 4);
    else assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: size })).status, 201);
  }
  let sendRest!: () => void;
  const rest = new Promise<void>((resolve) => (sendRest = resolve));
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(new Uint8Array(2048).fill(7));
      await rest;
      controller.enqueue(new Uint8Array(2048).fill(7));
      controller.close();
    },
  });
  const putting = fetch(`${server.url}${dataPath('disk.img')}`, { method: 'PUT', body, headers: { 'content-range': 'bytes 0-4095/*' }, duplex: 'half' } as RequestInit);
  await until(() => server.running.service.listDevices().some((device) => device.name === 'disk.img' && device.usedBy.includes('http:data')), 'the PUT to hold disk.img', 10_000);
  const refused = await server.call('POST', '/v1/clones', { name: 'c1', table: `0 ${SIZE / 512} clone meta disk.img src.img 8` });
  refusal(refused, 409, 'EBUSY', 'table');
  sendRest();
  assert.is((await putting).status, 204);
  assert.ok(same((await get('disk.img', { range: 'bytes=0-4095' })).bytes, new Uint8Array(4096).fill(7)));
});

test('a long GET streams; a write during it cuts the transfer instead of mixing versions', async () => {
  const big = writeImage(server.dataDir, 'big.img', 40 * MiB, 11);
  const whole = await get('big.img');
  assert.is(whole.status, 200);
  assert.ok(same(whole.bytes, big), 'streamed whole');
  const response = await fetch(`${server.url}${dataPath('big.img')}`);
  assert.is(response.status, 200);
  const reader = response.body!.getReader();
  let gotBytes = (await reader.read()).value!.length;
  assert.is((await put('big.img', 0, new Uint8Array(512).fill(1))).status, 204);
  const cut = await (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return false;
        gotBytes += value.length;
      }
    } catch {
      return true;
    }
  })();
  assert.ok(cut || gotBytes < 40 * MiB, `the transfer was cut (${gotBytes} bytes came)`);
});

test('files in use: a clone destination is refused, its source readable but not writable; an exported file is shared with NBD and NBD writes change the version', async () => {
  writeImage(server.dataDir, 'src.img', SIZE, 5);
  for (const [name, size] of [['dst.img', SIZE], ['meta', 64 * KiB]] as const) assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: size })).status, 201);
  assert.is((await server.call('POST', '/v1/clones', { name: 'c1', table: `0 ${SIZE / 512} clone meta dst.img src.img 8 1 no_hydration` })).status, 201);
  refusal(await server.call('GET', dataPath('dst.img')), 409, 'EBUSY', 'ref');
  assert.is((await get('src.img', { range: 'bytes=0-511' })).status, 206);
  refusal(await put('src.img', 0, new Uint8Array(512)), 409, 'EBUSY', 'ref');

  assert.is((await server.call('POST', '/v1/exports', { name: 'e1', device: 'disk.img' })).status, 201);
  const etag = (await get('disk.img')).headers.get('etag')!;
  const nbd = await attachNbd(server.running.nbd as { host: string; port: number }, 'e1');
  try {
    await nbd.write(4096, new Uint8Array(512).fill(0x5a), true);
    refusal(await put('disk.img', 0, new Uint8Array(512), { 'if-match': etag }), 412, 'ESTALE', 'if-match');
    assert.ok(same((await get('disk.img', { range: 'bytes=4096-4607' })).bytes, new Uint8Array(512).fill(0x5a)), 'HTTP reads what NBD wrote');
    assert.is((await put('disk.img', 8192, new Uint8Array(512).fill(0xa5))).status, 204);
    assert.ok(same(await nbd.read(8192, 512), new Uint8Array(512).fill(0xa5)), 'NBD reads what HTTP wrote');
  } finally {
    await nbd.close();
  }
  assert.is((await server.call('POST', '/v1/exports', { name: 'ro', device: 'src.img', readOnly: true })).status, 201);
  refusal(await put('src.img', 0, new Uint8Array(512)), 409, 'EROFS', 'ref');
});

test('curl: ranged reads, HEAD and a PUT with Content-Range', async () => {
  requireTools(['curl']);
  const url = `${server.url}${dataPath('disk.img')}`;
  const out = join(server.root, 'piece');
  await mustRun('curl', ['-sS', '-f', '-r', '1000-5999', '-o', out, url]);
  assert.ok(same(new Uint8Array(readFileSync(out)), image.subarray(1000, 6000)));
  const head = await mustRun('curl', ['-sS', '-f', '-I', url]);
  assert.match(head, new RegExp(`content-length: ${SIZE}`, 'i'));
  const data = new Prng(9).fill(new Uint8Array(4096));
  writeFileSync(out, data);
  await mustRun('curl', ['-sS', '-f', '-X', 'PUT', '-H', 'content-range: bytes 4096-8191/*', '--data-binary', `@${out}`, url]);
  image.set(data, 4096);
  await mustRun('curl', ['-sS', '-f', '-o', out, url]);
  assert.ok(same(new Uint8Array(readFileSync(out)), image));
  const refused = await runTool('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-r', `${SIZE}-`, url]);
  assert.is(refused.stdout, '416');
});

test('HttpDevice reads the data plane; a clone of a clone over HTTP hydrates, and a write to the first clone stops the second', async () => {
  writeImage(server.dataDir, 'src.img', SIZE, 5);
  const source = new Uint8Array(readFileSync(join(server.dataDir, 'src.img')));
  for (const [name, size] of [['dst1.img', SIZE], ['meta1', 64 * KiB], ['dst2.img', SIZE], ['meta2', 64 * KiB]] as const) {
    assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: size })).status, 201);
  }
  assert.is((await server.call('POST', '/v1/clones', { name: 'c1', table: `0 ${SIZE / 512} clone meta1 dst1.img src.img 8 1 no_hydration` })).status, 201);
  const device = await HttpDevice.open(`${server.url}${dataPath('clone:c1')}`);
  try {
    assert.is(device.sizeBytes, SIZE);
    const back = new Uint8Array(SIZE);
    await device.read(0, back);
    assert.ok(same(back, source), 'HttpDevice reads clone:c1');
  } finally {
    await device.close();
  }
  const sourceUrl = `${server.url}${dataPath('clone:c1')}`;
  const created = await server.call('POST', '/v1/clones', { name: 'c2', table: `0 ${SIZE / 512} clone meta2 dst2.img ${sourceUrl} 8 1 no_hydration` });
  assert.is(created.status, 201, created.text);
  const fromC2 = await get('clone:c2');
  assert.ok(same(fromC2.bytes, source), 'the clone of a clone reads through both');
  assert.is((await server.call('POST', '/v1/clones/c2/message', { message: 'enable_hydration' })).status, 200);
  await until(async () => (await server.call('GET', '/v1/clones/c2')).json.hydratedRegions === SIZE / 4096, 'c2 to hydrate', 20_000);
  assert.ok(same(new Uint8Array(readFileSync(join(server.dataDir, 'dst2.img'))), source), 'c2 hydrated its destination from clone:c1 over HTTP');

  // A third clone from c1 over HTTP; c1 written before it hydrates: the source changed under it.
  for (const [name, size] of [['dst3.img', SIZE], ['meta3', 64 * KiB]] as const) assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: size })).status, 201);
  assert.is((await server.call('POST', '/v1/clones', { name: 'c3', table: `0 ${SIZE / 512} clone meta3 dst3.img ${sourceUrl} 8 1 no_hydration` })).status, 201);
  assert.is((await put('clone:c1', 0, new Uint8Array(512).fill(3))).status, 204);
  const read = await callApi(server.url, 'GET', dataPath('clone:c3'), undefined, { range: 'bytes=0-511' });
  assert.ok(read.status >= 500, `c3 refuses to read a source that changed (got ${read.status} ${read.text})`);
  assert.match(read.text, /changed/);
});

test('a service with a token wants it on the data plane too', async () => {
  await server.dispose();
  server = await startTestServer({ token: 'sekret-token-123' });
  image = writeImage(server.dataDir, 'disk.img', SIZE, 7);
  const bare = await callApi(server.url, 'GET', dataPath('disk.img'));
  assert.is(bare.status, 401);
  const withToken = await server.call('GET', dataPath('disk.img'), undefined, { range: 'bytes=0-9' });
  assert.is(withToken.status, 206);
});

test.run();
