/**
 * A Durable Object's storage (workerd's `ctx.storage`) as the KvStorage KvDevice and the edge host
 * use. Only the calls made here are typed; with `enableSql` the object's storage is SQLite and
 * these key-value calls run on it. A put resolves once the write is queued; sync() (where the
 * runtime has it) once every earlier write is on disk, which is what a flush and FUA wait for.
 */
import type { KvStorage } from '../../runtime/devices/kv-device.ts';

export interface DurableObjectStorageLike {
  get(keys: string[]): Promise<Map<string, unknown>>;
  put(entries: Record<string, unknown>): Promise<void>;
  delete(keys: string[]): Promise<number>;
  list(options: { prefix: string; startAfter?: string; limit: number }): Promise<Map<string, unknown>>;
  sync?(): Promise<void>;
}

export function durableObjectKv(storage: DurableObjectStorageLike): KvStorage {
  return {
    get: (keys) => storage.get(keys),
    put: (entries) => storage.put(entries),
    delete: (keys) => storage.delete(keys),
    sync: async () => {
      if (typeof storage.sync === 'function') await storage.sync();
    },
    listKeys: async (prefix, startAfter, limit) => [...(await storage.list({ prefix, ...(startAfter === null ? {} : { startAfter }), limit })).keys()],
  };
}
