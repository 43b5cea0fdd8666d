/**
 * The log client (runtime/ulog/ulog-client.ts) against the real log server, over the Unix socket
 * and in process: marks and clears batched at flush (groups of 32, clears first), replies matched
 * by seq, a lost reply resent after the timeout with a new seq, -EAGAIN resent, and the server
 * restarted mid-I/O: -ESRCH / the link going down -> CTR and RESUME again every retry interval,
 * then the waiting requests; a disk log comes back with what FLUSH made durable.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LogServer } from '../runtime/dirty-log/log-server.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { UlogClient } from '../runtime/ulog/ulog-client.ts';
import { ULOG_ERRNO } from '../runtime/ulog/ulog-errno.ts';
import { ULOG, ulogTypeName } from '../runtime/ulog/ulog-frame.ts';
import type { UlogHandler, UlogReply, UlogRequest } from '../runtime/ulog/ulog-handler.ts';
import { localLink, socketLink } from '../runtime/ulog/ulog-link.ts';
import { UlogServer } from '../server/ulog/ulog-server.ts';

const test = suite('ulog client');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-ulog-client-'));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The real server, with a record of the request types it was asked and faults a test arms. */
class Recorded implements UlogHandler {
  readonly seen: string[] = [];
  dropNext = 0;
  eagainNext = 0;
  constructor(readonly server: LogServer) {}
  async handle(request: UlogRequest): Promise<UlogReply> {
    this.seen.push(`${ulogTypeName(request.header.type)}:${request.data.length / 8}`);
    if (this.eagainNext > 0) {
      this.eagainNext -= 1;
      return { error: -ULOG_ERRNO.EAGAIN };
    }
    const reply = await this.server.handle(request);
    if (this.dropNext > 0) {
      this.dropNext -= 1;
      return new Promise(() => {}); // the reply never comes
    }
    return reply;
  }
}

async function listening(socketPath: string, handler: UlogHandler): Promise<UlogServer> {
  const server = new UlogServer({ handler });
  await server.listen({ path: socketPath });
  return server;
}

const openFile = async (name: string) => FileDevice.open(path.join(dir, name));

test('marks and clears wait for flush and go in groups of 32, clears first; the answers are the server\'s', async () => {
  const logs = new LogServer();
  const recorded = new Recorded(logs);
  const socketPath = path.join(dir, 'a.sock');
  const server = await listening(socketPath, recorded);
  const client = await UlogClient.open({ link: socketLink({ path: socketPath }), uuid: 'LVM-batch', logArgs: 'core 8', targetSectors: 8 * 1000 });
  try {
    assert.equal([client.regionSectors, client.regionCount], [8, 1000]);
    await client.resume();
    for (let region = 0; region < 70; region++) client.mark(region);
    assert.is(client.queued, 70);
    assert.ok(await client.isClean(5), 'nothing sent before flush');
    recorded.seen.length = 0;
    await client.flush();
    assert.equal(recorded.seen, ['MARK_REGION:32', 'MARK_REGION:32', 'MARK_REGION:6', 'FLUSH:0']);
    assert.not.ok(await client.isClean(69));
    client.clear(69);
    client.mark(900);
    recorded.seen.length = 0;
    await client.flush();
    assert.equal(recorded.seen, ['CLEAR_REGION:1', 'MARK_REGION:1', 'FLUSH:0']);
    assert.ok(await client.isClean(69));
    assert.is(await client.resyncWork(), 0);
    await client.setRegionSync(0, true);
    assert.is(await client.syncCount(), 1);
    assert.ok(await client.inSync(0));
    assert.is(await client.statusInfo(), '1 core');
    assert.is(client.statusTable(), 'userspace 3 LVM-batch core 8 ');
    await client.destroy();
    assert.equal(logs.list(), []);
  } finally {
    client.shut();
    await server.close();
    await logs.close();
  }
});

test('integrated_flush: the marks ride on FLUSH', async () => {
  const logs = new LogServer();
  const recorded = new Recorded(logs);
  const client = await UlogClient.open({ link: localLink(recorded), uuid: 'LVM-int', logArgs: 'core 8', targetSectors: 800, integratedFlush: true });
  try {
    await client.resume();
    for (const region of [1, 2, 3]) client.mark(region);
    recorded.seen.length = 0;
    await client.flush();
    assert.equal(recorded.seen, ['FLUSH:3']);
    assert.not.ok(await client.isClean(2));
    assert.is(client.statusTable(), 'userspace 4 LVM-int integrated_flush core 8 ');
  } finally {
    await client.destroy();
    await logs.close();
  }
});

