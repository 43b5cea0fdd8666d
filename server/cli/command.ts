/** The shape of one `blockcore` command (commands.ts lists them; engines add theirs). */
import type { Args, FlagSpec } from './args.ts';
import type { ApiClient } from './client.ts';

export interface CommandContext {
  client(): ApiClient;
  out(line: string): void;
  /** Raw text to stdout (an in-place progress line). */
  write(text: string): void;
  isTty: boolean;
}

export interface Command {
  usage: string;
  summary: string;
  flags: FlagSpec;
  run(context: CommandContext, args: Args): Promise<number | void>;
}

/** URL path segments, each encoded. */
export const pathOf = (...parts: string[]): string => parts.map((part) => encodeURIComponent(part)).join('/');
