/**
 * `blockcore <command>`: dispatches to `serve` or to a command that talks to the API
 * (commands.ts). Global options: --url URL (BLOCKCORE_URL, default http://127.0.0.1:8420) and
 * --token-file FILE (else BLOCKCORE_TOKEN). Failures print one line, `blockcore: <what>`, on
 * stderr and exit non-zero: 1 the request failed, 2 bad usage, 3 the server cannot be reached.
 */
import { loadToken, TokenError } from '../token.ts';
import { parseArgs, UsageError } from './args.ts';
import { ApiClient, CliError, DEFAULT_URL, EXIT_FAILED, EXIT_USAGE } from './client.ts';
import { ENGINES } from '../engines.ts';
import { COMMANDS, type CommandContext } from './commands.ts';

const GLOBAL_FLAGS = { '--url': 'value', '--token-file': 'value' } as const;

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  write(text: string): void;
  isTty: boolean;
}

export function usage(): string {
  const width = Math.max(...Object.values(COMMANDS).map((command) => command.usage.length));
  return [
    'usage: blockcore <command> [options]',
    '',
    `  serve [--data DIR] [--http HOST:PORT] [--nbd HOST:PORT|PATH] [--token-file FILE]${ENGINES.flatMap((engine) => engine.serveFlags ?? []).map((flag) => ` [${flag.flag} ${flag.valueName}]`).join('')}`,
    ...Object.values(COMMANDS).map((command) => `  ${command.usage.padEnd(width)}  ${command.summary}`),
    '',
    `options: --url URL (or BLOCKCORE_URL; default ${DEFAULT_URL}), --token-file FILE (or BLOCKCORE_TOKEN)`,
  ].join('\n');
}

export async function runCli(argv: readonly string[], env: Record<string, string | undefined>, io: CliIo): Promise<number> {
  // Imported only here: the other commands need none of the service.
  if (argv[0] === 'serve') return (await import('../main.ts')).serve(argv.slice(1), env, io);
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    (argv.length === 0 ? io.err : io.out)(usage());
    return argv.length === 0 ? EXIT_USAGE : 0;
  }
  // The longest run of leading words that names a command (`clone ls`, `transport session show`).
  const key = [3, 2, 1].map((words) => argv.slice(0, words).join(' ')).find((words) => COMMANDS[words] !== undefined);
  const command = key === undefined ? undefined : COMMANDS[key];
  if (key === undefined || command === undefined) {
    io.err(`blockcore: unknown command "${argv.slice(0, 2).join(' ')}" (run blockcore help)`);
    return EXIT_USAGE;
  }
  try {
    const args = parseArgs(argv.slice(key.split(' ').length), { ...GLOBAL_FLAGS, ...command.flags });
    let client: ApiClient | undefined;
    const context: CommandContext = {
      client: () => (client ??= new ApiClient(args.values.get('--url') ?? env.BLOCKCORE_URL ?? DEFAULT_URL, loadToken(args.values.get('--token-file'), env.BLOCKCORE_TOKEN))),
      out: io.out,
      write: io.write,
      isTty: io.isTty,
    };
    return (await command.run(context, args)) ?? 0;
  } catch (error) {
    if (error instanceof UsageError || error instanceof TokenError) {
      io.err(`blockcore: ${error.message}`);
      return EXIT_USAGE;
    }
    if (error instanceof CliError) {
      io.err(`blockcore: ${error.message}`);
      return error.exitCode;
    }
    io.err(`blockcore: ${(error as Error).message ?? String(error)}`);
    return EXIT_FAILED;
  }
}
