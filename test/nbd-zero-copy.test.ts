/**
 * Zero-copy read replies: FileSpan on FileDevice and CloneDevice, the OutputQueue sending file
 * frames with sendfile beside ordinary writes (byte order kept under a slow reader, spans always
 * released), and the NBD server over a real socket: big reads byte-exact with and without zero
 * copy, a client that vanishes with replies queued, and a span that cannot be read after part of
 * its reply went out (that one connection is closed, the others go on).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import { spanAlsoReleasing, type BlockDevice, type FileSpan } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import { BufferPool } from '../runtime/net/buffer-pool.ts';
import { NBD_CMD_READ } from '../server/nbd/constants.ts';
import { FileFrame } from '../runtime/net/file-frame.ts';
import { OutputQueue } from '../runtime/net/output-queue.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, until, type Served } from './support/nbd-fixtures.ts';
import { expectCode } from './support/expect-code.ts';
import { socketPair } from './support/socket-pair.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const adapter = await loadAdapter();

let tempDir = '';
let served: Served | undefined;
const devices: BlockDevice[] = [];

function setup(s: ReturnType<typeof suite>): void {
  s.before.each(() => {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-zero-copy-'));
  });
  s.after.each(async () => {
    await served?.stop();
    served = undefined;
    for (const device of devices.splice(0)) await device.close();
    fs.rmSync(tempDir, { recursive: true, force: true });
  });
}

async function fileWith(sizeBytes: number, seed: number): Promise<{ device: FileDevice; image: Uint8Array }> {
  const image = new Prng(seed).fill(new Uint8Array(sizeBytes));
  const device = await FileDevice.open(path.join(tempDir, `disk-${seed}.img`), { create: { sizeBytes } });
  await device.write(0, image);
  devices.push(device);
  return { device, image };
}

/** A synchronous call as a promise, so expectCode can check what it throws. */
function call(work: () => unknown): Promise<unknown> {
  return new Promise((resolve) => resolve(work()));
}

