/**
 * The Linux kernel's own NBD client (nbd-client attaching our export to /dev/nbdN): the block
 * layer's reads and writes, with O_DIRECT, land on the device byte for byte. It needs the nbd
 * module (/sys/block/nbd0, /dev/nbd0) and root; where either is missing (this CI's VMs have no nbd module) the test
 * says so and checks nothing else: there is nothing here to attach to.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { serve, type Served } from './support/nbd-fixtures.ts';
import { mustRun, requireTools, runTool } from './support/tools.ts';

const MiB = 1024 * 1024;
const test = suite('nbd: the kernel client');

/** Whether `file` exists, asked of test(1): Deno wants --allow-all for any look at /dev or /sys. */
function present(file: string): boolean {
  return spawnSync('test', ['-e', file], { stdio: 'ignore' }).status === 0;
}

/** Why the kernel client cannot run here, or null when it can. */
function unavailable(): string | null {
  if (!present('/sys/block/nbd0')) return 'the kernel has no nbd module loaded (no /sys/block/nbd0)';
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'attaching /dev/nbdN needs root';
  return null;
}

/** An /dev/nbdN no one is attached to. */
function freeNbdDevice(): string {
  for (let n = 0; present(`/sys/block/nbd${n}`); n++) {
    if (!present(`/sys/block/nbd${n}/pid`)) return `/dev/nbd${n}`;
  }
  throw new Error('every /dev/nbdN is in use');
}

test('nbd-client attaches our export; O_DIRECT writes and reads through /dev/nbdN are the device bytes', async () => {
  const why = unavailable();
  if (why !== null) {
    console.log(`  nbd kernel client: not run: ${why}`);
    return;
  }
  requireTools(['nbd-client', 'dd']);
  const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-kernel-'));
  const device = await FileDevice.open(path.join(tempDir, 'disk.img'), { create: { sizeBytes: 64 * MiB } });
  let served: Served | undefined;
  let attached: string | null = null;
  try {
    served = await serve([{ name: 'disk', device, readOnly: false }]);
    attached = freeNbdDevice();
    await mustRun('nbd-client', ['127.0.0.1', String(served.tcp.port), attached, '-N', 'disk', '-b', '4096']);
    const pattern = new Prng(11).fill(new Uint8Array(4 * MiB));
    const patternPath = path.join(tempDir, 'pattern');
    fs.writeFileSync(patternPath, pattern);
    await mustRun('dd', [`if=${patternPath}`, `of=${attached}`, 'bs=1M', 'seek=8', 'oflag=direct', 'conv=fsync', 'status=none']);
    const onDevice = new Uint8Array(pattern.length);
    await device.read(8 * MiB, onDevice);
    assert.ok(Buffer.from(onDevice).equals(Buffer.from(pattern)), 'the kernel wrote the pattern at 8 MiB');
    const readPath = path.join(tempDir, 'read');
    await mustRun('dd', [`if=${attached}`, `of=${readPath}`, 'bs=1M', 'skip=8', 'count=4', 'iflag=direct', 'status=none']);
    assert.ok(Buffer.from(fs.readFileSync(readPath)).equals(Buffer.from(pattern)), 'the kernel reads it back');
  } finally {
    if (attached !== null) await runTool('nbd-client', ['-d', attached]);
    await served?.stop();
    await device.close();
    fs.rmSync(tempDir, { recursive: true, force: true });
  }
});

// The module may be loadable though not loaded: say so once, for whoever reads the log.
if (!present('/sys/block/nbd0') && spawnSync('sh', ['-c', 'command -v modprobe'], { stdio: 'ignore' }).status === 0) {
  console.log('  nbd kernel client: `modprobe nbd` (as root) makes /dev/nbd0 for this test');
}

test.run();
