import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { openRemote, pathsTo, seqWrite, seqRead } from './bench/transport/ours.ts';
const MiB = 1 << 20;
const file = '/tmp/prof-disk.img', src = '/tmp/prof-src.img';
const size = 512 * MiB;
for (const f of [file, src]) { const fd = fs.openSync(f, 'w'); const b = new Uint8Array(8 * MiB).fill(f === file ? 1 : 2); for (let o = 0; o < size; o += b.length) fs.writeSync(fd, b, 0, b.length, o); fs.closeSync(fd); }
const runtime = process.argv[2]!;
const args = runtime === 'bun' ? ['--cpu-prof', '--cpu-prof-md', '--cpu-prof-dir=/tmp/prof', 'bench/transport/server-child.ts', file] : ['--import', 'tsx', '--cpu-prof', '--cpu-prof-dir=/tmp/prof', 'bench/transport/server-child.ts', file];
const child = spawn(runtime === 'bun' ? 'node_modules/.bin/bun' : process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
const addrs = await new Promise<any>((res) => { let p = ''; child.stdout!.on('data', (d) => { p += d; const m = /^listening (.*)$/m.exec(p); if (m) res(JSON.parse(m[1]!)); }); });
const srcFd = fs.openSync(src, 'r');
for (let i = 0; i < 3; i++) {
  const r = await openRemote(pathsTo(addrs.invalidateOn.slice(0, 1)), 'rw');
  const t = performance.now();
  if (process.argv[3] === 'read') await seqRead(r.device, MiB, 16); else await seqWrite(r.device, srcFd, MiB, 16);
  console.log(((size / MiB) / ((performance.now() - t) / 1000)).toFixed(0), 'MiB/s');
  await r.close();
}
child.kill('SIGTERM');
await new Promise((r) => child.on('close', r));
