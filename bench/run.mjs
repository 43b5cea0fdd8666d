#!/usr/bin/env node
// `npm run bench -- <name> [--runtimes node,bun,deno]`: runs bench/<name>.ts under each runtime in
// turn, streaming its output, then repeats every `ratio <what>: <ours/peer>` line at the end, so the
// run ends with the ratios (above 1 means ours is better), and every `result <what>: <value>` line
// (a measure with no peer to divide by), tagged with its runtime. Peer and ours are measured in the
// same process by each benchmark, interleaved, and compared by medians.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ensureTools } from '../scripts/ensure-tools.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const runtimesFlag = args.indexOf('--runtimes');
const runtimes = (runtimesFlag >= 0 ? args.splice(runtimesFlag, 2)[1] : 'node,bun,deno').split(',');
const [name, ...rest] = args;
const available = readdirSync(new URL('.', import.meta.url)).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3));

if (!name || !available.includes(name)) {
  console.error(`usage: npm run bench -- <name> [--runtimes node,bun,deno]; benchmarks: ${available.join(', ')}`);
  process.exit(2);
}

// Peers each benchmark measures against.
const PEERS = { api: ['wrk'], clone: ['qemu-img'], serve: ['nbdkit', 'nbdcopy', 'fio'], transport: ['nbdkit', 'nbdcopy', 'nbdinfo', 'fio'] };
ensureTools(PEERS[name] ?? []);

const DENO_PERMISSIONS = ['--allow-read', '--allow-write', '--allow-env', '--allow-net', '--allow-ffi', '--allow-run', '--allow-sys'];
const file = `bench/${name}.ts`;
const commands = {
  node: [process.execPath, ['--import', 'tsx', file, ...rest]],
  bun: [`${root}node_modules/.bin/bun`, [file, ...rest]],
  deno: [`${root}node_modules/.bin/deno`, ['run', ...DENO_PERMISSIONS, file, ...rest]],
};

const ratios = [];
const results = [];
let failures = 0;
for (const runtime of runtimes) {
  const entry = commands[runtime];
  if (!entry) { console.error(`unknown runtime ${runtime}`); process.exit(2); }
  if (entry[0] !== process.execPath && !existsSync(entry[0])) { console.error(`${runtime} missing: run npm install`); process.exit(2); }
  console.log(`\n== ${name} on ${runtime}`);
  const code = await new Promise((resolve) => {
    const child = spawn(entry[0], entry[1], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let pending = '';
    const collect = (line) => {
      if (line.startsWith('ratio ')) ratios.push(line);
      else if (line.startsWith('result ')) results.push(`${line} [${runtime}]`);
    };
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) collect(line);
    });
    child.on('close', (exitCode) => {
      collect(pending);
      resolve(exitCode ?? 1);
    });
  });
  if (code !== 0) { failures++; console.error(`${name} failed on ${runtime} (exit ${code})`); }
}

console.log(`\n== ratios (ours/peer, above 1 = ours better)`);
for (const line of ratios) console.log(line);
if (results.length > 0) {
  console.log(`\n== results (no peer)`);
  for (const line of results) console.log(line);
}
process.exit(failures ? 1 : 0);
