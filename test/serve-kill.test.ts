/**
 * The data directory's lock, tried as a user would: the service (bin/blockcore.mjs serve under the
 * runtime running the tests, a real process) is killed with SIGKILL and started again at once on
 * the same data directory, 20 times in a row; every other killed service was started by a parent
 * that does not reap it, so it is still a zombie (dead, its pid taken) when the next one starts,
 * which a lock that trusts pid liveness refuses. Each start must come up with the export made at
 * the first one. Then a second service on the directory of a live one is refused, naming its pid.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { callApi } from './support/blockcore-server.ts';
import { killServeChildren, launchers, servicePid, spawnServe, startServe, unreapedLauncher, type ServeChild } from './support/serve-process.ts';

const RESTARTS = 20;
const test = suite('serve: kill -9 and start again at once');
let root = '';

test.before.each(() => {
  root = mkdtempSync(join(tmpdir(), 'blockcore-serve-kill-'));
});
test.after.each(() => {
  killServeChildren();
  rmSync(root, { recursive: true, force: true });
});

/**
 * The state letter of /proc/<pid>/stat ('Z' for a zombie), or null when there is no such process.
 * Read by `cat`: Deno lets only --allow-all read /proc, and the tests run with named permissions.
 */
function processState(pid: number): string | null {
  try {
    const stat = execFileSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

async function exportNames(served: ServeChild): Promise<string[]> {
  const answer = await callApi(served.url, 'GET', '/v1/exports');
  assert.is(answer.status, 200, answer.text);
  return (answer.json as { exports: Array<{ name: string }> }).exports.map((entry) => entry.name);
}

// The runtime's own start (npm start execs the same `node bin/blockcore.mjs serve`).
const launcher = launchers().filter((candidate) => candidate.name !== 'npm start').at(-1)!;
const unreaped = unreapedLauncher(launcher);

test(`${launcher.name}: killed with SIGKILL and started again at once, ${RESTARTS} times (every other one a zombie still); a second live service is refused`, async () => {
  const dataDir = join(root, 'data');
  const args = ['--data', dataDir, '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0'];
  let current = await startServe(launcher, args, { cwd: root });
  let created = await callApi(current.url, 'POST', '/v1/devices', { name: 'disk.img', sizeBytes: 1024 * 1024 });
  assert.is(created.status, 201, created.text);
  created = await callApi(current.url, 'POST', '/v1/exports', { name: 'e1', device: 'disk.img' });
  assert.is(created.status, 201, created.text);
  let zombiesSeen = 0;
  for (let round = 1; round <= RESTARTS; round++) {
    const killedPid = servicePid(current);
    const killedUnreaped = current.launcher === unreaped.name;
    process.kill(killedPid, 'SIGKILL');
    // At once: no wait for the exit, the reaping or the lock.
    const next = await startServe(round % 2 === 1 ? unreaped : launcher, args, { cwd: root });
    if (killedUnreaped) {
      assert.is(processState(killedPid), 'Z', `round ${round}: the killed service ${killedPid} is a zombie while the next one starts`);
      zombiesSeen++;
    }
    assert.equal(await exportNames(next), ['e1'], `round ${round}: the restarted service has its export`);
    current = next;
  }
  assert.is(zombiesSeen, RESTARTS / 2);

  const livePid = servicePid(current);
  const second = spawnServe(launcher, args, { cwd: root });
  const exit = await second.exited;
  assert.equal(exit, { code: 1, signal: null }, second.stderr());
  assert.match(second.stderr(), new RegExp(`data directory ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by process ${livePid} `));
  assert.equal(await exportNames(current), ['e1'], 'the live service goes on');
  process.kill(livePid, 'SIGTERM');
  if (current.launcher === launcher.name) assert.equal(await current.exited, { code: 0, signal: null });
});

test.run();
