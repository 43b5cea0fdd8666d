/**
 * blockcore as a Worker (module syntax) for workerd or Cloudflare Workers: every request goes to
 * one Durable Object, which holds the edge host (edge-host.ts): devices in the object's storage,
 * clones hydrating from HTTP images into them, the same Hono API as the service (what needs files
 * or sockets answers 501). The object's storage persists across restarts of workerd (its
 * `durableObjectStorage` directory) and the clones come back with it.
 *
 * Bindings: BLOCKCORE, the Durable Object namespace of class BlockcoreObject (SQLite-backed:
 * `enableSql`); BLOCKCORE_TOKEN, text: every route but /v1/health wants it as a bearer token.
 * Without one the Worker answers every route 503 saying so, unless BLOCKCORE_ALLOW_NO_TOKEN is "1"
 * (what `npm run worker` sets when it listens on loopback only): a deployed Worker is public. Built by
 * scripts/build-worker.mjs; the kernel modules are imported as .wasm modules (workerd compiles no
 * WebAssembly from bytes at run time).
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import { provideKernelModule } from '../../runtime/wasm/load.ts';
import scalarKernels from '../../runtime/wasm/blockcore.scalar.wasm';
import simdKernels from '../../runtime/wasm/blockcore.simd.wasm';
import { durableObjectKv, type DurableObjectStorageLike } from './durable-object-storage.ts';
import { EdgeHost } from './edge-host.ts';
import packageJson from '../../package.json' with { type: 'json' };

provideKernelModule('simd', simdKernels);
provideKernelModule('scalar', scalarKernels);

interface DurableObjectState {
  storage: DurableObjectStorageLike;
  blockConcurrencyWhile<T>(work: () => Promise<T>): Promise<T>;
}

interface DurableObjectStub {
  fetch(request: Request): Promise<Response>;
}

interface Env {
  BLOCKCORE: { idFromName(name: string): unknown; get(id: unknown): DurableObjectStub };
  BLOCKCORE_TOKEN?: string;
  BLOCKCORE_ALLOW_NO_TOKEN?: string;
}

/** The one object that holds the host: every request is served there. */
const OBJECT_NAME = 'blockcore';

export class BlockcoreObject {
  private app: OpenAPIHono | null = null;
  private failure: string | null = null;

  constructor(state: DurableObjectState, env: Env) {
    void state.blockConcurrencyWhile(async () => {
      try {
        const token = env.BLOCKCORE_TOKEN === undefined || env.BLOCKCORE_TOKEN === '' ? null : env.BLOCKCORE_TOKEN;
        if (token === null && env.BLOCKCORE_ALLOW_NO_TOKEN !== '1') {
          this.failure = 'no BLOCKCORE_TOKEN is set (set BLOCKCORE_ALLOW_NO_TOKEN to "1" to serve without one, on loopback only)';
          return;
        }
        const host = await EdgeHost.open({ storage: durableObjectKv(state.storage), version: packageJson.version, runtime: 'workerd' });
        this.app = host.app(token);
      } catch (error) {
        this.failure = (error as Error).message ?? String(error);
        console.error(`blockcore: the edge host did not open: ${this.failure}`);
      }
    });
  }

  async fetch(request: Request): Promise<Response> {
    if (this.app === null) {
      return Response.json({ error: `blockcore is not serving: ${this.failure ?? 'still opening'}`, code: 'EAGAIN' }, { status: 503 });
    }
    return this.app.fetch(request);
  }
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return env.BLOCKCORE.get(env.BLOCKCORE.idFromName(OBJECT_NAME)).fetch(request);
  },
};
