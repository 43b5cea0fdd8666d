/**
 * Command-line arguments: positionals and `--flag value` / `--flag=value` / `--switch`, with `--`
 * ending the flags. Each command declares its flags; anything else is a usage error (exit 2).
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type FlagKind = 'value' | 'switch';
export type FlagSpec = Record<string, FlagKind>;

export interface Args {
  positional: string[];
  values: Map<string, string>;
  switches: Set<string>;
}

export function parseArgs(argv: readonly string[], spec: FlagSpec): Args {
  const args: Args = { positional: [], values: new Map(), switches: new Set() };
  for (let at = 0; at < argv.length; at++) {
    const arg = argv[at]!;
    if (arg === '--') {
      args.positional.push(...argv.slice(at + 1));
      break;
    }
    if (!arg.startsWith('--') || arg === '--') {
      args.positional.push(arg);
      continue;
    }
    const equals = arg.indexOf('=');
    const flag = equals < 0 ? arg : arg.slice(0, equals);
    const kind = spec[flag];
    if (kind === undefined) throw new UsageError(`unknown option ${flag}${Object.keys(spec).length ? ` (expected ${Object.keys(spec).join(', ')})` : ''}`);
    if (kind === 'switch') {
      if (equals >= 0) throw new UsageError(`${flag} takes no value`);
      args.switches.add(flag);
      continue;
    }
    const value = equals >= 0 ? arg.slice(equals + 1) : argv[++at];
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    args.values.set(flag, value);
  }
  return args;
}

/** The positionals, exactly `names.length` of them, named for the message when they are not. */
export function takePositionals(args: Args, names: readonly string[], usage: string): string[] {
  if (args.positional.length !== names.length) {
    throw new UsageError(`expected ${names.length ? names.join(' ') : 'no arguments'}, got ${args.positional.length ? `"${args.positional.join(' ')}"` : 'none'} (usage: ${usage})`);
  }
  return args.positional;
}
