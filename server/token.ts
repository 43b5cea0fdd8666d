/**
 * The API token: where it comes from (a file, or the environment) and how a presented one is
 * checked (token-check.ts: in time that depends only on what the client sent).
 */
import fs from 'node:fs';
import { tokenChecker } from './token-check.ts';

export { tokenChecker } from './token-check.ts';

export const TOKEN_CHARS_MIN = 16;

export class TokenError extends Error {
  override name = 'TokenError';
}

/** The token from `--token-file` (first line, trimmed) or else from the environment; null if neither. */
export function loadToken(tokenFile: string | undefined, fromEnv: string | undefined): string | null {
  let token: string | undefined;
  if (tokenFile !== undefined) {
    try {
      token = fs.readFileSync(tokenFile, 'utf8').split('\n')[0]!.trim();
    } catch (error) {
      throw new TokenError(`cannot read the token file ${tokenFile}: ${(error as Error).message}`);
    }
  } else if (fromEnv !== undefined && fromEnv !== '') {
    token = fromEnv.trim();
  }
  if (token === undefined) return null;
  if (token.length < TOKEN_CHARS_MIN) throw new TokenError(`the token must be at least ${TOKEN_CHARS_MIN} characters`);
  return token;
}

/** Whether `presented` is `expected`, in time that depends only on `presented` (token-check.ts). */
export function tokenMatches(expected: string, presented: string): boolean {
  return tokenChecker(expected)(presented);
}
