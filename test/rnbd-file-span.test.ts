/**
 * RNBD reads answered straight from a file: the RNBD server lends a FileDevice's range
 * (RtrsRequest.span) and the RTRS server sends it behind the WRITE frame's header with sendfile,
 * the IO response right after (FileFrame trailer), where the runtime has zero-copy sends (Node,
 * Bun); elsewhere, and with the digest on, the read is copied as before.
 *
 * Covered: the device conformance suite on file-backed remote devices; reads of every size from
 * 4 KiB to 1 MiB equal the file, the long ones lent as spans exactly where the link can send them
 * (counted), none with the digest on; a span that cannot be read (its file fails): that read fails
 * with EIO on the client (once the broken path is back: the server answers the re-issue with the
 * recorded error rather than running it again), and the device goes on serving.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import type { FileSpan } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { RnbdClient } from '../runtime/transport/rnbd-client.ts';
import { RnbdServer, type DeviceResolver } from '../runtime/transport/rnbd-server.ts';
import type { RtrsClientOptions } from '../runtime/transport/rtrs-client.ts';
import { deviceConformance, type DeviceFactory } from './conformance/device-suite.ts';
import { expectCode } from './support/expect-code.ts';
import { connectRtrsPair } from './support/rtrs-pair.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';
import { THREAD_CASES, threadedCount, type ThreadsCase } from './support/io-threads.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const SEED = seedFromEnv();
const zeroCopy = (await loadAdapter()).socketSend !== null;
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-rnbd-span-'));

/** A FileDevice that counts the spans it lends, and lends a broken one for reads at `badOffsetBytes`. */
class Lending extends PassThroughDevice {
  lent = 0;
  badOffsetBytes = -1;
  constructor(private readonly file: FileDevice) {
    super(file);
  }
  override read(offsetBytes: number, target: Uint8Array) {
    if (offsetBytes === this.badOffsetBytes) return Promise.reject(new BlockError('EIO', 'the test\'s unreadable range'));
    return this.inner.read(offsetBytes, target);
  }
  fileSpan(offsetBytes: number, lengthBytes: number): FileSpan | null {
    if (offsetBytes === this.badOffsetBytes) {
      // No file behind it: sendfile fails, and so does reading it.
      return { fd: -1, fileOffsetBytes: 0, lengthBytes, read: () => Promise.reject(new BlockError('EIO', 'the test\'s unreadable span')), release: () => {} };
    }
    const span = this.file.fileSpan(offsetBytes, lengthBytes);
    if (span !== null) this.lent++;
    return span;
  }
}

/** Logical block sizes the conformance suite asked for, by file name (default 512). */
const blockBytesOf = new Map<string, number>();

/** Serves files of tempDir by name, each through a Lending wrapper (kept in `devices`). */
function fileServer(): { server: RnbdServer; devices: Map<string, Lending> } {
  const devices = new Map<string, Lending>();
  const resolve: DeviceResolver = async (name, access) => {
    const logicalBlockBytes = blockBytesOf.get(name);
    const device = new Lending(await FileDevice.open(path.join(tempDir, name), { readOnly: access === 'ro', ...(logicalBlockBytes ? { logicalBlockBytes } : {}) }));
    devices.set(name, device);
    return { device, release: () => device.close() };
  };
  return { server: new RnbdServer(resolve), devices };
}

async function setup(clientOptions: Partial<RtrsClientOptions> = {}, threads: ThreadsCase = THREAD_CASES[0]!) {
  const { server, devices } = fileServer();
  const pair = await connectRtrsPair({ handler: server, clientOptions: { ...clientOptions, ioThreads: threads.client }, serverOptions: { ioThreads: threads.server } });
  const client = await RnbdClient.connect(pair.client);
  return {
    pair, client, devices,
    async close() {
      await client.close();
      await pair.close();
    },
  };
}

