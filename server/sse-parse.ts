/**
 * Server-Sent Events as a client reads them (GET /v1/events): the body is blocks separated by a
 * blank line; in a block, `field: value` lines (one space after the colon dropped), `data` lines
 * joined with "\n", lines starting with ":" ignored (keep-alive comments). A block without data
 * dispatches nothing. Used by the CLI (server/cli/client.ts) and the tests' reader.
 */
const BLOCK_END = '\n\n';

export interface SseMessage {
  id: string;
  /** "message" when the block names none. */
  event: string;
  data: string;
}

/** One block (without its blank line); null when it holds no data. */
export function parseSseBlock(block: string): SseMessage | null {
  const message: SseMessage = { id: '', event: 'message', data: '' };
  for (const line of block.split('\n')) {
    const colon = line.indexOf(':');
    if (colon === 0) continue;
    const key = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (key === 'data') message.data += (message.data ? '\n' : '') + value;
    else if (key === 'id' || key === 'event') message[key] = value;
  }
  return message.data === '' ? null : message;
}

/** Yields each message of `body` until the server ends it; a failed read (an abort) is thrown. */
export async function* readSseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    pending += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = pending.indexOf(BLOCK_END)) >= 0) {
      const message = parseSseBlock(pending.slice(0, end));
      pending = pending.slice(end + BLOCK_END.length);
      if (message) yield message;
    }
  }
}
