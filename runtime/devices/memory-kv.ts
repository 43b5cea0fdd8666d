/**
 * A KvStorage in memory, with a Durable Object's value semantics (a put stores a copy, a get hands
 * out a copy): KvDevice's tests, and a host that has nothing better. Nothing survives the process.
 */
import type { KvStorage } from './kv-device.ts';

function copyOf(value: unknown): unknown {
  return value instanceof Uint8Array ? value.slice() : value;
}

export class MemoryKv implements KvStorage {
  readonly entries = new Map<string, unknown>();

  async get(keys: string[]): Promise<Map<string, unknown>> {
    const found = new Map<string, unknown>();
    for (const key of keys) if (this.entries.has(key)) found.set(key, copyOf(this.entries.get(key)));
    return found;
  }

  async put(entries: Record<string, unknown>): Promise<void> {
    for (const [key, value] of Object.entries(entries)) this.entries.set(key, copyOf(value));
  }

  async delete(keys: string[]): Promise<number> {
    let count = 0;
    for (const key of keys) if (this.entries.delete(key)) count++;
    return count;
  }

  async sync(): Promise<void> {}

  async listKeys(prefix: string, startAfter: string | null, limit: number): Promise<string[]> {
    return [...this.entries.keys()].filter((key) => key.startsWith(prefix) && (startAfter === null || key > startAfter)).sort().slice(0, limit);
  }

}