/** `pending`, or a rejection once `ms` have passed (a hang is a failure, not a stuck run). */
function withinMs<T>(pending: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled in ${ms} ms`)), ms);
  });
  return Promise.race([pending, late]).finally(() => clearTimeout(timer));
}

function seededFile(name: string, sizeBytes: number, seed: number): Uint8Array {
  const bytes = new Prng(seed).fill(new Uint8Array(sizeBytes));
  fs.writeFileSync(path.join(tempDir, name), bytes);
  return bytes;
}

// ---- the device contract, over files ----

let shared: Awaited<ReturnType<typeof setup>> | undefined;
let fileCount = 0;
for (const threads of THREAD_CASES) {
  const fileFactory: DeviceFactory = async ({ sizeBytes, logicalBlockBytes, readOnly, initial }) => {
    shared ??= await setup({}, threads);
    const name = `conformance-${++fileCount}.img`;
    fs.writeFileSync(path.join(tempDir, name), initial ?? new Uint8Array(sizeBytes));
    if (logicalBlockBytes !== undefined) blockBytesOf.set(name, logicalBlockBytes); // RNBD advertises the server device's
    return shared.client.open(name, readOnly ? 'ro' : 'rw');
  };
  const closeShared = async (): Promise<void> => {
    await shared?.close();
    shared = undefined;
  };
  deviceConformance(`RemoteDevice over RTRS, file-backed${threads.label}`, fileFactory, { after: closeShared });
}

// ---- spans ----

const test = suite('rnbd: reads answered from a file');

test.after(() => fs.rmSync(tempDir, { recursive: true, force: true }));

for (const [digest, threads] of THREAD_CASES.flatMap((each) => [[false, each], [true, each]] as const)) {
  test(`reads of every size equal the file${digest ? ', with the digest on (nothing lent)' : ', long ones lent where the runtime sends from files'}${threads.label}`, async () => {
    const prng = new Prng(SEED + (digest ? 1 : 0));
    const name = `sizes-${digest}-${threads.server}-${threads.client}.img`;
    const bytes = seededFile(name, 8 * MiB, SEED ^ 0x5a5a);
    const remote = await setup({ digest }, threads);
    try {
      const device = await remote.client.open(name, 'ro');
      let longReads = 0;
      for (let trial = 0; trial < 120; trial++) {
        const lengthBytes = prng.range(1, 256) * 4 * KiB;
        const offsetBytes = prng.below((bytes.length - lengthBytes) / 512 + 1) * 512;
        const target = new Uint8Array(lengthBytes);
        // Several at once, so spans and copies interleave on the links.
        const others = Array.from({ length: 3 }, () => device.read(prng.below(bytes.length / 4096) * 4096, new Uint8Array(4096)));
        await device.read(offsetBytes, target);
        await Promise.all(others);
        assert.ok(Buffer.from(target).equals(bytes.subarray(offsetBytes, offsetBytes + lengthBytes)), `read of ${lengthBytes} at ${offsetBytes}`);
        if (lengthBytes >= 64 * KiB) longReads++;
      }
      // Every IO connection (all but connection 0 of each path) on an IO thread, when asked for.
      const paths = remote.pair.server.sessionsInfo()[0]!.paths;
      for (const each of paths) assert.is(each.threadedConnections, threadedCount(threads.server, each.connections), 'server connections served by IO threads');
      for (const each of remote.pair.client.paths) assert.is(each.threadedConnections, threadedCount(threads.client, each.links.length), 'client connections served by IO threads');
      const lent = remote.devices.get(name)!.lent;
      if (digest || !zeroCopy) assert.is(lent, 0, 'spans lent where they cannot be sent');
      else assert.ok(lent >= longReads, `${lent} spans lent for ${longReads} reads of 64 KiB or more`);
    } finally {
      await remote.close();
    }
  });
}

for (const threads of THREAD_CASES) test(`a span that cannot be read fails that read with EIO, and the device goes on${threads.label}`, async () => {
  const name = `broken-${threads.server}-${threads.client}.img`;
  const bytes = seededFile(name, 4 * MiB, SEED ^ 0xbad);
  const remote = await setup({}, threads);
  try {
    const device = await remote.client.open(name, 'ro');
    const lending = remote.devices.get(name)!;
    lending.badOffsetBytes = MiB;
    // Without the server's record of the failure the re-issue would break the path again, for ever.
    await expectCode(withinMs(device.read(MiB, new Uint8Array(128 * KiB)), 10_000, 'the failed read'), 'EIO');
    const target = new Uint8Array(256 * KiB);
    await device.read(2 * MiB, target);
    assert.ok(Buffer.from(target).equals(bytes.subarray(2 * MiB, 2 * MiB + target.length)), 'a read after the failure');
  } finally {
    await remote.close();
  }
});

test.run();