test('a reply that never comes: the request is sent again with a new seq after the timeout; -EAGAIN: sent again at once', async () => {
  const logs = new LogServer();
  const recorded = new Recorded(logs);
  const lines: string[] = [];
  const client = await UlogClient.open({ link: localLink(recorded), uuid: 'LVM-retry', logArgs: 'core 8', targetSectors: 800, timeoutMs: 100, log: (line) => lines.push(line) });
  try {
    await client.resume();
    recorded.dropNext = 1;
    recorded.seen.length = 0;
    assert.is(await client.syncCount(), 0);
    assert.equal(recorded.seen, ['GET_SYNC_COUNT:0', 'GET_SYNC_COUNT:0']);
    assert.is(client.counters.timeouts, 1);
    assert.match(lines.join('\n'), /request timed out: \[GET_SYNC_COUNT\/\d+\] - retrying/);
    recorded.eagainNext = 3;
    client.mark(4);
    await client.flush();
    assert.is(client.counters.eagain, 3);
    assert.not.ok(await client.isClean(4));
  } finally {
    await client.destroy();
    await logs.close();
  }
});

test('the server restarts mid-I/O and forgets its logs: requests wait, the client constructs and resumes the log again every retry interval, and goes on; the disk log brings back what was flushed', async () => {
  const socketPath = path.join(dir, 'restart.sock');
  const logFile = path.join(dir, 'restart-log.img');
  fs.writeFileSync(logFile, '');
  fs.truncateSync(logFile, 64 * 1024);
  let logs = new LogServer({ openDevice: openFile });
  let server = await listening(socketPath, logs);
  const lines: string[] = [];
  const client = await UlogClient.open({
    link: socketLink({ path: socketPath }), uuid: 'LVM-restart', logArgs: 'disk restart-log.img 8 nosync', targetSectors: 8 * 100, retryMs: 50, log: (line) => lines.push(line),
  });
  try {
    await client.resume();
    client.mark(3);
    await client.flush();
    // The server goes away (its logs with it) while requests are in flight and more come.
    await server.close();
    await logs.close();
    const waiting = [client.isClean(3), client.syncCount(), (client.mark(7), client.flush())];
    await sleep(200); // a few refused reconnects
    logs = new LogServer({ openDevice: openFile });
    server = await listening(socketPath, logs);
    const [clean3, count] = await Promise.all(waiting);
    // nosync on the table again: every region in sync, the bits on disk ignored (as dm does)...
    assert.is(count, 100);
    assert.is(clean3, true);
    assert.ok(client.counters.recoveries >= 1);
    assert.match(lines.join('\n'), /constructed and resumed again on the server/);
    assert.not.ok(await client.isClean(7), 'the mark after the restart is there');
    assert.equal(logs.list().map((info) => [info.uuid, info.state, info.dirtyRegions]), [['LVM-restart', 'live', 1]]);
    // ...while a log restored with its bits (no sync word) sees region 7 dirty: the flush was durable.
    const again = await UlogClient.open({ link: socketLink({ path: socketPath }), uuid: 'LVM-restart-2', logArgs: 'disk restart-log.img 8', targetSectors: 8 * 100 });
    await client.postsuspend();
    await again.resume();
    assert.not.ok(await again.isClean(7));
    assert.not.ok(await again.inSync(7));
    assert.ok(await again.inSync(3), 'the nosync resume after the restart rewrote the log clean: only region 7 is dirty');
    again.shut();
  } finally {
    client.shut();
    await server.close();
    await logs.close();
  }
});

test('the server forgets the log between a MARK and its FLUSH: after the recovery the whole batch goes again, so the mark is in the new instance', async () => {
  let logs = new LogServer();
  let restartOnFlush = true;
  const handler: UlogHandler = {
    async handle(request) {
      if (restartOnFlush && request.header.type === ULOG.FLUSH) {
        restartOnFlush = false;
        await logs.close();
        logs = new LogServer(); // a restart: the MARK it answered is gone with it
        return { error: -ULOG_ERRNO.ESRCH };
      }
      return logs.handle(request);
    },
  };
  const client = await UlogClient.open({ link: localLink(handler), uuid: 'LVM-batch-again', logArgs: 'core 8 nosync', targetSectors: 800, retryMs: 10 });
  try {
    await client.resume();
    client.mark(5);
    await client.flush();
    assert.is(client.counters.recoveries, 1);
    assert.not.ok(await client.isClean(5), 'the mark reached the new instance');
  } finally {
    await client.destroy();
    await logs.close();
  }
});

test('a client whose server never comes back fails its waiting requests when it is shut, not before', async () => {
  const socketPath = path.join(dir, 'gone.sock');
  const logs = new LogServer();
  const server = await listening(socketPath, logs);
  const client = await UlogClient.open({ link: socketLink({ path: socketPath }), uuid: 'LVM-gone', logArgs: 'core 8', targetSectors: 800, retryMs: 20 });
  await client.resume();
  await server.close();
  await logs.close();
  const waiting = client.syncCount().then(() => 'answered', (error: Error) => error.message);
  await sleep(150);
  client.shut();
  assert.match(await waiting, /closed/);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
