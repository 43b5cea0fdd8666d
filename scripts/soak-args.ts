/**
 * The command line both soak scripts take: `[count] [--seed N] [--jobs N]`. The base seed defaults to
 * BLOCKCORE_SEED, else the clock (seedFromEnv), so a failing seed replays exactly.
 */
import { seedFromEnv } from '../runtime/prng.ts';

export interface SoakArgs {
  count: number;
  baseSeed: number;
  jobs: number;
}

export function parseSoakArgs(argv: string[], defaults: { count: number; jobs: number; usage: string }): SoakArgs {
  const args: SoakArgs = { count: defaults.count, baseSeed: seedFromEnv(), jobs: defaults.jobs };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    const value = (name: string) => {
      const text = argv[++i];
      if (text === undefined || !/^\d+$/.test(text)) throw new Error(`${name} needs an unsigned integer`);
      return Number(text);
    };
    if (word === '--seed') args.baseSeed = value('--seed') >>> 0;
    else if (word === '--jobs') args.jobs = Math.max(1, value('--jobs'));
    else if (/^\d+$/.test(word)) args.count = Number(word);
    else throw new Error(`unknown argument "${word}" (usage: ${defaults.usage})`);
  }
  return args;
}
