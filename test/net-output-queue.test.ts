/**
 * OutputQueue's state machine (runtime/net/output-queue.ts) over a real socket pair: which state
 * each event leads to, and what a push does in each. Byte order and zero-copy sends are covered
 * by test/nbd-zero-copy.test.ts; here the client's reading is what moves the queue.
 */
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BufferPool } from '../runtime/net/buffer-pool.ts';
import { FileFrame } from '../runtime/net/file-frame.ts';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { OutputQueue } from '../runtime/net/output-queue.ts';
import { until } from './support/nbd-fixtures.ts';
import { socketPair } from './support/socket-pair.ts';
import { watchProcessFaults } from './support/process-faults.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** More than any loopback socket takes while its reader is paused (send and receive buffers are a few MiB). */
const BIG_BYTES = 32 * MiB;
const test = suite('OutputQueue states');

let tempDir = '';
const closers: Array<() => unknown> = [];

test.before.each(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-output-queue-'));
});
test.after.each(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

/** A connected pair, paused on the client side, counting the bytes the client got. */
async function pausedPair(): Promise<{ serverSide: net.Socket; client: net.Socket; received: () => number }> {
  const [serverSide, client] = await socketPair();
  let receivedBytes = 0;
  client.on('data', (chunk: Uint8Array) => (receivedBytes += chunk.length));
  client.pause();
  closers.push(() => {
    serverSide.destroy();
    client.destroy();
  });
  return { serverSide, client, received: () => receivedBytes };
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

test('idle -> scheduled on a push, back to idle once the check phase wrote it', async () => {
  const { serverSide, client, received } = await pausedPair();
  const output = new OutputQueue(serverSide, new BufferPool());
  assert.is(output.state, 'idle');
  output.push(new Uint8Array(100));
  assert.is(output.state, 'scheduled');
  output.push(new Uint8Array(100));
  assert.is(output.state, 'scheduled', 'a second push in the same turn schedules nothing more');
  await nextTurn();
  assert.is(output.state, 'idle');
  client.resume();
  await until(() => received() === 200, '200 bytes');
});

test('a push past the flush-now size writes at once; over the socket limit the queue is blocked until drain', async () => {
  const { serverSide, client, received } = await pausedPair();
  const output = new OutputQueue(serverSide, new BufferPool());
  let empties = 0;
  output.onEmpty = () => empties++;
  output.push(new Uint8Array(BIG_BYTES));
  assert.is(output.state, 'idle', 'written in the call, not scheduled');
  assert.is(empties, 1);
  output.push(new Uint8Array(10));
  assert.is(output.state, 'scheduled');
  await nextTurn();
  assert.is(output.state, 'blocked', 'the socket holds more than its limit unsent');
  output.push(new Uint8Array(10));
  assert.is(output.state, 'blocked', 'a push while blocked only queues');
  assert.ok(output.unsentBytes >= 20);
  client.resume();
  await until(() => output.state === 'idle' && received() === BIG_BYTES + 20, 'drained');
  assert.is(empties, 2);
});

test('a file frame read the ordinary way: reading, then idle; finish() while reading: finishing, then finished', async () => {
  const device = await FileDevice.open(path.join(tempDir, 'disk.img'), { create: { sizeBytes: MiB } });
  closers.push(() => device.close());
  await device.write(0, new Uint8Array(MiB).fill(7));
  const { serverSide, client, received } = await pausedPair();
  client.resume();
  const output = new OutputQueue(serverSide, new BufferPool(), { socketSend: null });
  const noError = (): Uint8Array => {
    throw new Error('no error reply expected');
  };
  output.push(new FileFrame(new Uint8Array(16), device.fileSpan(0, 256 * KiB)!, noError));
  output.flush();
  assert.is(output.state, 'reading', 'until the read settles (a microtask at the earliest)');
  await until(() => output.state === 'idle' && received() === 16 + 256 * KiB && serverSide.writableLength === 0, 'idle after the read, the socket empty');
  output.push(new FileFrame(new Uint8Array(16), device.fileSpan(0, 256 * KiB)!, noError));
  output.push(new Uint8Array(5));
  output.flush();
  assert.is(output.state, 'reading');
  let done = 0;
  output.finish(() => done++);
  assert.is(output.state, 'finishing');
  await until(() => output.state === 'finished', 'finished');
  assert.is(done, 1);
  await until(() => received() === 2 * (16 + 256 * KiB) + 5, 'every byte');
  const pool = new BufferPool();
  const late = pool.take(64 * KiB);
  output.push(late);
  assert.is(output.unsentBytes, serverSide.writableLength, 'a push after finished is not queued');
});

test('finish() while blocked writes past the limit, then finished; close() is final and finish() after it never calls back', async () => {
  const { serverSide, client, received } = await pausedPair();
  const output = new OutputQueue(serverSide, new BufferPool());
  output.push(new Uint8Array(BIG_BYTES));
  output.push(new Uint8Array(10));
  await nextTurn();
  assert.is(output.state, 'blocked');
  let done = 0;
  output.finish(() => done++);
  assert.is(output.state, 'finished');
  assert.is(done, 1);
  client.resume();
  await until(() => received() === BIG_BYTES + 10, 'every byte');

  const second = await pausedPair();
  const closing = new OutputQueue(second.serverSide, new BufferPool());
  closing.push(new Uint8Array(BIG_BYTES));
  closing.push(new Uint8Array(10));
  await nextTurn();
  closing.close();
  assert.is(closing.state, 'closed');
  closing.push(new Uint8Array(10));
  closing.flush();
  closing.finish(() => done++);
  assert.is(closing.state, 'closed');
  assert.is(done, 1, 'finish() on a closed queue does not call back');
});

test('a destroyed socket closes the queue at the next flush', async () => {
  const { serverSide } = await pausedPair();
  const output = new OutputQueue(serverSide, new BufferPool());
  output.push(new Uint8Array(10));
  serverSide.destroy();
  await nextTurn();
  assert.is(output.state, 'closed');
});

// Zero-copy variants only where the runtime has zero-copy sends (not Deno): registered, not passed empty.
const zeroCopyHere = (await loadAdapter()).socketSend !== null;
const ZERO_COPY_VARIANTS = zeroCopyHere ? [false, true] : [false];

for (const zeroCopy of ZERO_COPY_VARIANTS) {
  test(`an exception in a callback run from the event loop closes the queue and tells onBroken; nothing reaches the process (zero copy ${zeroCopy})`, async () => {
    const adapter = await loadAdapter();
    const watch = watchProcessFaults();
    closers.push(() => watch.dispose());
    const device = await FileDevice.open(path.join(tempDir, 'disk.img'), { create: { sizeBytes: MiB } });
    closers.push(() => device.close());
    const { serverSide, client } = await pausedPair();
    client.resume();
    const output = new OutputQueue(serverSide, new BufferPool(), { socketSend: zeroCopy ? adapter.socketSend : null });
    const broken: string[] = [];
    output.onBroken = (why) => broken.push(why);
    const span = device.fileSpan(0, 64 * KiB)!;
    // A device bug: the span's release throws (after giving the real span back).
    const throwing = { ...span, read: span.read, release: () => {
      span.release();
      throw new Error('release failed');
    } };
    output.push(new FileFrame(new Uint8Array(16), throwing, () => new Uint8Array(0)));
    // Zero copy: sent whole by the scheduled flush, released there. Without: released once read.
    await until(() => output.state === 'closed', 'the queue closed');
    assert.equal(broken.length, 1);
    assert.match(broken[0]!, /internal error: release failed/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(watch.faults, []);
  });
}

/** A connected pair whose client keeps every byte it gets. */
async function collectingPair(): Promise<{ serverSide: net.Socket; bytes: () => Buffer }> {
  const [serverSide, client] = await socketPair();
  const chunks: Buffer[] = [];
  client.on('data', (chunk: Buffer) => chunks.push(chunk));
  closers.push(() => {
    serverSide.destroy();
    client.destroy();
  });
  return { serverSide, bytes: () => Buffer.concat(chunks) };
}

for (const zeroCopyOn of ZERO_COPY_VARIANTS) {
  test(`a file frame's trailer follows its data, or goes with it when the span fails (${zeroCopyOn ? 'zero copy' : 'read and written'})`, async () => {
    const adapter = await loadAdapter();
    const device = await FileDevice.open(path.join(tempDir, 'disk.img'), { create: { sizeBytes: MiB } });
    closers.push(() => device.close());
    const data = new Uint8Array(MiB).map((_, i) => (i * 7) & 0xff);
    await device.write(0, data);
    const { serverSide, bytes } = await collectingPair();
    const output = new OutputQueue(serverSide, new BufferPool(), { socketSend: zeroCopyOn ? adapter.socketSend : null });
    const header = new Uint8Array(16).fill(0xaa);
    const trailer = new Uint8Array(9).fill(0xbb);
    const failedCalls: unknown[] = [];
    const failed = (error: unknown): Uint8Array => {
      failedCalls.push(error);
      return new Uint8Array(3).fill(0xee);
    };
    // Two good frames around plain bytes, the trailer after each one's data.
    output.push(new FileFrame(header, device.fileSpan(0, 200 * KiB)!, failed, trailer));
    output.push(new Uint8Array(4).fill(0xcc));
    output.push(new FileFrame(header, device.fileSpan(300 * KiB, 64 * KiB)!, failed, trailer));
    const expected = Buffer.concat([header, data.subarray(0, 200 * KiB), trailer, new Uint8Array(4).fill(0xcc), header, data.subarray(300 * KiB, 364 * KiB), trailer]);
    await until(() => bytes().length >= expected.length && output.state === 'idle', 'both frames sent');
    assert.ok(bytes().equals(expected), 'header, data, trailer, in order');
    assert.equal(failedCalls, []);
    if (!zeroCopyOn) {
      // Read the ordinary way, a span that fails sends the stand-in instead of header, data and trailer.
      const broken = { fd: -1, fileOffsetBytes: 0, lengthBytes: 64 * KiB, read: () => Promise.reject(new Error('unreadable')), release: () => {} };
      output.push(new FileFrame(header, broken, failed, trailer));
      await until(() => bytes().length === expected.length + 3 && output.state === 'idle', 'the stand-in sent');
      assert.ok(bytes().subarray(expected.length).equals(Buffer.alloc(3, 0xee)));
      assert.is(failedCalls.length, 1);
    } else {
      // Zero copy sends the header first: a span that then fails cuts the frame, which is told.
      const cuts: unknown[] = [];
      const brokenWhy: string[] = [];
      output.onBroken = (why) => brokenWhy.push(why);
      const broken = { fd: -1, fileOffsetBytes: 0, lengthBytes: 64 * KiB, read: () => Promise.reject(new Error('unreadable')), release: () => {} };
      output.push(new FileFrame(header, broken, failed, trailer, (error) => cuts.push(error)));
      await until(() => output.state === 'closed', 'the queue closed');
      assert.is(cuts.length, 1);
      assert.equal(failedCalls, [], 'no stand-in once the header went out');
      assert.match(brokenWhy[0]!, /cut short: unreadable/);
    }
  });
}

test.run();
