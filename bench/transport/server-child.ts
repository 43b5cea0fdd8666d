/**
 * The server side of bench/transport.ts, run as a child process under the same runtime as the
 * benchmark: RTRS servers with the RNBD server as handler, serving one file (argv[2]) as device
 * `disk` through a FileDevice (its defaults: synchronous pread/pwrite, large transfers through the
 * thread pool; opened read-only for 'ro' opens). Three RTRS servers, each on 127.0.0.1 and
 * 127.0.0.2 (ports the kernel picks), differing in `alwaysInvalidate` and `ioThreads`:
 *   invalidateOn   the default (and the kernel's): chunk keys rotate after every IO
 *   invalidateOff  keys rotate only for sessions that ask
 *   ioThreads      as invalidateOn, its IO connections served by BENCH_IO_THREADS worker threads
 *                  (where the runtime can hand connections to threads: runtime/transport/rtrs-io-threads.ts)
 * Prints one line, `listening {"invalidateOn": [addr, addr], "invalidateOff": [...]}`, then serves
 * until SIGTERM (the benchmark stops it by PID) or until its stdin closes (the benchmark died).
 */
import fs from 'node:fs';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { RnbdServer, type DeviceResolver } from '../../runtime/transport/rnbd-server.ts';
import { RtrsServer } from '../../runtime/transport/rtrs-server.ts';
import { defaultKernels } from '../../runtime/wasm/kernels.ts';
import { BENCH_IO_THREADS, DEVICE_NAME, LISTEN_HOSTS, quiet as log, type ServerVariant } from './ours.ts';

const path = process.argv[2];
if (path === undefined || !fs.existsSync(path)) throw new Error(`usage: server-child.ts FILE (got ${String(path)})`);
{
  const kernels = await defaultKernels();
  const crc32c = (bytes: Uint8Array, seed = 0): number => kernels.crc32c(bytes, seed);
  const resolve: DeviceResolver = async (name, access) => {
    if (name !== DEVICE_NAME) throw new Error(`no device ${name}`);
    const device = await FileDevice.open(path, { readOnly: access === 'ro' });
    return { device, release: () => device.close() };
  };
  const addresses: Record<ServerVariant, string[]> = { invalidateOn: [], invalidateOff: [], ioThreads: [] };
  for (const variant of Object.keys(addresses) as ServerVariant[]) {
    const server = new RtrsServer({
      handler: new RnbdServer(resolve, { log }), crc32c, alwaysInvalidate: variant !== 'invalidateOff', ioThreads: variant === 'ioThreads' ? BENCH_IO_THREADS : 0, log,
    });
    for (const host of LISTEN_HOSTS) addresses[variant].push(await server.listen(host, 0));
  }
  // An orderly exit on SIGTERM (what `--cpu-prof` needs to write the server's profile).
  process.on('SIGTERM', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  console.log(`listening ${JSON.stringify(addresses)}`);
}
