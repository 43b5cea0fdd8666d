/**
 * blockcore as a Worker (module syntax) for workerd or Cloudflare Workers: every request goes to
 * one Durable Object, which holds the edge host (edge-host.ts): devices in the object's storage,
 * clones hydrating from HTTP images into them, the same Hono API as the service (what needs files
 * or sockets answers 501). The object's storage persists across restarts of workerd (its
 * `durableObjectStorage` directory) and the clones come back with it.
 *
 * Bindings: BLOCKCORE, the Durable Object namespace of class BlockcoreObject (SQLite-backed:
 * `enableSql`); BLOCKCORE_TOKEN, optional text: when set every route but /v1/health wants it as a
 * bearer token (set it whenever the Worker is reachable from outside). Built by
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
}

/** The one object that holds the host: every request is served there. */
const OBJECT_NAME = 'blockcore';

export class BlockcoreObject {
  private app: OpenAPIHono | null = null;
  private failure: string | null = null;

  constructor(state: DurableObjectState, env: Env) {
    void state.blockConcurrencyWhile(async () => {
      try {
        const host = await EdgeHost.open({ storage: durableObjectKv(state.storage), version: packageJson.version, runtime: 'workerd' });
        this.app = host.app(env.BLOCKCORE_TOKEN === undefined || env.BLOCKCORE_TOKEN === '' ? null : env.BLOCKCORE_TOKEN);
      } catch (error) {
        this.failure = (error as Error).message ?? String(error);
        console.error(`blockcore: the edge host did not open: ${this.failure}`);
      }
    });
  }

  async fetch(request: Request): Promise<Response> {
    if (this.app === null) {
      return Response.json({ error: `the edge host did not open: ${this.failure ?? 'still opening'}`, code: 'EIO' }, { status: 500 });
    }
    return this.app.fetch(request);
  }
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return env.BLOCKCORE.get(env.BLOCKCORE.idFromName(OBJECT_NAME)).fetch(request);
  },
};
