/**
 * When and how a clone commits its metadata, and what its flush means.
 *
 * Durability: a clone behaves like a disk with a volatile write cache.
 *   flush()   commits when the metadata changed (or a commit is running), else it is the
 *             destination's fdatasync. A commit (CloneMetadata.commit) flushes the destination
 *             before it writes any bit, so no bit ever says "hydrated" for data that is not durable.
 *   commits   also every `intervalMs` (1 s) while anything changed, and when the clone asks
 *             (status, suspend, close, completion).
 * A failed commit or destination flush puts the clone in ro mode (mode.ts: the in-core bitmap is
 * reloaded from the last commit) and rejects with EIO. A failed fdatasync is never retried as if
 * nothing happened: the kernel may have dropped the pages it could not write.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import type { CloneMetadata } from './metadata.ts';
import type { CloneModes } from './mode.ts';

export const DEFAULT_COMMIT_INTERVAL_MS = 1000;

export interface CommitEvent {
  type: 'commit';
  hydratedRegions: number;
  totalRegions: number;
}

export class CloneCommits {
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly metadata: CloneMetadata,
    private readonly destination: BlockDevice,
    private readonly modes: CloneModes,
    private readonly announce: (event: CommitEvent) => void,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => void this.periodic(), intervalMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Stops the periodic commits (close). */
  stop(): void {
    clearInterval(this.timer);
  }

  /** Commits; on failure enters ro mode (reloading the last commit) and rejects with EIO. */
  async commit(): Promise<void> {
    const modes = this.modes;
    if (!modes.isRw) throw modes.ioError(`cannot commit in ${modes.mode} mode`);
    try {
      await this.metadata.commit(() => this.destination.flush());
    } catch (error) {
      await this.enterReadOnly(`metadata commit failed: ${(error as Error).message}`);
      throw modes.ioError(`metadata commit failed: ${(error as Error).message}`);
    }
    this.announce({ type: 'commit', hydratedRegions: this.metadata.committedCount, totalRegions: this.metadata.regionCount });
  }

  /** Commits if the metadata changed; a failure is in the mode (ro) and the events, not thrown. */
  commitIfChanged(): Promise<void> {
    if (!this.modes.isRw || !this.metadata.changed) return Promise.resolve();
    return this.commit().catch(() => {});
  }

  /** Flush semantics: commit when metadata changed (or a commit is running), else fdatasync the destination. */
  async flush(): Promise<void> {
    const modes = this.modes;
    if (this.metadata.changed || this.metadata.isCommitting) {
      if (!modes.isRw) throw modes.ioError(`flush needs a metadata commit in ${modes.mode} mode`);
      await this.commit();
      return;
    }
    try {
      await this.destination.flush();
    } catch (error) {
      await this.enterReadOnly(`destination flush failed: ${(error as Error).message}`);
      throw modes.ioError(`destination flush failed: ${(error as Error).message}`);
    }
  }

  private async periodic(): Promise<void> {
    if (this.metadata.isCommitting) return;
    await this.commitIfChanged();
  }

  private enterReadOnly(reason: string): Promise<void> {
    return this.modes.enterReadOnly(reason, () => this.metadata.reload());
  }
}
