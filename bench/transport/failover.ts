/**
 * Failover trials of bench/transport.ts. A two-path session (policy min-inflight) whose paths run
 * through TCP proxies (test/support/tcp-proxy.ts, in this process) to the server child; readers
 * keep READERS random 4 KiB reads in flight. After WARM_INTERVALS heartbeat intervals (and a
 * random part of one) the first path's proxy breaks:
 *   stall   nothing more is delivered either way, connections stay open (a silent death: only the
 *           heartbeat can tell; the client's rule while IO waits is one interval with nothing heard)
 *   reset   every connection through it is reset (RST): the client sees the error at once
 * The break comes at a random phase of the heartbeat's ticks, so over trials detection after a
 * stall spreads between one and two intervals (see the rule above) and the median sits between.
 * The measure, `heldMs`: the longest any read was held up past the break, over every read that
 * had not completed when the break came or started after it: completion - max(start, break). A
 * read stuck on the dead path counts from the break until it completed on the other path; reads
 * that went to the live path count their own (short) latency. Reads run on until the dead path
 * has left CONNECTED and SETTLE_INTERVALS more intervals have passed, so every stuck read has
 * had its chance to fail over.
 */
import type { ClientEvent } from '../../runtime/transport/rtrs-client.ts';
import { TcpProxy } from '../../test/support/tcp-proxy.ts';
import { LISTEN_HOSTS, openRemote, pathsTo, type OurServer } from './ours.ts';
import { Prng } from '../../runtime/prng.ts';

const READERS = 8;
const READ_BYTES = 4096;
const WARM_INTERVALS = 5;
const SETTLE_INTERVALS = 3;
/** A trial that has not seen the path leave CONNECTED by then has failed. */
const GIVE_UP_INTERVALS = 100;
const VICTIM_PATH = 'path0';

export type Break = 'stall' | 'reset';

export interface FailoverResult {
  heldMs: number;
  /** Requests the client moved off the dead path (its 'failover' events). */
  movedRequests: number;
  /** Reads on the dead path when it broke. */
  inflightAtBreak: number;
}

export async function failoverTrial(server: OurServer, how: Break, heartbeatIntervalMs: number, seed: number): Promise<FailoverResult> {
  const proxies = pathsTo(server.addresses.invalidateOn).map((path) => new TcpProxy(path.dst));
  const through: string[] = [];
  for (const [i, proxy] of proxies.entries()) through.push(await proxy.listen(LISTEN_HOSTS[i]!));
  const remote = await openRemote(pathsTo(through), 'ro', {
    heartbeatIntervalMs, reconnectDelayMs: heartbeatIntervalMs, reconnectBackoffMs: heartbeatIntervalMs, policy: 'min-inflight',
  });
  let movedRequests = 0;
  let downMs = -1;
  const off = remote.session.onEvent((event: ClientEvent) => {
    if (event.type === 'failover' && event.path === VICTIM_PATH) movedRequests += event.requests;
    if (event.type === 'path-state' && event.path === VICTIM_PATH && event.from === 'CONNECTED' && downMs < 0) downMs = performance.now();
  });
  try {
    const prng = new Prng(seed);
    const blockCount = Math.floor(remote.device.sizeBytes / READ_BYTES);
    let breakMs = Infinity;
    let heldMs = 0;
    let stopping = false;
    const reader = async (): Promise<void> => {
      const buffer = new Uint8Array(READ_BYTES);
      while (!stopping) {
        const startMs = performance.now();
        await remote.device.read(prng.below(blockCount) * READ_BYTES, buffer);
        const endMs = performance.now();
        if (endMs > breakMs) heldMs = Math.max(heldMs, endMs - Math.max(startMs, breakMs));
      }
    };
    const readers = Promise.all(Array.from({ length: READERS }, reader));
    readers.catch(() => {}); // awaited below; a trial that throws first must not leave it unhandled
    // The break lands at a random phase of the heartbeat ticks: a whole number of intervals after
    // the session opened would always fall just before (or just after) a tick, and detection
    // then always takes one (or always two) intervals, whichever the runtime's timer order gives.
    await sleep((WARM_INTERVALS + prng.next()) * heartbeatIntervalMs);
    const inflightAtBreak = remote.session.pathsInfo().find((path) => path.name === VICTIM_PATH)!.stats.inflight;
    breakMs = performance.now();
    if (how === 'stall') proxies[0]!.stall();
    else proxies[0]!.reset();
    const giveUpMs = breakMs + GIVE_UP_INTERVALS * heartbeatIntervalMs;
    while (downMs < 0 || performance.now() < downMs + SETTLE_INTERVALS * heartbeatIntervalMs) {
      if (performance.now() > giveUpMs) throw new Error(`failover (${how}): ${VICTIM_PATH} still CONNECTED ${GIVE_UP_INTERVALS} heartbeat intervals after the break`);
      await sleep(heartbeatIntervalMs / 4);
    }
    stopping = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`failover (${how}): reads still held ${GIVE_UP_INTERVALS} heartbeat intervals after the path went down`)), GIVE_UP_INTERVALS * heartbeatIntervalMs);
    });
    await Promise.race([readers, late]).finally(() => clearTimeout(timer));
    return { heldMs, movedRequests, inflightAtBreak };
  } finally {
    off();
    await remote.close();
    for (const proxy of proxies) await proxy.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
