/**
 * Map and unmap a remote device 100 times through the service (blktests rnbd/002 does this against
 * the kernel), then open and close sessions: afterwards this process has the file descriptors it
 * had before (sockets and device files alike; /proc/self/fd), neither side lists anything still
 * open or held, and the heap has not grown with the cycles.
 */
import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { until, useServicePair, writeImage } from './support/blockcore-server.ts';

const test = suite('transport: no leaks');
const services = useServicePair(test);

/** Our open file descriptors, listed by a child (Deno forbids reading /proc/<pid>/fd without --allow-all). */
const openFds = (): number => execFileSync('ls', [`/proc/${process.pid}/fd`], { encoding: 'utf8' }).split('\n').filter(Boolean).length;

/**
 * The HTTP client's keep-alive pool opens and closes connections on its own schedule, so the count
 * may differ by a few either way; a leak per cycle would be 100 (or 120 sockets for 20 sessions).
 */
const SLACK_FDS = 4;

async function settledFds(expected: number): Promise<number> {
  // Sockets close on the next turns of the event loop; give them a moment, then report.
  await until(() => openFds() <= expected + SLACK_FDS, `file descriptors back to ${expected} (now ${openFds()})`, 5000).catch(() => {});
  return openFds();
}

test('map, read and unmap 100 times; open and close a session 20 times', async () => {
  writeImage(services.a.dataDir, 'disk.img', 1 << 20, 9);
  const listen = (await services.a.call('GET', '/v1/transport/server')).json.listen as string[];
  const paths = listen.map((dst) => ({ dst }));
  const cycle = async (i: number) => {
    const mapped = await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'disk.img', access: i % 2 ? 'rw' : 'ro' });
    assert.is(mapped.status, 201, mapped.text);
    const device = services.b.running.service.engines.get('remote')!.deviceOf('r1', 'name');
    await device.read((i * 4096) % (1 << 20), new Uint8Array(4096));
    assert.is((await services.b.call('DELETE', '/v1/transport/devices/r1')).status, 204);
  };
  assert.is((await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths })).status, 201);
  // Warm up: kernels, buffer pools, the HTTP client's keep-alive connections (Deno's fetch opens a
  // second one a few calls in) and other things made once.
  for (let i = 0; i < 10; i++) await cycle(i);
  const fdsBefore = openFds();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < 100; i++) await cycle(i);
  await until(async () => (await services.a.call('GET', '/v1/transport/server')).json.sessions[0].devices.length === 0, 'A closed every device');
  const fdsAfter = await settledFds(fdsBefore);
  assert.ok(fdsAfter <= fdsBefore + SLACK_FDS, `no file descriptor left by 100 map/unmap cycles (${fdsAfter} open, ${fdsBefore} before)`);
  assert.equal(services.a.running.service.engines.get('remote')!.holds(), [], 'A holds no file');

  assert.is((await services.b.call('DELETE', '/v1/transport/sessions/s1')).status, 204);
  for (let i = 0; i < 20; i++) {
    assert.is((await services.b.call('POST', '/v1/transport/sessions', { name: `t${i}`, paths })).status, 201);
    assert.is((await services.b.call('DELETE', `/v1/transport/sessions/t${i}`)).status, 204);
  }
  await until(async () => (await services.a.call('GET', '/v1/transport/server')).json.sessions.every((s: { paths: unknown[] }) => s.paths.length === 0), 'A saw every path close');
  assert.ok(await settledFds(fdsBefore) <= fdsBefore + SLACK_FDS, `no socket left by 20 sessions (${openFds()} fds, ${fdsBefore} before)`);
  const grownBytes = process.memoryUsage().heapUsed - heapBefore;
  assert.ok(grownBytes < 64 * 1024 * 1024, `heap grew ${grownBytes} bytes over the cycles`);
});

test.run();
