/**
 * The README's library example: a sparse file device, a region bitmap, and the WASM kernels.
 *   npx tsx examples/quickstart.ts [dir]      (or: bun examples/quickstart.ts, deno run -A ...)
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegionBitmap } from '../runtime/bitmap.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { defaultKernels } from '../runtime/wasm/kernels.ts';

export async function quickstart(dir = mkdtempSync(join(tmpdir(), 'blockcore-'))): Promise<string[]> {
  const log: string[] = [];
  // A 1 TiB sparse file: costs no disk until written.
  const disk = await FileDevice.open(join(dir, 'disk.img'), { create: { sizeBytes: 2 ** 40 } });
  const block = new Uint8Array(4096).fill(0xab);
  await disk.write(2 ** 40 - 4096, block, { fua: true }); // durable when it resolves
  const back = new Uint8Array(4096);
  await disk.read(2 ** 40 - 4096, back);
  log.push(`read back ${back[0]?.toString(16)} at the last block`);
  log.push(`discard: ${await disk.discard(2 ** 40 - 4096, 4096)}`); // 'punched' where the host can
  await disk.close();

  // One bit per 4 KiB region of that disk: 2^28 regions, 32 MiB of WASM memory.
  const regions = await RegionBitmap.create(2 ** 28);
  regions.setRange(1000, 1064);
  log.push(`first set region ${regions.nextSet(0)}, ${regions.countSet()} set`);
  log.push(`next run of zeros from 1000: ${JSON.stringify(regions.nextRun(1000, false, 256))}`);
  regions.release(); // gives the 32 MiB back

  const kernels = await defaultKernels();
  log.push(`crc32c("123456789") = ${kernels.crc32c(new TextEncoder().encode('123456789')).toString(16)}`);
  return log;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await quickstart(process.argv[2])) console.log(line);
}
