import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCloneDevices, startTestServer, until, writeImage, type TestServer } from './support/blockcore-server.ts';
import { attachNbd } from './support/nbd-attach.ts';
import { openEvents } from './support/sse-reader.ts';
import { EventHub, ID_STEPS_PER_MS } from '../server/event-hub.ts';

const events = suite('api: events (Server-Sent Events)');
let server: TestServer;

events.before.each(async () => {
  server = await startTestServer();
});
events.after.each(async () => {
  await server.dispose();
});

events('a clone: created, hydration progress in commits, completion', async () => {
  await makeCloneDevices(server);
  const stream = await openEvents(`${server.url}/v1/events`);
  assert.is(stream.status, 200);
  assert.is((await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 0 2 hydration_batch_size 8' })).status, 201);
  const created = await stream.next((e) => e.event === 'clone.created', 'clone.created');
  assert.is(created.data.clone, 'c1');
  assert.is(created.data.type, 'clone.created');
  assert.is(created.id, String(created.data.id));
  const complete = await stream.next((e) => e.event === 'clone.hydration-complete' && e.data.clone === 'c1', 'completion');
  assert.ok(Number(complete.id) > Number(created.id));
  const progress = await stream.next((e) => e.event === 'clone.commit' && e.data.hydratedRegions === 256, 'a commit of the last region', 5000);
  assert.equal([progress.data.totalRegions, progress.data.bytesHydrated, progress.data.totalBytes], [256, 1 << 20, 1 << 20]);
  const ids = stream.received.map((e) => Number(e.id));
  assert.equal(ids, [...ids].sort((a, b) => a - b), 'in order');
  stream.close();
});

events('mode and hydration toggles, suspend and messages are events too', async () => {
  await makeCloneDevices(server);
  const stream = await openEvents(`${server.url}/v1/events`);
  await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 1 no_hydration' });
  await server.call('POST', '/v1/clones/c1/suspend');
  await server.call('POST', '/v1/clones/c1/resume');
  await server.call('POST', '/v1/clones/c1/message', { message: 'enable_hydration' });
  const toggled = await stream.next((e) => e.event === 'clone.hydration', 'clone.hydration');
  assert.is(toggled.data.enabled, true);
  for (const type of ['clone.suspended', 'clone.resumed', 'clone.message']) await stream.next((e) => e.event === type, type);
  stream.close();
});

events('export connects and disconnects', async () => {
  writeImage(server.dataDir, 'disk.img', 65536);
  const stream = await openEvents(`${server.url}/v1/events`);
  await server.call('POST', '/v1/exports', { name: 'disk', device: 'disk.img' });
  const client = await attachNbd(server.running.nbd, 'disk');
  const connect = await stream.next((e) => e.event === 'export.connect', 'export.connect');
  assert.is(connect.data.export, 'disk');
  assert.type(connect.data.connectionId, 'number');
  await client.close();
  const disconnect = await stream.next((e) => e.event === 'export.disconnect', 'export.disconnect');
  assert.is(disconnect.data.connectionId, connect.data.connectionId);
  await stream.next((e) => e.event === 'export.added', 'export.added');
  stream.close();
});

events('?since= and Last-Event-ID replay kept events; bad values are 400', async () => {
  await server.call('POST', '/v1/devices', { name: 'a.img', sizeBytes: 4096 });
  await server.call('POST', '/v1/devices', { name: 'b.img', sizeBytes: 4096 });
  const all = await openEvents(`${server.url}/v1/events?since=0`);
  const first = await all.next((e) => e.event === 'device.created', 'the first event');
  assert.is(first.data.device, 'a.img');
  all.close();
  const resumed = await openEvents(`${server.url}/v1/events`, { 'last-event-id': first.id });
  const next = await resumed.next(() => true, 'the event after');
  assert.is(next.data.device, 'b.img');
  resumed.close();
  for (const query of ['since=-1', 'since=x', 'since=1.5', 'from=3']) {
    const answer = await server.call('GET', `/v1/events?${query}`);
    assert.is(answer.status, 400, query);
    assert.is(answer.json.code, 'EINVAL');
  }
  assert.is((await server.call('GET', '/v1/events', undefined, { 'last-event-id': 'abc' })).json.field, 'Last-Event-ID');
});

events('event ids keep rising across a restart: resuming with an id from the earlier run misses nothing', async () => {
  await server.call('POST', '/v1/devices', { name: 'a.img', sizeBytes: 4096 });
  const before = await openEvents(`${server.url}/v1/events?since=0`);
  const created = await before.next((e) => e.event === 'device.created', 'device.created');
  before.close();
  await server.restart();
  await server.call('POST', '/v1/devices', { name: 'b.img', sizeBytes: 4096 });
  await server.call('POST', '/v1/devices', { name: 'c.img', sizeBytes: 4096 });
  const resumed = await openEvents(`${server.url}/v1/events`, { 'last-event-id': created.id });
  const first = await resumed.next((e) => e.event === 'device.created', 'the first device event after the restart');
  assert.is(first.data.device, 'b.img');
  assert.ok(Number(first.id) > Number(created.id), `${first.id} > ${created.id}`);
  resumed.close();
});

events('EventHub: a later start numbers above an earlier one; an id not given yet replays all kept events', () => {
  const earlier = new EventHub(1_000_000);
  for (let i = 0; i < ID_STEPS_PER_MS - 1; i++) earlier.publish('x');
  const later = new EventHub(1_000_001);
  const event = later.publish('y');
  assert.ok(event.id > earlier.lastId);
  later.publish('z');
  assert.equal(later.since(event.id).map((e) => e.type), ['z']);
  assert.equal(later.since(later.lastId + 500).map((e) => e.type), ['y', 'z'], 'from the future: everything kept');
  assert.equal(later.since(earlier.lastId).map((e) => e.type), ['y', 'z'], 'from an earlier run: everything kept');
});

events('HEAD subscribes to nothing; a client that goes away unsubscribes', async () => {
  const head = await server.call('HEAD', '/v1/events');
  assert.is(head.status, 200);
  assert.match(head.headers.get('content-type')!, /^text\/event-stream/);
  const hub = server.running.service.events;
  assert.is(hub.subscriberCount, 0);
  const stream = await openEvents(`${server.url}/v1/events`);
  await until(() => hub.subscriberCount === 1, 'a subscriber');
  stream.close();
  await until(() => hub.subscriberCount === 0, 'no subscriber');
});

events('the stream ends when the service stops', async () => {
  const stream = await openEvents(`${server.url}/v1/events`);
  await server.stop();
  await stream.ended;
});

events.run();
