/** Awaits `pending`, which must reject with a BlockError of `code` (and a message matching `text`). */
import * as assert from 'uvu/assert';
import { BlockError, type BlockErrorCode } from '../../runtime/errors.ts';

export async function expectCode(pending: Promise<unknown>, code: BlockErrorCode, text?: RegExp): Promise<BlockError> {
  try {
    await pending;
  } catch (error) {
    assert.instance(error, BlockError, String(error));
    assert.is((error as BlockError).code, code, (error as BlockError).message);
    if (text) assert.match((error as Error).message, text);
    return error as BlockError;
  }
  assert.unreachable(`resolved, expected ${code}`);
  throw new Error('unreachable');
}
