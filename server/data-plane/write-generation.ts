/**
 * The version of a device's content as the data plane's entity tag (ETag) says it. A tag is
 *   "<epoch>.<state changes>.<writes>"
 *   epoch          random per process: a tag from before a restart (or from another service) never
 *                  matches, since nobody can prove nothing changed meanwhile;
 *   state changes  every change of the host's state (a device created or deleted, a clone created,
 *                  finalized or removed, an export added ...) changes every tag: a device that was
 *                  recreated, or written by an engine that held it meanwhile, never keeps its tag;
 *   writes         the writes (and discards) through this host to the device, counted when each
 *                  begins and again when it ends; while any is in flight the content has no tag.
 * So a reader that saw tag T and then reads tag T again read one version, and an If-Match writer
 * whose tag matches knows nobody wrote since it read. Every path that writes a device the data
 * plane serves counts here: HTTP PUTs and the NBD exports' views (MeteredDevice). Devices are keyed
 * by what they are, not by how they were named: a file by its real path (two names of one file
 * share a version), an engine device by its reference (`clone:c1`).
 *
 * Writes the host does not see have no part in the tag: the other nodes of a clustered array over
 * shared legs, or a process writing the device file directly.
 */
export class WriteGeneration {
  private count = 0;
  private inFlight = 0;

  constructor(private readonly owner: WriteGenerations) {}

  begin(): void {
    this.count++;
    this.inFlight++;
  }

  end(): void {
    this.inFlight--;
    this.count++;
  }

  /** The count of writes begun and ended, or null while one is in flight: the content's own changes, without the host's. */
  writeMark(): number | null {
    return this.inFlight > 0 ? null : this.count;
  }

  /** The strong entity tag of the content now, or null while a write is in flight. */
  etag(): string | null {
    return this.inFlight > 0 ? null : `"${this.owner.epoch}.${this.owner.stateChanges.toString(36)}.${this.count.toString(36)}"`;
  }
}

/** One WriteGeneration per device (keyed by generationKey), made on first use. */
export class WriteGenerations {
  private readonly byKey = new Map<string, WriteGeneration>();
  /** Random per process: tags of an earlier process (or another service) never match ours. */
  readonly epoch = Array.from(crypto.getRandomValues(new Uint8Array(6)), (byte) => byte.toString(16).padStart(2, '0')).join('');
  stateChanges = 0;

  of(key: string): WriteGeneration {
    let generation = this.byKey.get(key);
    if (generation === undefined) this.byKey.set(key, (generation = new WriteGeneration(this)));
    return generation;
  }

  /** The host's state changed: every tag changes. */
  stateChanged(): void {
    this.stateChanges++;
  }
}

/** The key of a device file (its real path, or an edge store's key) or of an engine device (its reference). */
export function generationKey(kind: 'file' | 'engine', keyOrRef: string): string {
  return kind === 'file' ? `file:${keyOrRef}` : keyOrRef;
}
