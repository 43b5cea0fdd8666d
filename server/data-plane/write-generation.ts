/**
 * The version of a device's content as the data plane's entity tag (ETag) says it. A tag is
 *   "<epoch>.<incarnation>.<writes>"
 *   epoch          random per process: a tag from before a restart (or from another service) never
 *                  matches, since nobody can prove nothing changed meanwhile;
 *   incarnation    counts the changes of who holds the device (a clone took it as its destination
 *                  or let it go, an export was added...) and its creation and deletion: a device
 *                  that was recreated, or that an engine held (and wrote) meanwhile, never keeps its
 *                  tag; a change elsewhere (another device, another clone) leaves it alone, so a
 *                  clone hydrating from this device over HTTP is not disturbed by it;
 *   writes         the writes (and discards) through this host to the device, counted when each
 *                  begins and again when it ends; while any is in flight the content has no tag.
 * So a reader that saw tag T and then reads tag T again read one version, and an If-Match writer
 * whose tag matches knows nobody wrote since it read. Every path that writes a device the data
 * plane serves counts here: HTTP PUTs and the NBD exports' views (MeteredDevice). Devices are keyed
 * by what they are, not by how they were named: a file by its real path (two names of one file
 * share a version), an engine device by the device object itself (a clone deleted and made again
 * under the same name is another device).
 *
 * Writes the host does not see have no part in the tag: the other nodes of a clustered array over
 * shared legs, or a process writing the device file directly.
 */
export class WriteGeneration {
  /**
   * [writes, in flight], in memory an NBD thread (server/nbd/threads.ts) shares: a write served
   * there counts here as one of ours. Writers count with Atomics; a reader takes the writes count
   * on both sides of the in-flight count and retries when they differ (begin counts the write
   * before it counts in flight, end the other way round), so it never sees "none in flight" for a
   * write that began.
   */
  private readonly words: Int32Array;
  private incarnation = 0;

  constructor(private readonly epoch: string, shared: SharedArrayBuffer | null = null) {
    this.words = new Int32Array(shared ?? newSharedMemory(2 * Int32Array.BYTES_PER_ELEMENT));
  }

  /** The memory the counts live in (another thread's WriteGeneration.over counts in it too). */
  get memory(): ArrayBufferLike {
    return this.words.buffer;
  }

  /** A counter over another thread's counts (it only begins and ends writes: its tags mean nothing). */
  static over(memory: SharedArrayBuffer): WriteGeneration {
    return new WriteGeneration('', memory);
  }

  begin(): void {
    Atomics.add(this.words, WRITES, 1);
    Atomics.add(this.words, IN_FLIGHT, 1);
  }

  end(): void {
    Atomics.sub(this.words, IN_FLIGHT, 1);
    Atomics.add(this.words, WRITES, 1);
  }

  /** Its holders changed, or it was made or deleted: no earlier tag matches any more. */
  reincarnate(): void {
    this.incarnation++;
  }

  /** The count of writes begun and ended, or null while one is in flight: the content's own changes. */
  writeMark(): number | null {
    for (;;) {
      const writes = Atomics.load(this.words, WRITES);
      const inFlight = Atomics.load(this.words, IN_FLIGHT);
      if (Atomics.load(this.words, WRITES) !== writes) continue;
      return inFlight > 0 ? null : writes >>> 0;
    }
  }

  /** The strong entity tag of the content now, or null while a write is in flight. */
  etag(): string | null {
    const writes = this.writeMark();
    return writes === null ? null : `"${this.epoch}.${this.incarnation.toString(36)}.${writes.toString(36)}"`;
  }
}

const WRITES = 0;
const IN_FLIGHT = 1;

/** Shared memory where the host has it (workerd may not: one thread there, plain memory does). */
function newSharedMemory(bytes: number): ArrayBufferLike {
  return typeof SharedArrayBuffer === 'function' ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
}

/** The WriteGenerations of a host's devices: device files by real path, engine devices by object. */
export class WriteGenerations {
  private readonly byKey = new Map<string, WriteGeneration>();
  private readonly byDevice = new WeakMap<object, WriteGeneration>();
  /** Random per process: tags of an earlier process (or another service) never match ours. */
  private readonly epoch = Array.from(crypto.getRandomValues(new Uint8Array(6)), (byte) => byte.toString(16).padStart(2, '0')).join('');

  /** The version of the device file (or edge store device) held under `holdKey`. */
  ofFile(holdKey: string): WriteGeneration {
    let generation = this.byKey.get(holdKey);
    if (generation === undefined) this.byKey.set(holdKey, (generation = new WriteGeneration(this.epoch)));
    return generation;
  }

  /** The version of an engine's device (`clone:c1` as deviceOf gives it). */
  ofDevice(device: object): WriteGeneration {
    let generation = this.byDevice.get(device);
    if (generation === undefined) this.byDevice.set(device, (generation = new WriteGeneration(this.epoch)));
    return generation;
  }

  /** After a change of the host: every file whose holders are not what they were gets a new incarnation. */
  holdsChanged(before: readonly HoldLike[], after: readonly HoldLike[]): void {
    const signature = (holds: readonly HoldLike[]) => {
      const byPath = new Map<string, string[]>();
      for (const hold of holds) byPath.set(hold.path, [...(byPath.get(hold.path) ?? []), `${hold.holder}:${hold.access}`]);
      return new Map([...byPath].map(([path, holders]) => [path, holders.sort().join(',')]));
    };
    const was = signature(before);
    const is = signature(after);
    for (const path of new Set([...was.keys(), ...is.keys()])) if (was.get(path) !== is.get(path)) this.ofFile(path).reincarnate();
  }
}

/** What holdsChanged reads of a Hold (device-holders.ts). */
export interface HoldLike {
  path: string;
  holder: string;
  access: string;
}
