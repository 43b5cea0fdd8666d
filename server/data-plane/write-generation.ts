/**
 * The version of a device's content as the data plane's entity tag (ETag) says it: a count of the
 * writes (and discards) that began and ended through this service, with this process's epoch, so a
 * tag from before a restart never matches (the service cannot prove nothing changed meanwhile).
 * Every path that writes a device the data plane serves goes through its WriteGeneration: HTTP
 * PUTs and the NBD exports' MeteredDevice views. A write counts once when it begins and once when
 * it ends, and while any is in flight the content has no tag at all: a reader that saw tag T and
 * then reads tag T again read one version; an If-Match writer whose tag matches knows nobody wrote
 * since it read.
 *
 * Writes the service does not see have no part in the tag: the other nodes of a clustered array
 * over shared legs, or a process writing the device file directly.
 */
export class WriteGeneration {
  private count = 0;
  private inFlight = 0;

  constructor(private readonly epoch: string) {}

  begin(): void {
    this.count++;
    this.inFlight++;
  }

  end(): void {
    this.inFlight--;
    this.count++;
  }

  /** The strong entity tag of the content now, or null while a write is in flight. */
  etag(): string | null {
    return this.inFlight > 0 ? null : `"${this.epoch}.${this.count.toString(36)}"`;
  }
}

/** One WriteGeneration per device reference (`disk.img`, `clone:c1`), made on first use. */
export class WriteGenerations {
  private readonly byRef = new Map<string, WriteGeneration>();
  /** Random per process: tags of an earlier process (or another service) never match ours. */
  private readonly epoch = Array.from(crypto.getRandomValues(new Uint8Array(6)), (byte) => byte.toString(16).padStart(2, '0')).join('');

  of(ref: string): WriteGeneration {
    let generation = this.byRef.get(ref);
    if (generation === undefined) this.byRef.set(ref, (generation = new WriteGeneration(this.epoch)));
    return generation;
  }
}
