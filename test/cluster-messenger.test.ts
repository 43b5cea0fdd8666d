/**
 * md-cluster's token / message / ack protocol (runtime/cluster/messenger.ts) with several nodes
 * on the in-process lock manager: every message processed exactly once by every other node, one
 * message in the cluster at a time, a send complete only once all processed it; a held channel;
 * refused blocks acknowledged; a receiver or a sender dying mid-message; a node joining between
 * messages.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { clusterMsg, decodeClusterMsg, encodeClusterMsg, MSG_TYPE, type ClusterMsg } from '../runtime/cluster/cluster-msg.ts';
import { Messenger } from '../runtime/cluster/messenger.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import type { Lockspace } from '../runtime/locks/lock-manager.ts';
import { LockMode } from '../runtime/locks/modes.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const test = suite('cluster messenger');
const { NL, CW, CR, EX } = LockMode;
let spaceCount = 0;

interface TestNode {
  name: string;
  space: Lockspace;
  messenger: Messenger;
  got: ClusterMsg[];
  refusals: string[];
}

class Cluster {
  readonly manager = new InProcessLockManager();
  readonly lockspace = `msg-${++spaceCount}`;
  readonly nodes: TestNode[] = [];
  /** Messages being processed right now, cluster-wide: must never exceed 1 distinct message. */
  readonly inFlight = new Set<string>();
  maxInFlight = 0;
  hold: ((node: TestNode, msg: ClusterMsg) => Promise<void>) | null = null;

  async join(name: string): Promise<TestNode> {
    const space = await this.manager.join(this.lockspace, { memberName: name });
    const node = { name, space, got: [], refusals: [] } as unknown as TestNode;
    node.messenger = await Messenger.start(space, {
      onMessage: async (msg) => {
        const key = `${msg.slot}:${msg.lowSectors}`;
        this.inFlight.add(key);
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight.size);
        await new Promise((resolve) => setTimeout(resolve, 0));
        await this.hold?.(node, msg);
        node.got.push(msg);
        this.inFlight.delete(key);
      },
      onRefused: (reason) => node.refusals.push(reason),
      onError: (error) => node.refusals.push(`error: ${String(error)}`),
    });
    this.nodes.push(node);
    return node;
  }

  async close(): Promise<void> {
    for (const node of this.nodes) await node.messenger.stop().catch(() => {});
    await this.manager.close();
  }
}

async function withCluster(count: number, body: (cluster: Cluster) => Promise<void>): Promise<void> {
  const cluster = new Cluster();
  try {
    for (let i = 0; i < count; i++) await cluster.join(`n${i + 1}`);
    await body(cluster);
  } finally {
    await cluster.close();
  }
}

const resyncing = (low: number, high: number) => clusterMsg(MSG_TYPE.RESYNCING, { lowSectors: low, highSectors: high });
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

test('cluster_msg: frozen hex vector, round trip, refusals', () => {
  const msg = clusterMsg(MSG_TYPE.NEWDISK, { slot: 2, lowSectors: 0x1_0000_0002, highSectors: 7, uuid: Uint8Array.from({ length: 16 }, (_, i) => 0xc0 + i), raidSlot: 5 });
  const hex = Array.from(encodeClusterMsg(msg), (b) => b.toString(16).padStart(2, '0')).join('');
  assert.is(hex, [
    '02000000', '02000000', '0200000001000000', '0700000000000000', 'c0c1c2c3c4c5c6c7c8c9cacbcccdcecf', '05000000', '00000000',
    '00'.repeat(16),
  ].join(''));
  assert.equal(decodeClusterMsg(encodeClusterMsg(msg)), msg);
  const unknown = encodeClusterMsg(msg);
  unknown[0] = 9;
  assert.match(decodeClusterMsg(unknown) as string, /unknown cluster message type 9/);
  assert.match(decodeClusterMsg(new Uint8Array(40)) as string, /needs 48 bytes/);
  const big = encodeClusterMsg(msg);
  big[15] = 0xff;
  assert.match(decodeClusterMsg(big) as string, /beyond 2\^53/);
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  for (let i = 0; i < 2000; i++) {
    const bytes = prng.fill(new Uint8Array(prng.below(70)));
    const decoded = decodeClusterMsg(bytes);
    if (typeof decoded !== 'string') assert.equal(decodeClusterMsg(encodeClusterMsg(decoded)), decoded, `seed ${seed}`);
  }
});

