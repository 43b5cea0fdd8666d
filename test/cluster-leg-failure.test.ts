/**
 * A leg that fails under a metadata update (md's superblock write), not under a user write: the
 * array marks it faulty at once, and its failure is recorded only when another leg's superblock
 * says so. Until then no write that missed that leg may be acknowledged (after a crash the
 * superblocks would still call it in sync, and a resync could take it as the source, erasing the
 * write), and a write that saw the leg fail must not take it as already recorded. Found by the
 * cluster power-loss trial (bitmap none, seed 1238042760 on a loaded machine): a FUA write was
 * acknowledged with one copy, then lost to a whole-array resync from the other leg.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { WriteOptions } from '../runtime/devices/block-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { readMdSuperblock } from '../runtime/cluster/leg-metadata.ts';
import { MD_ROLE_FAULTY, MD_SB_OFFSET_SECTORS, SECTOR_BYTES } from '../runtime/cluster/md-superblock.ts';
import { expectCode } from './support/expect-code.ts';
import { DATA_OFFSET_BYTES, legFiles, MIB, node, pattern, removeTempDir, sleep, spec } from './support/cluster-nodes.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const test = suite('cluster array: a leg failed by a metadata update');
const SUPERBLOCK_OFFSET_BYTES = MD_SB_OFFSET_SECTORS * SECTOR_BYTES;

type Step = 'pass' | 'fail' | 'hold';

/** A leg whose superblock writes and data writes follow a script, one step per write; 'pass' once it runs out. */
class ScriptedLeg extends PassThroughDevice {
  superblockSteps: Step[] = [];
  dataSteps: Step[] = [];
  dataWritesDone = 0;
  /** The write held now: settle it with release(true) to let it pass, release(false) to fail it. */
  private held: ((pass: boolean) => void) | null = null;

  get holding(): boolean {
    return this.held !== null;
  }

  release(pass: boolean): void {
    const held = this.held;
    assert.ok(held !== null, 'a write is held');
    this.held = null;
    held(pass);
  }

  override async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const data_ = offsetBytes >= DATA_OFFSET_BYTES;
    const steps = offsetBytes === SUPERBLOCK_OFFSET_BYTES ? this.superblockSteps : data_ ? this.dataSteps : [];
    let step = steps.shift() ?? 'pass';
    if (step === 'hold') step = (await new Promise<boolean>((resolve) => (this.held = resolve))) ? 'pass' : 'fail';
    if (step === 'fail') throw new BlockError('EIO', 'scripted write failure', { device: this.name, offsetBytes });
    await super.write(offsetBytes, data, options);
    if (data_) this.dataWritesDone += 1;
  }
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !check(); i++) await sleep(1);
  assert.ok(check(), `waited for ${what}`);
}

async function scriptedNode(files: string[]) {
  const legs: ScriptedLeg[] = [];
  const a = await node(new InProcessLockManager(), files, 'A', { create: spec(), wrap: (opened) => opened.map((leg) => legs[legs.push(new ScriptedLeg(leg)) - 1]!) });
  return { ...a, legs };
}

async function rolesOnDisk(file: string): Promise<number[]> {
  const device = await FileDevice.open(file);
  try {
    return (await readMdSuperblock(device)).devRoles;
  } finally {
    await device.close();
  }
}

test('a write that misses the leg waits until a superblock records the failure', async () => {
  const files = legFiles(2, 4 * MIB);
  const a = await scriptedNode(files);
  const [leg0, leg1] = a.legs as [ScriptedLeg, ScriptedLeg];
  try {
    leg0.superblockSteps = ['fail'];
    leg1.superblockSteps = ['pass', 'hold']; // the round that records leg 0's failure waits
    const update = a.array.updateMetadata(() => {});
    await until(() => leg1.holding, 'the recording round');
    assert.is(a.array.status().picture, '[_U]', 'leg 0 is out at once');

    let acknowledged = false;
    const write = a.array.write(0, pattern(4096, 7), { fua: true }).then(() => (acknowledged = true));
    await until(() => leg1.dataWritesDone > 0, 'the copy on leg 1');
    await sleep(20);
    assert.is(acknowledged, false, 'not acknowledged while the superblocks still call leg 0 in sync');

    leg1.release(true);
    await update;
    await write;
    assert.ok(acknowledged);
    const roles = await rolesOnDisk(files[1]!);
    assert.is(roles[0], MD_ROLE_FAULTY, 'leg 1 says leg 0 failed');
  } finally {
    await a.array.close();
  }
});

test('a write that saw the leg fail is refused when no superblock took the failure', async () => {
  const files = legFiles(2, 4 * MIB);
  const a = await scriptedNode(files);
  const [leg0, leg1] = a.legs as [ScriptedLeg, ScriptedLeg];
  try {
    leg0.dataSteps = ['hold'];
    const write = a.array.write(0, pattern(4096, 8), { fua: true });
    await until(() => leg0.holding && leg1.dataWritesDone > 0, 'the copy on leg 1, and leg 0 holding its copy');

    // A metadata update meanwhile: every leg refuses it, so both are faulty and nothing records it.
    leg0.superblockSteps = ['fail'];
    leg1.superblockSteps = ['fail'];
    await expectCode(a.array.updateMetadata(() => {}), 'EIO');

    leg0.release(false); // the held copy fails: the leg it failed on is faulty already, unrecorded
    await expectCode(write, 'EIO');
    const roles = await rolesOnDisk(files[0]!);
    assert.not.ok(roles.includes(MD_ROLE_FAULTY), 'nothing recorded: the superblocks still call both legs in sync');
  } finally {
    await a.array.close().catch(() => {});
  }
});

test.after(removeTempDir);
test.run();
