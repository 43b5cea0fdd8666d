import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeCloneDevices, startTestServer, until, type TestServer } from './support/blockcore-server.ts';
import { attachNbd } from './support/nbd-attach.ts';

const metrics = suite('api: metrics');
let server: TestServer;

metrics.before.each(async () => {
  server = await startTestServer();
});
metrics.after.each(async () => {
  await server.dispose();
});

interface Family {
  type: string;
  help: string;
  samples: Array<{ labels: Record<string, string>; value: number }>;
}

/** A strict reader of the Prometheus text format 0.0.4: throws on any line it does not accept. */
function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const sample = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)/y;
  for (const line of text.slice(0, -1).split('\n')) {
    let match: RegExpExecArray | null;
    if ((match = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line))) {
      assert.not.ok(families.has(match[1]!), `one HELP for ${match[1]}`);
      families.set(match[1]!, { type: '', help: match[2]!, samples: [] });
    } else if ((match = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      const family = families.get(match[1]!);
      assert.ok(family && family.type === '' && family.samples.length === 0, `TYPE of ${match[1]} after HELP, before samples`);
      family!.type = match[2]!;
    } else if ((match = sample.exec(line))) {
      const family = families.get(match[1]!);
      assert.ok(family?.type, `sample ${match[1]} belongs to the family just declared`);
      assert.is([...families.keys()].at(-1), match[1], `samples of ${match[1]} are together`);
      const labels: Record<string, string> = {};
      if (match[2]) {
        label.lastIndex = 0;
        while (label.lastIndex < match[2].length) {
          const part = label.exec(match[2]);
          assert.ok(part, `labels of: ${line}`);
          labels[part![1]!] = part![2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        }
      }
      const value = Number(match[3]!.replace(/^\+Inf$/, 'Infinity').replace(/^-Inf$/, '-Infinity'));
      assert.ok(!Number.isNaN(value) || match[3] === 'NaN', `value of: ${line}`);
      if (family!.type === 'counter') assert.ok(match[1]!.endsWith('_total') && value >= 0, `counter ${match[1]}`);
      family!.samples.push({ labels, value });
    } else {
      assert.unreachable(`not Prometheus text: ${JSON.stringify(line)}`);
    }
  }
  return families;
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  return families.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

metrics('parses as Prometheus text and counts devices, clones, exports, NBD and HTTP', async () => {
  const empty = await server.call('GET', '/metrics');
  assert.is(empty.status, 200);
  assert.match(empty.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
  parsePrometheus(empty.text);

  await makeCloneDevices(server);
  await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 0 2 hydration_batch_size 64' });
  await until(async () => (await server.call('GET', '/v1/clones/c1')).json.hydrationComplete, 'hydrated');
  await server.call('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' });
  const client = await attachNbd(server.running.nbd, 'e1');
  await client.read(0, 8192);
  await server.call('GET', '/v1/clones/nope');
  const families = parsePrometheus((await server.call('GET', '/metrics')).text);
  await client.close();

  assert.is(value(families, 'blockcore_info'), 1);
  assert.is(value(families, 'blockcore_device_size_bytes', { device: 'dst.img' }), 1 << 20);
  assert.ok(value(families, 'blockcore_device_allocated_bytes', { device: 'src.img' })! > 0);
  assert.is(value(families, 'blockcore_clone_hydrated_bytes', { clone: 'c1' }), 1 << 20);
  assert.is(value(families, 'blockcore_clone_size_bytes', { clone: 'c1' }), 1 << 20);
  assert.is(value(families, 'blockcore_clone_regions', { clone: 'c1' }), 256);
  assert.ok(value(families, 'blockcore_clone_commits_total', { clone: 'c1' })! >= 1);
  assert.is(value(families, 'blockcore_clone_mode', { clone: 'c1', mode: 'rw' }), 1);
  assert.is(value(families, 'blockcore_clone_mode', { clone: 'c1', mode: 'ro' }), 0);
  assert.is(value(families, 'blockcore_export_reads_total', { export: 'e1', device: 'clone:c1' }), 1);
  assert.is(value(families, 'blockcore_export_read_bytes_total', { export: 'e1' }), 8192);
  assert.is(value(families, 'blockcore_export_clients', { export: 'e1' }), 1);
  assert.is(value(families, 'blockcore_nbd_connections_total'), 1);
  assert.ok(value(families, 'blockcore_nbd_requests_total')! >= 1);
  assert.is(value(families, 'blockcore_nbd_read_bytes_total'), 8192);
  assert.ok(value(families, 'blockcore_http_requests_total', { code: '201' })! >= 3);
  assert.is(value(families, 'blockcore_http_requests_total', { code: '404' }), 1);
  assert.is(value(families, 'blockcore_events_total', { type: 'clone.created' }), 1);
  assert.is(value(families, 'blockcore_events_total', { type: 'clone.hydration-complete' }), 1);
});

metrics('label values are escaped', async () => {
  const { PromText } = await import('../server/prometheus.ts');
  const text = new PromText().family('x_total', 'counter', 'help with \\ and\nnewline', [{ labels: { a: 'q"b\\s\nn' }, value: 2 }]).toString();
  const families = parsePrometheus(text);
  assert.equal(families.get('x_total')!.samples[0], { labels: { a: 'q"b\\s\nn' }, value: 2 });
});

metrics.run();