test('every node sends at once: each message is processed exactly once by every other node, one at a time', () =>
  withCluster(4, async (cluster) => {
    const perNode = 8;
    await Promise.all(cluster.nodes.map((node, n) =>
      (async () => {
        for (let i = 0; i < perNode; i++) await node.messenger.send(resyncing(n * 1000 + i, n * 1000 + i + 1));
      })()));
    assert.is(cluster.maxInFlight, 1, 'one message in the cluster at a time');
    for (const [n, node] of cluster.nodes.entries()) {
      const expected = cluster.nodes.flatMap((_, m) => (m === n ? [] : Array.from({ length: perNode }, (_, i) => `${m}:${m * 1000 + i}`)));
      assert.equal(node.got.map((msg) => `${msg.slot}:${msg.lowSectors}`).sort(), expected.sort(), `${node.name} got each message once`);
      assert.is(node.messenger.sent, perNode);
      assert.equal(node.refusals, []);
    }
    // Per sender, messages arrive in the order they were sent.
    for (const node of cluster.nodes) {
      for (let m = 0; m < 4; m++) {
        const lows = node.got.filter((msg) => msg.slot === m).map((msg) => msg.lowSectors);
        assert.equal(lows, [...lows].sort((a, b) => a - b));
      }
    }
  }));

test('a send resolves only after every other node processed the message', () =>
  withCluster(3, async (cluster) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    cluster.hold = async (node) => {
      if (node.name === 'n3') await gate;
    };
    let done = false;
    const sending = cluster.nodes[0]!.messenger.send(resyncing(5, 10)).then(() => (done = true));
    for (let i = 0; i < 20; i++) await tick();
    assert.is(cluster.nodes[1]!.got.length, 1, 'n2 processed it');
    assert.is(done, false, 'n3 has not: the sender waits');
    release();
    await sending;
    assert.is(cluster.nodes[2]!.got.length, 1);
  }));

test('a held channel keeps other senders out until released; the holder sends several messages', () =>
  withCluster(3, async (cluster) => {
    const [a, b] = cluster.nodes;
    const channel = await a!.messenger.lockComm();
    let bDone = false;
    const bSend = b!.messenger.send(resyncing(100, 200)).then(() => (bDone = true));
    await channel.send(resyncing(1, 2));
    await channel.send(resyncing(3, 4));
    for (let i = 0; i < 10; i++) await tick();
    assert.is(bDone, false, 'b waits for the token');
    await channel.release();
    await bSend;
    assert.equal(cluster.nodes[2]!.got.map((m) => m.lowSectors), [1, 3, 100]);
  }));

test('a block that is not a message we act on is acknowledged and refused, never applied', () =>
  withCluster(3, async (cluster) => {
    // A raw sender writes arbitrary bytes through the protocol.
    const space = cluster.nodes[0]!.space;
    const token = await space.lock('token', EX);
    const message = await space.lock('message', EX);
    const ack = await space.lock('ack', CR).catch(() => null);
    for (const [type, why] of [[9, /unknown cluster message type 9/], [MSG_TYPE.RESYNCING_START, /RESYNCING_START is not handled/]] as const) {
      const block = encodeClusterMsg(clusterMsg(MSG_TYPE.RESYNCING, { slot: 0 }));
      new DataView(block.buffer).setUint32(0, type, true);
      block[48] = type; // a fresh sequence number
      message.valueBlock.set(block);
      await message.convert(CW);
      await ack!.convert(EX);
      await ack!.convert(CR);
      await message.convert(NL);
      await message.convert(EX);
      for (const node of cluster.nodes.slice(1)) assert.match(node.refusals.at(-1)!, why);
    }
    await message.unlock();
    await ack!.unlock();
    await token.unlock();
    for (const node of cluster.nodes.slice(1)) assert.equal(node.got, []);
    await cluster.nodes[1]!.messenger.send(resyncing(7, 8));
    assert.is(cluster.nodes[2]!.got.length, 1, 'the channel still works');
  }));

test('a receiver that dies mid-message does not hold the sender; one that joins later gets later messages', () =>
  withCluster(3, async (cluster) => {
    cluster.hold = (node) => (node.name === 'n3' ? new Promise<never>(() => {}) : Promise.resolve());
    const sending = cluster.nodes[0]!.messenger.send(resyncing(1, 2));
    for (let i = 0; i < 10; i++) await tick();
    cluster.manager.kill(cluster.nodes[2]!.space);
    await sending;
    cluster.hold = null;
    cluster.inFlight.clear();
    const late = await cluster.join('n4');
    await cluster.nodes[1]!.messenger.send(resyncing(3, 4));
    assert.equal(late.got.map((m) => m.lowSectors), [3], 'the joiner sees only messages sent after it joined');
    assert.equal(cluster.nodes[0]!.got.map((m) => m.lowSectors), [3]);
  }));

test('a sender that dies waiting for acks: receivers finish the message; the next sender goes through', () =>
  withCluster(3, async (cluster) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    cluster.hold = async (node) => {
      if (node.name === 'n2') await gate;
    };
    const doomed = cluster.nodes[0]!.messenger.send(resyncing(1, 2)).catch((error: unknown) => error);
    for (let i = 0; i < 10; i++) await tick();
    cluster.manager.kill(cluster.nodes[0]!.space);
    release();
    await doomed;
    cluster.hold = null;
    await cluster.nodes[2]!.messenger.send(resyncing(9, 10));
    assert.equal(cluster.nodes[1]!.got.map((m) => m.lowSectors), [1, 9]);
    assert.equal(cluster.nodes[2]!.got.map((m) => m.lowSectors), [1]);
  }));

test.run();
