import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCloneFromTable } from '../runtime/clone/open-table.ts';
import { FileStore } from '../runtime/devices/file-store.ts';
import { TableError } from '../runtime/clone/table.ts';
import { resolveDevicePath } from '../runtime/data-dir.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng } from '../runtime/prng.ts';
import { RangeServer } from './support/range-server.ts';

const SIZE_BYTES = 1 << 20;
const image = new Prng(11).fill(new Uint8Array(SIZE_BYTES));
const open = suite('clone from a table line');
let dir = '';
let outside = '';
const servers: RangeServer[] = [];

function makeDevices(): void {
  writeFileSync(join(dir, 'src.img'), image);
  writeFileSync(join(dir, 'dst.img'), new Uint8Array(SIZE_BYTES));
  writeFileSync(join(dir, 'meta'), new Uint8Array(64 * 1024));
}

function digest(): string {
  const hash = createHash('sha256');
  for (const name of ['src.img', 'dst.img', 'meta']) hash.update(readFileSync(join(dir, name)));
  return hash.digest('hex');
}

async function serve(options = {}): Promise<string> {
  const server = new RangeServer(image, options);
  servers.push(server);
  return server.start();
}

open.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'blockcore-table-'));
  outside = mkdtempSync(join(tmpdir(), 'blockcore-outside-'));
  makeDevices();
});

open.after.each(async () => {
  for (const server of servers.splice(0)) await server.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

open('a file source hydrates into the destination; the source is untouched', async () => {
  const mtimeMs = statSync(join(dir, 'src.img')).mtimeMs;
  const clone = await openCloneFromTable(new FileStore(dir), 'clone meta dst.img src.img 8 0 4 hydration_threshold 64 hydration_batch_size 16');
  assert.is(clone.sizeBytes, SIZE_BYTES);
  await clone.whenHydrated();
  await clone.flush();
  await clone.close();
  assert.ok(Buffer.from(readFileSync(join(dir, 'dst.img'))).equals(image));
  assert.is(statSync(join(dir, 'src.img')).mtimeMs, mtimeMs);
});

open('an http source with ranges, also one that fails intermittently, hydrates exactly', async () => {
  for (const options of [{}, { failEvery: 3, dropEvery: 7 }]) {
    makeDevices();
    writeFileSync(join(dir, 'meta'), new Uint8Array(64 * 1024));
    const url = await serve(options);
    const clone = await openCloneFromTable(new FileStore(dir), `0 ${SIZE_BYTES / 512} clone meta dst.img ${url} 8 0 4 hydration_threshold 32 hydration_batch_size 8`, { http: { retryBaseMs: 1 } });
    const head = new Uint8Array(4096);
    await clone.read(0, head);
    assert.ok(Buffer.from(head).equals(image.subarray(0, 4096)));
    await clone.whenHydrated();
    await clone.close();
    assert.ok(Buffer.from(readFileSync(join(dir, 'dst.img'))).equals(image), JSON.stringify(options));
  }
});

async function refused(line: string, field: string | RegExp, options = {}): Promise<void> {
  const before = digest();
  try {
    await openCloneFromTable(new FileStore(dir), line, options);
    assert.unreachable(`accepted: ${line}`);
  } catch (error) {
    if (typeof field === 'string') {
      assert.instance(error, TableError, String(error));
      assert.is((error as TableError).field, field, String(error));
    } else {
      assert.ok(error instanceof BlockError || error instanceof TableError, String(error));
      assert.match(String((error as Error).message), field);
    }
  }
  assert.is(digest(), before, `nothing written after refusing: ${line}`);
}

open('bad input is refused naming what is wrong, and nothing is written', async () => {
  await refused('clone meta dst.img', 'source dev');
  await refused('clone meta dst.img src.img 7', 'region size');
  await refused('clone meta dst.img missing.img 8', 'source dev');
  await refused('clone missing dst.img src.img 8', 'metadata dev');
  await refused('clone meta ../dst.img src.img 8', 'destination dev');
  await refused('clone meta /etc/passwd src.img 8', 'destination dev');
  await refused('clone meta meta src.img 8', 'devices');
  await refused(`0 ${(SIZE_BYTES / 512) * 2} clone meta dst.img src.img 8`, 'destination dev');
  await refused('clone meta dst.img http://127.0.0.1:1/img 8', /unreachable/, { http: { maxRetries: 1, retryBaseMs: 1 } });
  const noRanges = await serve({ noRanges: true });
  await refused(`clone meta dst.img ${noRanges} 8`, /range requests/);
  // A symlink planted in the data directory cannot lead outside it.
  writeFileSync(join(outside, 'victim.img'), new Uint8Array(SIZE_BYTES));
  symlinkSync(join(outside, 'victim.img'), join(dir, 'escape.img'));
  await refused('clone meta escape.img src.img 8', 'destination dev');
  mkdirSync(join(dir, 'sub'));
  symlinkSync(outside, join(dir, 'sub', 'link'));
  await refused('clone meta sub/link/victim.img src.img 8', 'destination dev');
  // Metadata of another format, and a corrupt superblock.
  writeFileSync(join(dir, 'meta'), new Prng(5).fill(new Uint8Array(64 * 1024)));
  await refused('clone meta dst.img src.img 8', /not clone metadata or corrupt superblock/);
  writeFileSync(join(dir, 'meta'), new Uint8Array(64 * 1024));
  const clone = await openCloneFromTable(new FileStore(dir), 'clone meta dst.img src.img 8 1 no_hydration');
  assert.throws(() => clone.message('hydration_threshold many'), /not a region count/);
  await clone.close();
  const meta = readFileSync(join(dir, 'meta'));
  meta[100] ^= 0xff;
  meta[4096 + 100] ^= 0xff;
  writeFileSync(join(dir, 'meta'), meta);
  await refused('clone meta dst.img src.img 8', /bad checksum/);
});

open('a device name below a regular file is refused with EINVAL naming the field, not the host\'s ENOTDIR', async () => {
  assert.is(resolveDevicePath(dir, 'new/dir/x.img'), join(realpathSync(dir), 'new/dir/x.img'));
  symlinkSync('dst.img', join(dir, 'link.img'));
  for (const name of ['dst.img/x', 'dst.img/x/y.img', 'link.img/x']) {
    try {
      resolveDevicePath(dir, name, 'destination dev');
      assert.unreachable(`resolved: ${name}`);
    } catch (error) {
      assert.instance(error, BlockError, String(error));
      assert.is((error as BlockError).code, 'EINVAL');
      assert.is((error as BlockError).message, `EINVAL: destination dev "${name}" has a parent that is not a directory`);
    }
  }
  await refused('clone meta dst.img/x src.img 8', 'destination dev');
});

open.run();
