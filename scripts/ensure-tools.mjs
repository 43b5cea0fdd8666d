// Debian tools that tests and benchmarks drive as real peers. `ensureTools(names)` checks the
// commands; when some are missing it installs their packages with apt-get if we are root, or
// stops with the exact install line. Used by scripts/test.mjs and bench/run.mjs.
import { spawnSync } from 'node:child_process';

/** Command → Debian package (or packages). */
export const TOOL_PACKAGES = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  nbdkit: 'nbdkit',
  fio: 'fio',
  wrk: 'wrk',
  script: 'bsdutils',
  mdadm: 'mdadm',
  losetup: 'mount',
  // The dm-log-userspace layout judge is C (test/fixtures/ulog/ulog-judge.c): the compiler and libc headers.
  cc: ['gcc', 'libc6-dev'],
  // The distributed lock manager's store (runtime/locks/etcd/): tests start their own etcd.
  etcd: 'etcd-server',
  // Test certificates for etcd over TLS (test/support/certs.ts).
  openssl: 'openssl',
  // A client of the HTTP data plane (test/http-data.test.ts).
  curl: 'curl',
  // The kernel's NBD client (test/nbd-kernel.test.ts), only where the nbd module is loaded.
  'nbd-client': 'nbd-client',
};

function has(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

export function ensureTools(commands) {
  const missing = commands.filter((command) => !has(command));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.flatMap((command) => TOOL_PACKAGES[command]))];
  const line = `apt-get install -y ${packages.join(' ')}`;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    console.error(`missing ${missing.join(', ')}: install with\n  sudo apt-get update && sudo ${line}`);
    process.exit(1);
  }
  console.log(`installing ${packages.join(' ')} (missing ${missing.join(', ')})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...packages]]) {
    const result = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (result.status !== 0) {
      console.error(`apt-get ${args.join(' ')} failed; install by hand with\n  ${line}`);
      process.exit(1);
    }
  }
  const still = commands.filter((command) => !has(command));
  if (still.length) {
    console.error(`still missing after install: ${still.join(', ')}`);
    process.exit(1);
  }
}
