/**
 * The CLI's side of the HTTP API: JSON requests with the bearer token, the server's error answers
 * turned into one readable line, and the event stream read as Server-Sent Events.
 */
import { readSseMessages, type SseMessage } from '../sse-parse.ts';

export const DEFAULT_URL = 'http://127.0.0.1:8420';
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

/** A failure to report as one line on stderr, with the exit code to end with. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(message: string, readonly exitCode = EXIT_FAILED) {
    super(message);
  }
}

export class ApiClient {
  private readonly base: URL;

  constructor(url: string, private readonly token: string | null) {
    try {
      this.base = new URL(url);
    } catch {
      throw new CliError(`--url "${url}" is not a URL`, EXIT_USAGE);
    }
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new CliError(`--url "${url}" must be http:// or https://`, EXIT_USAGE);
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(path, {
      method,
      headers: { ...this.authHeader(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new CliError(describeFailure(response.status, text));
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /** Reads GET /v1/events, calling `onEvent` for each event, until `signal` aborts or the server ends it. */
  async events(onEvent: (event: SseMessage) => void, signal?: AbortSignal): Promise<void> {
    const response = await this.send('/v1/events', { headers: { ...this.authHeader(), accept: 'text/event-stream' }, signal });
    if (!response.ok || !response.body) throw new CliError(describeFailure(response.status, await response.text()));
    try {
      for await (const message of readSseMessages(response.body)) onEvent(message);
    } catch (error) {
      if (signal?.aborted) return;
      throw error;
    }
  }

  private authHeader(): Record<string, string> {
    return this.token === null ? {} : { authorization: `Bearer ${this.token}` };
  }

  private async send(path: string, init: RequestInit): Promise<Response> {
    const url = new URL(path.replace(/^\//, ''), this.base.href.endsWith('/') ? this.base : `${this.base.href}/`);
    try {
      return await fetch(url, init);
    } catch (error) {
      if (init.signal?.aborted) throw error;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach blockcore at ${this.base.origin}: ${cause?.code ?? cause?.message ?? (error as Error).message}`, EXIT_UNREACHABLE);
    }
  }
}

function describeFailure(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof body.error === 'string') return `${body.error} (HTTP ${status}${typeof body.code === 'string' ? ` ${body.code}` : ''})`;
  } catch {
    // not our JSON: a proxy, or not blockcore at all
  }
  return `HTTP ${status}: ${text.slice(0, 200).replace(/\s+/g, ' ').trim() || 'no details'}`;
}
