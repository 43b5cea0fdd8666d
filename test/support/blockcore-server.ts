/**
 * A blockcore service for API tests, started in this process on free ports (HTTP on 127.0.0.1:0,
 * NBD on 127.0.0.1:0) over a fresh temporary data directory, with a `call` helper that returns the
 * status, the headers and the parsed JSON of an answer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBlockcore, type Running } from '../../server/main.ts';
import { Prng } from '../../runtime/prng.ts';
import * as assert from 'uvu/assert';

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

export interface TestServer {
  root: string;
  dataDir: string;
  url: string;
  /** What the service logged. */
  logs: string[];
  running: Running;
  /** `body`: an object is sent as JSON, a string or bytes as they are. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
  stop(): Promise<void>;
  /** Stops and starts again over the same data directory (new ports). */
  restart(): Promise<void>;
  /** Stops and removes the temporary directory. */
  dispose(): Promise<void>;
}

export interface TestServerOptions {
  token?: string | null;
  /** Reuse this root (its `data` subdirectory) instead of a new temporary one. */
  root?: string;
  /** Engines' serve flags (`--rtrs`: '127.0.0.1:0,127.0.0.2:0' to listen for RTRS); none by default. */
  settings?: Record<string, string>;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const root = options.root ?? mkdtempSync(join(tmpdir(), 'blockcore-api-'));
  const dataDir = join(root, 'data');
  const token = options.token ?? null;
  const logs: string[] = [];
  const settings = options.settings ?? {};
  const start = () => startBlockcore({ dataDir, http: { host: '127.0.0.1', port: 0 }, nbd: { host: '127.0.0.1', port: 0 }, token, settings }, { log: (line) => logs.push(line) });
  let running = await start();
  let stopped = false;
  const server: TestServer = {
    root,
    dataDir,
    logs,
    get url() {
      return `http://127.0.0.1:${running.http.port}`;
    },
    get running() {
      return running;
    },
    call(method, path, body, headers = {}) {
      return callApi(server.url, method, path, body, { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await running.stop();
    },
    async restart() {
      await server.stop();
      running = await start();
      stopped = false;
    },
    async dispose() {
      await server.stop();
      rmSync(root, { recursive: true, force: true });
    },
  } as TestServer;
  return server;
}

/** Writes a device file of `sizeBytes` seeded random bytes into the data directory. */
/** One API call: a JSON body (or raw string/bytes) out, the status, headers, text and parsed JSON back. */
export async function callApi(baseUrl: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
  const response = await fetch(`${baseUrl}${path}`, init);
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

export function writeImage(dataDir: string, name: string, sizeBytes: number, seed = 1): Uint8Array {
  const bytes = new Prng(seed).fill(new Uint8Array(sizeBytes));
  writeFileSync(join(dataDir, name), bytes);
  return bytes;
}

/** Creates src.img (random), dst.img and meta through the API, ready for `clone meta dst.img src.img 8`. */
export async function makeCloneDevices(server: TestServer, sizeBytes = 1 << 20, prefix = ''): Promise<Uint8Array> {
  for (const [name, size] of [[`${prefix}dst.img`, sizeBytes], [`${prefix}meta`, 64 * 1024]] as const) {
    const answer = await server.call('POST', '/v1/devices', { name, sizeBytes: size });
    if (answer.status !== 201) throw new Error(`creating ${name}: ${answer.text}`);
  }
  return writeImage(server.dataDir, `${prefix}src.img`, sizeBytes);
}

export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Two services for transport tests: `a` serves RTRS on 127.0.0.1 and 127.0.0.2 (free ports), `b` is the client side. */
export interface ServicePair {
  readonly a: TestServer;
  readonly b: TestServer;
}

/**
 * Starts a fresh ServicePair before each test of `tests` and disposes it after (killing tools the
 * test ran first); the returned object's `a` and `b` are the current test's services.
 */
export function useServicePair(tests: { before: { each(hook: () => Promise<void>): void }; after: { each(hook: () => Promise<void>): void } }, afterEach: () => void = () => {}): ServicePair {
  const current: { a?: TestServer; b?: TestServer } = {};
  tests.before.each(async () => {
    // Both serve their RTRS IO connections on two IO threads (where the runtime can): A those it
    // accepts (`ioThreads` in GET /v1/transport/server), B those of the sessions it opens.
    current.a = await startTestServer({ settings: { '--rtrs': '127.0.0.1:0,127.0.0.2:0', '--rtrs-threads': '2' } });
    current.b = await startTestServer({ settings: { '--rtrs-threads': '2' } });
  });
  tests.after.each(async () => {
    afterEach();
    await current.b?.dispose();
    await current.a?.dispose();
  });
  return {
    get a() {
      return current.a!;
    },
    get b() {
      return current.b!;
    },
  };
}

/** An API refusal: `status`, the JSON `{error, code}` with `code`, and the `field` it names when given. */
export function expectError(answer: Answer, status: number, code: string, field?: string): void {
  assert.is(answer.status, status, answer.text);
  assert.is(answer.json.code, code, answer.text);
  assert.type(answer.json.error, 'string', answer.text);
  if (field !== undefined) assert.is(answer.json.field, field, answer.json.error);
}
