/** Wire strings must be valid UTF-8: the text, or null when the bytes are not UTF-8 (one shared fatal decoder). */
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function strictUtf8(bytes: Uint8Array): string | null {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}
