/**
 * One folder of leg files seen by several services, each through its own data directory, as two
 * machines see one SAN: the folder is bind-mounted into every data directory as `shared/` (no
 * symlink, so no escape from a data directory is needed). Bind mounts need root (the test command
 * runs as root where it installs its tools); elsewhere the tests say so and fail.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { readMdSuperblock } from '../../runtime/cluster/leg-metadata.ts';

export interface SharedLegs {
  root: string;
  /** The real folder. */
  folder: string;
  /** Each node's data directory, with the folder mounted at `shared/`. */
  dataDirs: string[];
  /** Leg names as the services take them (`shared/leg0.img` ...). */
  legs: string[];
  /** The data areas of the legs (after each one's md data offset), byte for byte: all, or those numbered. */
  dataAreas(legs?: number[]): Promise<Buffer[]>;
  /** Every leg file zeroed (mdadm --zero-superblock and more): no service may hold one. */
  wipe(): void;
  unmount(): void;
}

export function makeSharedLegs(nodes: number, legCount: number, legBytes: number): SharedLegs {
  if (process.getuid?.() !== 0) throw new Error('sharing leg files between data directories needs a bind mount, which needs root: run the tests as root');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-shared-'));
  const folder = path.join(root, 'san');
  fs.mkdirSync(folder);
  const legs: string[] = [];
  for (let i = 0; i < legCount; i++) {
    const file = path.join(folder, `leg${i}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, legBytes);
    legs.push(`shared/leg${i}.img`);
  }
  const dataDirs: string[] = [];
  const mounted: string[] = [];
  const unmount = () => {
    for (const point of mounted.splice(0)) spawnSync('umount', ['-l', point], { stdio: 'ignore' });
  };
  try {
    for (let i = 0; i < nodes; i++) {
      const dataDir = path.join(root, `node${i}`);
      const point = path.join(dataDir, 'shared');
      fs.mkdirSync(point, { recursive: true });
      const result = spawnSync('mount', ['--bind', folder, point], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`mount --bind ${folder} ${point} failed: ${result.stderr}`);
      mounted.push(point);
      dataDirs.push(dataDir);
    }
  } catch (error) {
    unmount();
    throw error;
  }
  return {
    root, folder, dataDirs, legs,
    async dataAreas(numbers = [...Array(legCount).keys()]) {
      const areas: Buffer[] = [];
      for (const i of numbers) {
        const file = path.join(folder, `leg${i}.img`);
        const device = await FileDevice.open(file);
        const offset = (await readMdSuperblock(device)).dataOffsetSectors * 512;
        await device.close();
        areas.push(fs.readFileSync(file).subarray(offset));
      }
      return areas;
    },
    wipe() {
      for (let i = 0; i < legCount; i++) {
        const file = path.join(folder, `leg${i}.img`);
        fs.truncateSync(file, 0);
        fs.truncateSync(file, legBytes);
      }
    },
    unmount() {
      unmount();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
