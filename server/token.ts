/**
 * The API token: where it comes from (a file, or the environment) and how a presented one is
 * checked. Comparison hashes both sides to fixed-length digests and compares those in constant
 * time, so neither the token's content nor its length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';

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

const digest = (text: string) => createHash('sha256').update(text).digest();

/** Constant-time comparison of a presented token with `expected` (both hashed to equal lengths). */
export function tokenMatches(expected: string, presented: string): boolean {
  return tokenChecker(expected)(presented);
}

/** tokenMatches with the expected token's digest computed once (the API checks every request). */
export function tokenChecker(expected: string): (presented: string) => boolean {
  const expectedDigest = digest(expected);
  return (presented) => timingSafeEqual(expectedDigest, digest(presented));
}
