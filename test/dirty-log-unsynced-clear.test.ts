/**
 * A region out of sync is never clean in a log whose clean bits outlive a crash: a disk log's
 * clean bits become its sync bits at the next RESUME, so a CLEAR_REGION of a region out of sync
 * that reached disk would make it read as in sync after a crash (no resync, legs that differ).
 * Each log type: CLEAR_REGION of a region out of sync leaves it out of sync (a disk log keeps it
 * dirty, on disk too); SET_REGION_SYNC(r, 0) of a clean region makes a disk log's r dirty at the
 * next FLUSH. (Clustered logs: dirty-log-clustered.test.ts.)
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { LogServer } from '../runtime/dirty-log/log-server.ts';
import { UlogClient } from '../runtime/ulog/ulog-client.ts';
import { localLink } from '../runtime/ulog/ulog-link.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const test = suite('dirty log: a region out of sync is not cleared');
const REGIONS = 64;

/** The log device, kept open across servers (a MemoryDevice drops its pages at close). */
class Kept extends PassThroughDevice {
  override async close(): Promise<void> {}
}

async function open(server: LogServer, uuid: string, logArgs: string): Promise<UlogClient> {
  const client = await UlogClient.open({ link: localLink(server), uuid, logArgs, targetSectors: 8 * REGIONS });
  await client.resume();
  return client;
}

test('disk log: CLEAR_REGION of a region out of sync keeps it dirty; after a reload it is out of sync and handed out for resync', async () => {
  const backing = new MemoryDevice({ sizeBytes: 64 * 1024, name: 'log' });
  const first = new LogServer({ openDevice: async () => new Kept(backing) });
  const client = await open(first, 'LVM-unsynced-1', 'disk log 8 nosync');
  // Region 9 out of sync (a leg missed a write), marked, then its clear: it must stay dirty.
  client.mark(9);
  await client.flush();
  await client.setRegionSync(9, false);
  client.clear(9);
  await client.flush();
  assert.not.ok(await client.inSync(9));
  assert.not.ok(await client.isClean(9), 'out of sync: the clear is not applied');
  // Region 12 in sync and clean goes out of sync: dirty from the next FLUSH on.
  await client.setRegionSync(12, false);
  await client.flush();
  assert.not.ok(await client.isClean(12));
  // In sync again (the resync copied it), then cleared: clean.
  client.mark(20);
  await client.flush();
  await client.setRegionSync(20, false);
  await client.setRegionSync(20, true);
  client.clear(20);
  await client.flush();
  assert.ok(await client.isClean(20), 'in sync again: cleared');
  client.shut(); // the crash: no DTR, no POSTSUSPEND

  const second = new LogServer({ openDevice: async () => new Kept(backing) });
  const reloaded = await open(second, 'LVM-unsynced-1', 'disk log 8');
  try {
    assert.not.ok(await reloaded.inSync(9), 'region 9 out of sync after the reload');
    assert.not.ok(await reloaded.inSync(12), 'region 12 out of sync after the reload');
    assert.ok(await reloaded.inSync(20));
    assert.is(await reloaded.syncCount(), REGIONS - 2);
    const work: number[] = [];
    for (let region = await reloaded.resyncWork(); region !== null; region = await reloaded.resyncWork()) {
      work.push(region);
      await reloaded.setRegionSync(region, true);
    }
    assert.equal(work, [9, 12]);
  } finally {
    await reloaded.destroy();
    await second.close();
    await first.close();
  }
});

test('core log: CLEAR_REGION of a region out of sync does not make it read as in sync', async () => {
  const server = new LogServer();
  const client = await open(server, 'LVM-unsynced-2', 'core 8');
  try {
    client.mark(3);
    await client.flush();
    client.clear(3); // applied (a core log's bits end with it), but the region stays out of sync
    await client.flush();
    assert.not.ok(await client.inSync(3));
    assert.is(await client.syncCount(), 0);
    assert.is(await client.resyncWork(), 0);
  } finally {
    await client.destroy();
    await server.close();
  }
});

test.run();
