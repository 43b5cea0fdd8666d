/**
 * The HTTP headers of the data plane, parsed once at the boundary (RFC 9110 sections 14 and 13):
 *   Range: bytes=<first>-<last> | bytes=<first>- | bytes=-<suffixBytes>   (one range; several are
 *          refused with 400 naming "range" rather than answered multipart or with the whole device)
 *   Content-Range: bytes <first>-<last>/<totalBytes | *>                  (a PUT's byte range)
 *   If-Match / If-None-Match: * or a list of entity tags                  (strong comparison)
 * Ranges are inclusive byte positions as the headers spell them; the answers are half-open
 * (offsetBytes, lengthBytes) like every BlockDevice call.
 */
import { invalid, ServiceError } from '../errors.ts';

export interface ByteSpan {
  offsetBytes: number;
  lengthBytes: number;
}

/** Positions past this are refused as malformed: numbers stay exact below 2^53. */
const POSITION_DIGITS_MAX = 15;
const RANGE = /^bytes=(\d{0,15})-(\d{0,15})$/i;
const CONTENT_RANGE = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)$/i;

/** 416's answer: no byte of the range lies on the device (its Content-Range says the size). */
export function unsatisfiable(sizeBytes: number, what: string): ServiceError {
  return new ServiceError('ENXIO', `range: ${what} (the device holds ${sizeBytes} bytes)`, 'range');
}

/**
 * The span a GET's `Range` asks for on a device of `sizeBytes`, or null for the whole device (no
 * Range header, or one in a unit other than bytes). A last position past the end is cut to the end (RFC 9110 14.1.2); a first
 * position at or past the end, or an empty suffix, is unsatisfiable (ENXIO: 416).
 */
export function parseRange(header: string | undefined, sizeBytes: number): ByteSpan | null {
  if (header === undefined) return null;
  const text = header.trim();
  // A unit other than bytes is ignored (RFC 9110 14.2): the whole device is the answer.
  if (!/^bytes=/i.test(text)) return null;
  if (text.includes(',')) throw invalid('range', 'several ranges are not supported: ask for one range per request');
  const match = RANGE.exec(text);
  if (match === null) {
    throw invalid('range', `"${text.slice(0, 80)}" is not bytes=<first>-<last>, bytes=<first>- or bytes=-<suffix length> (positions of at most ${POSITION_DIGITS_MAX} digits)`);
  }
  const [, firstText, lastText] = match as unknown as [string, string, string];
  if (firstText === '') {
    if (lastText === '') throw invalid('range', 'bytes=- names no bytes');
    const suffixBytes = Number(lastText);
    if (suffixBytes === 0 || sizeBytes === 0) throw unsatisfiable(sizeBytes, 'an empty suffix');
    const lengthBytes = Math.min(suffixBytes, sizeBytes);
    return { offsetBytes: sizeBytes - lengthBytes, lengthBytes };
  }
  const first = Number(firstText);
  if (lastText !== '' && Number(lastText) < first) throw invalid('range', `the last position ${lastText} is before the first ${first}`);
  if (first >= sizeBytes) throw unsatisfiable(sizeBytes, `starts at ${first}, past the end`);
  const last = lastText === '' ? sizeBytes - 1 : Number(lastText);
  return { offsetBytes: first, lengthBytes: Math.min(last, sizeBytes - 1) - first + 1 };
}

/**
 * The span a PUT writes: its `Content-Range` (or, without one, the whole device), whole logical
 * blocks of `blockBytes`, inside the device (ENXIO: 416 past the end). A total that is not `*`
 * must be the device's size: a PUT cannot resize.
 */
export function parseContentRange(header: string | undefined, sizeBytes: number, blockBytes: number): ByteSpan {
  if (header === undefined) return { offsetBytes: 0, lengthBytes: sizeBytes };
  const text = header.trim();
  const match = CONTENT_RANGE.exec(text);
  if (match === null) throw invalid('content-range', `"${text.slice(0, 80)}" is not bytes <first>-<last>/<total or *>`);
  const [, firstText, lastText, totalText] = match as unknown as [string, string, string, string];
  const first = Number(firstText);
  const last = Number(lastText);
  if (last < first) throw invalid('content-range', `the last position ${last} is before the first ${first}`);
  if (totalText !== '*' && Number(totalText) !== sizeBytes) throw invalid('content-range', `total ${totalText} is not the device's size ${sizeBytes} (a PUT cannot resize)`);
  if (last >= sizeBytes) throw new ServiceError('ENXIO', `content-range: ends at ${last}, past the end (the device holds ${sizeBytes} bytes)`, 'content-range');
  const end = last + 1;
  if (first % blockBytes !== 0 || end % blockBytes !== 0) {
    throw invalid('content-range', `bytes ${first}-${last} are not whole ${blockBytes}-byte blocks (the first position and last + 1 must be multiples of ${blockBytes})`);
  }
  return { offsetBytes: first, lengthBytes: end - first };
}

/** `*`, or the entity tags of an If-Match / If-None-Match list (weak ones kept with their W/). */
export function parseEtagList(header: string | undefined, field: string): '*' | string[] | null {
  if (header === undefined) return null;
  const text = header.trim();
  if (text === '*') return '*';
  const tags: string[] = [];
  const tag = /\s*((?:W\/)?"[\x21\x23-\x7e]*")\s*(,|$)/y;
  while (tag.lastIndex < text.length) {
    const match = tag.exec(text);
    if (match === null) throw invalid(field, `"${text.slice(0, 80)}" is not * or a list of quoted entity tags`);
    tags.push(match[1]!);
    if (match[2] === '') break;
  }
  if (tags.length === 0) throw invalid(field, 'names no entity tag');
  return tags;
}

/** Weak comparison (RFC 9110 8.8.3.2, what If-None-Match uses): W/ is ignored on both sides. */
export function weakMatches(list: string[], current: string): boolean {
  const opaque = (tag: string) => (tag.startsWith('W/') ? tag.slice(2) : tag);
  return list.some((tag) => opaque(tag) === opaque(current));
}

/** Strong comparison (RFC 9110 8.8.3.2): a weak tag never matches. */
export function etagMatches(list: '*' | string[], current: string | null): boolean {
  if (current === null) return false;
  return list === '*' || list.some((tag) => !tag.startsWith('W/') && tag === current);
}
