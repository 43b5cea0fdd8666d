import nodeHttp from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpDevice, type HttpDeviceOptions } from '../runtime/devices/http-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng } from '../runtime/prng.ts';
import { deviceConformance, type DeviceFactory } from './conformance/device-suite.ts';
import { RangeServer } from './support/range-server.ts';
import { expectCode } from './support/expect-code.ts';

const SIZE_BYTES = 1 << 20;
const image = new Prng(99).fill(new Uint8Array(SIZE_BYTES));
const http = suite('http device');
const servers: RangeServer[] = [];

async function serve(options = {}, content = image): Promise<RangeServer> {
  const server = new RangeServer(content, options);
  servers.push(server);
  await server.start();
  return server;
}


http.after.each(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

const conformanceServers: RangeServer[] = [];
const stopConformanceServers = async () => {
  for (const server of conformanceServers.splice(0)) await server.stop();
};

/**
 * The conformance suite's read-side cases over a real HTTP server on 127.0.0.1: one server per
 * device, serving the suite's image (zeros after `initial`), stopped when the suite ends.
 */
function overRangeServer(options: HttpDeviceOptions): DeviceFactory {
  return async ({ sizeBytes, logicalBlockBytes, initial }) => {
    const content = new Uint8Array(sizeBytes);
    if (initial) content.set(initial);
    const server = new RangeServer(content, { etag: '"conformance"' });
    conformanceServers.push(server);
    await server.start();
    return HttpDevice.open(server.url, { ...options, logicalBlockBytes });
  };
}

deviceConformance('HttpDevice', overRangeServer({}), { readOnly: 'only', after: stopConformanceServers });
deviceConformance('HttpDevice, 16 KiB pieces, 3 in flight', overRangeServer({ pieceBytes: 16 << 10, maxParallel: 3 }), { readOnly: 'only', after: stopConformanceServers });

http('reads any aligned range, split into parallel pieces', async () => {
  const server = await serve();
  const device = await HttpDevice.open(server.url, { pieceBytes: 64 << 10, maxParallel: 3 });
  assert.is(device.sizeBytes, SIZE_BYTES);
  assert.is(device.canWrite, false);
  const prng = new Prng(5);
  for (let i = 0; i < 20; i++) {
    const offsetBytes = prng.below(SIZE_BYTES / 512) * 512;
    const lengthBytes = Math.min(SIZE_BYTES - offsetBytes, prng.range(1, 600) * 512);
    const target = new Uint8Array(lengthBytes);
    await device.read(offsetBytes, target);
    assert.ok(Buffer.from(target).equals(image.subarray(offsetBytes, offsetBytes + lengthBytes)), `read ${offsetBytes}+${lengthBytes}`);
  }
  await device.close();
});

http('a server without range support is refused with a clear error', async () => {
  const server = await serve({ noRanges: true });
  await expectCode(HttpDevice.open(server.url), 'ENOTSUP', /range requests/);
});

http('intermittent 503s and dropped connections are retried', async () => {
  const server = await serve({ failEvery: 3, dropEvery: 5 });
  const device = await HttpDevice.open(server.url, { pieceBytes: 32 << 10, retryBaseMs: 1 });
  const target = new Uint8Array(SIZE_BYTES);
  await device.read(0, target);
  assert.ok(Buffer.from(target).equals(image));
  assert.ok(device.counters.retries > 0, 'some requests were retried');
  await device.close();
});

http('a server that always fails gives up with EIO after the retries', async () => {
  const server = await serve({});
  const device = await HttpDevice.open(server.url, { maxRetries: 2, retryBaseMs: 1 });
  server.options.failEvery = 1;
  await expectCode(device.read(0, new Uint8Array(512)), 'EIO', /unreachable after 3 attempts/);
  await device.close();
});

http('a read that fails settles every piece first: nothing lands in the target after it rejected', async () => {
  // A server of our own: the open probe and every piece answer normally, the last piece only
  // after a pause, and the first piece of the read with 404 (not retried).
  const PIECE = 16 << 10;
  const server = nodeHttp.createServer((req, res) => {
    const match = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
    const first = match ? Number(match[1]) : 0;
    const last = match ? Number(match[2]) : SIZE_BYTES - 1;
    const answer = () => {
      res.writeHead(206, { 'content-range': `bytes ${first}-${last}/${SIZE_BYTES}`, 'content-length': last - first + 1 });
      res.end(image.subarray(first, last + 1));
    };
    if (req.headers['x-probe'] === undefined && first === 0 && last === PIECE - 1 && failing) {
      res.writeHead(404).end();
    } else if (first === 3 * PIECE) {
      setTimeout(answer, 150);
    } else {
      answer();
    }
  });
  let failing = false;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/disk`;
    const device = await HttpDevice.open(url, { pieceBytes: PIECE, maxRetries: 0, retryBaseMs: 1 });
    failing = true;
    const target = new Uint8Array(4 * PIECE);
    const error = await expectCode(device.read(0, target), 'EIO');
    assert.ok(error instanceof BlockError);
    const atRejection = target.slice();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(Buffer.from(target).equals(atRejection), 'no piece wrote into the target after the read rejected');
    await device.close();
  } finally {
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  }
});

http('a source whose size or version changes is refused, not mixed', async () => {
  const server = await serve({ etag: '"v1"' });
  const device = await HttpDevice.open(server.url);
  server.content = image.subarray(0, SIZE_BYTES / 2);
  await expectCode(device.read(0, new Uint8Array(512)), 'EIO', /source changed/);
  server.content = image;
  server.options.etag = '"v2"';
  await expectCode(device.read(0, new Uint8Array(512)), 'EIO', /source changed/);
  await device.close();
});

http('bad input: URL, scheme, unreachable host, writes, ranges', async () => {
  await expectCode(HttpDevice.open('not a url'), 'EINVAL');
  await expectCode(HttpDevice.open('ftp://127.0.0.1/x'), 'EINVAL', /http/);
  await expectCode(HttpDevice.open('http://127.0.0.1:1/x', { maxRetries: 1, retryBaseMs: 1 }), 'EIO', /unreachable/);
  const server = await serve();
  const device = await HttpDevice.open(server.url);
  await expectCode(device.write(0, new Uint8Array(512)), 'EROFS');
  await expectCode(device.discard(0, 512), 'EROFS');
  await expectCode(device.read(SIZE_BYTES - 512, new Uint8Array(1024)), 'ERANGE');
  await expectCode(device.read(1, new Uint8Array(512)), 'EINVAL', /unaligned/);
  await device.close();
  await expectCode(device.read(0, new Uint8Array(512)), 'EBADF');
});

http.run();
