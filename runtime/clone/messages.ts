/**
 * dm-clone's messages (`dmsetup message`), parsed and validated once, at the boundary, beside the
 * table they change (table.ts):
 *   disable_hydration | enable_hydration | hydration_threshold <N> | hydration_batch_size <N>
 * N is an unsigned 32-bit region count (threshold >= 0, batch size >= 1). Anything else is a
 * BlockError EINVAL naming the message and the word.
 */
import { BlockError } from '../errors.ts';
import { REGION_COUNT_ARG_MAX } from './table.ts';

export type CloneMessage =
  | { type: 'disable_hydration' }
  | { type: 'enable_hydration' }
  | { type: 'hydration_threshold'; regions: number }
  | { type: 'hydration_batch_size'; regions: number };

const EXPECTED = 'disable_hydration, enable_hydration, hydration_threshold N or hydration_batch_size N';

export function parseCloneMessage(text: string): CloneMessage {
  const words = String(text).trim().split(/\s+/);
  const name = words[0]!;
  const takesCount = name === 'hydration_threshold' || name === 'hydration_batch_size';
  const arity = takesCount ? 2 : 1;
  if (words.length !== arity) throw new BlockError('EINVAL', `message "${text}": expected ${arity} word(s)`);
  switch (name) {
    case 'disable_hydration':
    case 'enable_hydration':
      return { type: name };
    case 'hydration_threshold':
      return { type: name, regions: regionCount(name, words[1], 0) };
    case 'hydration_batch_size':
      return { type: name, regions: regionCount(name, words[1], 1) };
    default:
      throw new BlockError('EINVAL', `unknown message "${name}" (expected ${EXPECTED})`);
  }
}

function regionCount(message: string, word: string | undefined, minimum: number): number {
  if (word === undefined || !/^\d+$/.test(word) || Number(word) > REGION_COUNT_ARG_MAX || Number(word) < minimum) {
    throw new BlockError('EINVAL', `message ${message}: "${word ?? ''}" is not a region count >= ${minimum}`);
  }
  return Number(word);
}