function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([promise.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
}

// ---- spans ----

const spans = suite('FileSpan');
setup(spans);

spans('the runtime adapter has zero-copy sends on Node and Bun (Deno hides socket fds)', () => {
  assert.is(adapter.socketSend !== null, adapter.name !== 'deno', `${adapter.name}: socketSend`);
});

spans('FileDevice: a span reads the range, keeps the device open until released, and is checked like a read', async () => {
  const { device, image } = await fileWith(MiB, 1);
  await expectCode(call(() => device.fileSpan(0, 2 * MiB)), 'ERANGE');
  await expectCode(call(() => device.fileSpan(100, 512)), 'EINVAL');
  assert.is(device.fileSpan(0, 0), null);
  const span = device.fileSpan(64 * KiB, 128 * KiB)!;
  assert.is(span.fileOffsetBytes, 64 * KiB);
  assert.is(span.lengthBytes, 128 * KiB);
  const part = new Uint8Array(4 * KiB);
  await span.read(8 * KiB, part);
  assert.equal(part, image.subarray(72 * KiB, 76 * KiB));
  const closing = device.close();
  assert.is(await settledWithin(closing, 50), false, 'close() waits for the span');
  await expectCode(call(() => device.fileSpan(0, 4096)), 'EBADF');
  const late = new Uint8Array(4 * KiB);
  await span.read(0, late); // the span still reads while the device waits to close
  assert.equal(late, image.subarray(64 * KiB, 68 * KiB));
  span.release();
  span.release(); // a second release is ignored
  assert.is(await settledWithin(closing, 2000), true, 'close() finishes once the span is released');
  devices.pop();
});

spans("FileDevice in 'async' mode gives no spans (a sendfile there could block the event loop)", async () => {
  const filePath = path.join(tempDir, 'async.img');
  const device = await FileDevice.open(filePath, { create: { sizeBytes: MiB }, io: 'async' });
  devices.push(device);
  assert.is(device.fileSpan(0, 64 * KiB), null);
});

spans('CloneDevice: no span until fully hydrated, then the destination span, holding the clone open', async () => {
  const regionBytes = 64 * KiB;
  const image = new Prng(7).fill(new Uint8Array(8 * regionBytes));
  const destination = await FileDevice.open(path.join(tempDir, 'dst.img'), { create: { sizeBytes: image.length } });
  const clone = await CloneDevice.open({
    metadata: new MemoryDevice({ sizeBytes: 64 * KiB }),
    destination,
    source: new MemoryDevice({ sizeBytes: image.length, initial: image, readOnly: true }),
    regionSectors: regionBytes / 512,
    features: ['no_hydration'],
  });
  assert.is(clone.fileSpan(0, regionBytes), null, 'unhydrated: the bytes are not in the destination');
  await clone.cache(0, image.length);
  // Fully hydrated, and once the completing commit has released the in-core bitmap, reads are
  // the destination's: then there is a span.
  let span: FileSpan | null = null;
  await until(() => (span = clone.fileSpan(regionBytes, 2 * regionBytes)) !== null, 'a span of the hydrated clone');
  span = span!;
  const back = new Uint8Array(2 * regionBytes);
  await span.read(0, back);
  assert.equal(back, image.subarray(regionBytes, 3 * regionBytes));
  const closing = clone.close();
  assert.is(await settledWithin(closing, 50), false, 'the clone waits for the span');
  span.release();
  assert.is(await settledWithin(closing, 5000), true);
  await destination.close();
});

// ---- the output queue over a real socket ----

const queue = suite('OutputQueue with file frames');
setup(queue);

const NO_ERROR_FRAME = (): Uint8Array => {
  throw new Error('no error reply expected');
};

/** Counts releases of the spans it hands out. */
function countingSpan(span: FileSpan, released: { count: number }): FileSpan {
  return spanAlsoReleasing(span, () => released.count++);
}

for (const zeroCopy of [true, false]) {
  queue(`a slow reader gets every byte in order: small frames, pooled frames and file frames mixed (zero copy ${zeroCopy})`, async () => {
    const { device, image } = await fileWith(8 * MiB, 3);
    const [serverSide, client] = await socketPair();
    const pool = new BufferPool();
    // Count what sendfile took, and how often the socket was full, so both paths are known to run.
    const sends = { zeroCopyBytes: 0, short: 0 };
    const real = adapter.socketSend;
    const counted = real && {
      ...real,
      sendFile(socketFd: number, fileFd: number, fileOffsetBytes: number, lengthBytes: number) {
        const movedBytes = real.sendFile(socketFd, fileFd, fileOffsetBytes, lengthBytes);
        sends.zeroCopyBytes += movedBytes;
        if (movedBytes < lengthBytes) sends.short++;
        return movedBytes;
      },
    };
    const output = new OutputQueue(serverSide, pool, { socketSend: zeroCopy ? counted : null, sendBufferBytes: 64 * KiB });
    if (zeroCopy) assert.is(output.zeroCopy, adapter.socketSend !== null);
    else assert.is(output.zeroCopy, false);
    const prng = new Prng(11);
    const expected: Uint8Array[] = [];
    const released = { count: 0 };
    let fileFrames = 0;
    // The client reads in small bites with pauses, so the socket fills and sends come back short.
    client.pause();
    const received: Uint8Array[] = [];
    let receivedBytes = 0;
    client.on('data', (chunk: Uint8Array) => {
      received.push(new Uint8Array(chunk));
      receivedBytes += chunk.length;
    });
    for (let i = 0; i < 200; i++) {
      const kind = prng.below(3);
      if (kind === 0) {
        const small = prng.fill(new Uint8Array(1 + prng.below(100)));
        output.push(small);
        expected.push(small);
      } else if (kind === 1) {
        const pooled = pool.take(1 + prng.below(200 * KiB));
        prng.fill(pooled);
        expected.push(new Uint8Array(pooled));
        output.push(pooled);
      } else {
        const offsetBytes = prng.below(64) * 64 * KiB;
        const lengthBytes = Math.min(8 * MiB - offsetBytes, (1 + prng.below(8)) * 64 * KiB);
        const header = prng.fill(new Uint8Array(16 + prng.below(2) * 4));
        expected.push(header, image.subarray(offsetBytes, offsetBytes + lengthBytes));
        output.push(new FileFrame(header, countingSpan(device.fileSpan(offsetBytes, lengthBytes)!, released), NO_ERROR_FRAME));
        fileFrames++;
      }
      if (i % 17 === 0) {
        client.resume();
        await new Promise((resolve) => setTimeout(resolve, 1));
        client.pause();
      }
    }
    const totalBytes = expected.reduce((sum, part) => sum + part.length, 0);
    client.resume();
    await until(() => receivedBytes >= totalBytes, `${totalBytes} bytes`, 20_000);
    assert.is(receivedBytes, totalBytes);
    assert.ok(Buffer.concat(received).equals(Buffer.concat(expected)), 'the stream holds every frame, in order');
    assert.is(released.count, fileFrames, 'every span was released');
    if (zeroCopy && real !== null) {
      assert.ok(sends.zeroCopyBytes > 0, 'some data went out with sendfile');
      assert.ok(sends.short > 0, 'the socket was full at times, and the rest went the ordinary way');
    } else {
      assert.is(sends.zeroCopyBytes, 0);
    }
    serverSide.destroy();
    client.destroy();
  });
}

queue('a span that cannot be read before any of it went out is answered with its error reply; later frames follow', async () => {
  const { device, image } = await fileWith(MiB, 12);
  const [serverSide, client] = await socketPair();
  const received: Uint8Array[] = [];
  client.on('data', (chunk: Uint8Array) => received.push(new Uint8Array(chunk)));
  const output = new OutputQueue(serverSide, new BufferPool(), { socketSend: null });
  const released = { count: 0 };
  const good = countingSpan(device.fileSpan(0, 64 * KiB)!, released);
  const bad: FileSpan = { ...good, read: () => Promise.reject(new Error('media error')), release: () => released.count++ };
  const errorReply = new TextEncoder().encode('<error reply>');
  output.push(new TextEncoder().encode('<before>'));
  output.push(new FileFrame(new TextEncoder().encode('<bad header>'), bad, (error) => {
    assert.match(String(error), /media error/);
    return errorReply;
  }));
  output.push(new FileFrame(new TextEncoder().encode('<good header>'), good, NO_ERROR_FRAME));
  output.push(new TextEncoder().encode('<after>'));
  const expected = Buffer.concat([
    new TextEncoder().encode('<before>'), errorReply, new TextEncoder().encode('<good header>'), image.subarray(0, 64 * KiB), new TextEncoder().encode('<after>'),
  ]);
  await until(() => received.reduce((sum, part) => sum + part.length, 0) >= expected.length, 'every byte');
  assert.ok(Buffer.concat(received).equals(expected));
  assert.is(released.count, 2);
  serverSide.destroy();
  client.destroy();
});

queue('once the socket is destroyed nothing more is sent on its fd, and queued spans are released', async () => {
  const { device } = await fileWith(8 * MiB, 13);
  const [serverSide, client] = await socketPair();
  client.pause(); // let replies pile up
  const calls = { afterDestroy: 0 };
  let destroyed = false;
  const real = adapter.socketSend;
  const watched = real && {
    ...real,
    sendMore(socketFd: number, bytes: Uint8Array) {
      if (destroyed) calls.afterDestroy++;
      return real.sendMore(socketFd, bytes);
    },
    sendFile(socketFd: number, fileFd: number, fileOffsetBytes: number, lengthBytes: number) {
      if (destroyed) calls.afterDestroy++;
      return real.sendFile(socketFd, fileFd, fileOffsetBytes, lengthBytes);
    },
  };
  const pool = new BufferPool();
  const output = new OutputQueue(serverSide, pool, { socketSend: watched, sendBufferBytes: 64 * KiB });
  const released = { count: 0 };
  for (let i = 0; i < 16; i++) {
    output.push(pool.take(100 * KiB));
    output.push(new FileFrame(new Uint8Array(16), countingSpan(device.fileSpan(0, 4 * MiB)!, released), NO_ERROR_FRAME));
  }
  output.flush();
  await new Promise((resolve) => setTimeout(resolve, 20));
  destroyed = true;
  serverSide.destroy();
  client.destroy();
  await new Promise((resolve) => setTimeout(resolve, 50));
  output.flush(); // as a late drain or write callback would
  assert.is(calls.afterDestroy, 0, 'no send or sendfile after destroy');
  assert.is(released.count, 16, 'every span released');
  assert.is(await settledWithin(device.close(), 2000), true);
  devices.pop();
});

queue('close() releases the spans of frames still queued', async () => {
  const { device } = await fileWith(4 * MiB, 4);
  const [serverSide, client] = await socketPair();
  client.pause();
  const pool = new BufferPool();
  const output = new OutputQueue(serverSide, pool, { socketSend: adapter.socketSend });
  const released = { count: 0 };
  for (let i = 0; i < 32; i++) output.push(new FileFrame(new Uint8Array(16), countingSpan(device.fileSpan(0, 4 * MiB)!, released), NO_ERROR_FRAME));
  output.flush();
  output.close();
  // A frame whose rest was being read is released when that read settles.
  await until(() => released.count === 32, 'every queued span released');
  output.push(new FileFrame(new Uint8Array(16), countingSpan(device.fileSpan(0, 64 * KiB)!, released), NO_ERROR_FRAME));
  assert.is(released.count, 33, 'a frame pushed after close is released at once');
  serverSide.destroy();
  client.destroy();
  assert.is(await settledWithin(device.close(), 2000), true);
  devices.pop();
});

// ---- through the NBD server ----

const server = suite('NBD reads from files, zero copy');
setup(server);

server('big reads at depth are byte-exact with zero copy on and off, over TCP and a Unix socket', async () => {
  const { device, image } = await fileWith(16 * MiB, 5);
  for (const zeroCopy of [true, false]) {
    served = await serve([{ name: 'disk', device, readOnly: true }], { zeroCopy });
    for (const address of [{ host: '127.0.0.1', port: served.tcp.port }, { path: served.unix.path }]) {
      const nbd = await RawNbd.connect(address);
      await nbd.go('disk');
      const prng = new Prng(9);
      const asked = new Map<number, [number, number]>();
      for (let i = 0; i < 64; i++) {
        const offsetBytes = prng.below(16 * 16) * 64 * KiB;
        const lengthBytes = Math.min(16 * MiB - offsetBytes, (1 + prng.below(16)) * 64 * KiB);
        asked.set(nbd.request(NBD_CMD_READ, offsetBytes, lengthBytes), [offsetBytes, lengthBytes]);
      }
      for (let i = 0; i < 64; i++) {
        const reply = await nbd.reply(20_000);
        const [offsetBytes, lengthBytes] = asked.get(reply.handle)!;
        assert.is(reply.error, 0);
        assert.ok(Buffer.from(reply.data!).equals(Buffer.from(image.subarray(offsetBytes, offsetBytes + lengthBytes))), `read ${offsetBytes}+${lengthBytes}`);
      }
      nbd.close();
    }
    await served.stop();
    served = undefined;
  }
});

server('a client that vanishes with big replies queued leaves nothing held: the device closes', async () => {
  const { device } = await fileWith(32 * MiB, 6);
  served = await serve([{ name: 'disk', device, readOnly: true }]);
  const nbd = await RawNbd.connect({ path: served.unix.path });
  await nbd.go('disk');
  nbd.socket.pause(); // never read a reply
  for (let i = 0; i < 64; i++) nbd.request(NBD_CMD_READ, (i % 32) * MiB, MiB);
  await new Promise((resolve) => setTimeout(resolve, 100));
  nbd.socket.destroy();
  await until(() => served!.server.connections().length === 0, 'the connection to close');
  await served.stop();
  served = undefined;
  assert.is(await settledWithin(device.close(), 5000), true, 'every span was released');
  devices.pop();
});

server('a span that cannot be read after part of its reply went out closes that connection only', async () => {
  const { device: good, image } = await fileWith(MiB, 8);
  // A device whose spans claim more bytes than its 64 KiB file holds: sendfile stops at the end of
  // the file, the rest cannot be read, and the reply cannot be finished.
  const shortPath = path.join(tempDir, 'short.img');
  fs.writeFileSync(shortPath, new Uint8Array(64 * KiB));
  const shortFile = await FileDevice.open(shortPath, { readOnly: true });
  devices.push(shortFile);
  const lying = new MemoryDevice({ sizeBytes: MiB }) as MemoryDevice & { fileSpan?: BlockDevice['fileSpan'] };
  lying.fileSpan = (offsetBytes, lengthBytes) => {
    const inner = shortFile.fileSpan(0, 64 * KiB)!;
    return { fd: inner.fd, fileOffsetBytes: offsetBytes, lengthBytes, read: (at, target) => inner.read(at, target), release: () => inner.release() };
  };
  // Data, not zeros: a read of zeros would be answered with a hole chunk and no span at all.
  await lying.write(0, new Uint8Array(MiB).fill(1));
  devices.push(lying);
  served = await serve([{ name: 'lying', device: lying, readOnly: true }, { name: 'good', device: good, readOnly: true }]);
  const bystander = await RawNbd.connect({ host: '127.0.0.1', port: served.tcp.port });
  await bystander.go('good');
  const victim = await RawNbd.connect({ host: '127.0.0.1', port: served.tcp.port });
  await victim.go('lying');
  victim.request(NBD_CMD_READ, 0, 512 * KiB);
  if (adapter.socketSend !== null) {
    assert.ok(await victim.waitClosed(5000), 'the connection with the broken reply is closed');
    await until(() => served!.events.some((event) => event.type === 'protocol-error' && /cut short/.test(event.message)), 'the protocol-error event');
  } else {
    // No zero copy here (Deno): the read goes through device.read and succeeds.
    assert.is((await victim.reply()).error, 0);
    victim.close();
  }
  bystander.request(NBD_CMD_READ, 0, 256 * KiB);
  const reply = await bystander.reply();
  assert.is(reply.error, 0);
  assert.ok(Buffer.from(reply.data!).equals(Buffer.from(image.subarray(0, 256 * KiB))));
  bystander.close();
});

spans.run();
queue.run();
server.run();
