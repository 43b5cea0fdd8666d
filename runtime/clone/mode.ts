/**
 * The clone's mode state machine (dm-clone's, REFERENCE.md):
 *
 *   rw --(a commit or destination flush failed)--> ro --(reloading the last commit failed)--> Fail
 *
 * Only forward, never back (a clone leaves ro or Fail by being reopened). In ro the in-core bitmap
 * is the last commit's again (`reload`): writes that need an unhydrated region and flushes that
 * need a commit fail with EIO, everything else goes on, hydration stops. In Fail every I/O fails.
 * Every change is one 'mode' event with the reason.
 */
import { BlockError } from '../errors.ts';
import type { CloneMode } from './status.ts';

export interface ModeChange {
  type: 'mode';
  mode: CloneMode;
  previous: CloneMode;
  reason: string;
}

export class CloneModes {
  private current: CloneMode = 'rw';

  constructor(
    private readonly deviceName: string,
    private readonly announce: (change: ModeChange) => void,
  ) {}

  get mode(): CloneMode {
    return this.current;
  }

  get isRw(): boolean {
    return this.current === 'rw';
  }

  /** rw -> ro, then `reload` the last commit; if that fails too, -> Fail. Nothing outside rw. */
  async enterReadOnly(reason: string, reload: () => Promise<void>): Promise<void> {
    if (this.current !== 'rw') return;
    this.set('ro', reason);
    try {
      await reload();
    } catch (error) {
      this.set('Fail', `reloading the last commit failed: ${(error as Error).message}`);
    }
  }

  /** EIO for `operation` in Fail mode. */
  failIfFailed(operation: string, offsetBytes?: number, lengthBytes?: number): void {
    if (this.current === 'Fail') throw this.ioError(`${operation} refused: the clone is in Fail mode`, offsetBytes, lengthBytes);
  }

  ioError(message: string, offsetBytes?: number, lengthBytes?: number): BlockError {
    return new BlockError('EIO', message, { device: this.deviceName, offsetBytes, lengthBytes });
  }

  private set(mode: CloneMode, reason: string): void {
    const previous = this.current;
    if (previous === mode) return;
    this.current = mode;
    this.announce({ type: 'mode', mode, previous, reason });
  }
}
