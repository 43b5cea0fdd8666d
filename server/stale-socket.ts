/**
 * A Unix socket left behind by a service that was killed (SIGKILL, power loss) makes the next
 * listen fail with EADDRINUSE. Before listening on a path: if a socket file is there and nobody
 * accepts connections on it, it is stale and is removed; a live one (another service) is left
 * alone, and so is anything that is not a socket.
 */
import fs from 'node:fs';
import net from 'node:net';

export async function removeStaleSocket(path: string): Promise<void> {
  let stats: fs.Stats;
  try {
    stats = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!stats.isSocket()) return;
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!live) fs.rmSync(path, { force: true });
}
