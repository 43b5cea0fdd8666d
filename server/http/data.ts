/**
 * The HTTP data plane: a device's bytes over plain HTTP, for clients that speak no NBD (curl, a
 * browser, an object-store tool, another blockcore's HttpDevice).
 *
 *   GET  /v1/devices/{ref}/data   the whole device (200) or one Range (206); HEAD: the headers only
 *   PUT  /v1/devices/{ref}/data   bytes at Content-Range (whole logical blocks), durable when 204
 *
 * Versions. Every answer carries the device's entity tag when the service can vouch for it
 * (server/data/write-generation.ts: none while a write is in flight). GET honours If-Match (412)
 * and If-None-Match (304); PUT honours If-Match and If-None-Match (412), checked with the whole body
 * in hand, right before the write begins, with no wait between: of two PUTs sent with the same tag
 * exactly one is written, the other answered 412 ("someone wrote since you read").
 *
 * Reads of up to BUFFERED_READ_BYTES_MAX are read whole and answered with the tag only when no write
 * began or ended meanwhile; longer ones stream in STREAM_PIECE_BYTES pieces, and a write to the
 * device during the transfer cuts it (the socket closes short of Content-Length) rather than hand
 * out a mix of two versions under one tag. Reads need no alignment: the device is read in whole
 * logical blocks around the range. A streamed answer also says where its bytes lie in the device's
 * file, when the device can lend them (file-body.ts): a listener that can (node-listen on Node)
 * sends them from the page cache with sendfile, checking for writes after every part as the
 * stream does. That leaves the window any zero-copy server has (NBD's export too): a page the kernel
 * has queued for the socket but not yet sent may carry a write made after the last check, which
 * then also changed the tag, so a conditional PUT against the tag read is refused.
 *
 * Durability: a PUT is written with FUA, so its 204 means the bytes are on stable storage (as
 * durable as an NBD write with FUA); there is nothing to flush afterwards.
 */
import { z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { BlockDevice, FileSpan } from '../../runtime/devices/block-device.ts';
import type { DataDeviceLease, DataDevices } from '../data-plane/data-devices.ts';
import type { WriteGeneration } from '../data-plane/write-generation.ts';
import { invalid, ServiceError } from '../errors.ts';
import { withFileBody } from './file-body.ts';
import { etagMatches, parseContentRange, parseEtagList, parseRange, weakMatches, type ByteSpan } from './byte-ranges.ts';
import { addRoute, DATA_PUT_BYTES_MAX, documentRoute } from './route.ts';

/** Reads up to this size are read whole before the answer starts (and get a verified tag). */
export const BUFFERED_READ_BYTES_MAX = 16 * 1024 * 1024;
/** Longer reads stream in pieces of this size. */
export const STREAM_PIECE_BYTES = 4 * 1024 * 1024;

const PATH = '/v1/devices/{ref}/data';
const HONO_PATH = '/v1/devices/:ref{.+}/data';

const RefParams = z.strictObject({
  ref: z.string().openapi({
    param: { name: 'ref', in: 'path' },
    description: 'A device name in the data directory (may hold "/"), or <kind>:<name> for an engine device (clone:c1).',
  }),
});

const ReadHeaders = z.object({
  range: z.string().optional().openapi({ description: 'bytes=<first>-<last>, bytes=<first>- or bytes=-<suffix length>; one range.' }),
  'if-match': z.string().optional().openapi({ description: 'Answer 412 unless the device is at one of these versions.' }),
  'if-none-match': z.string().optional().openapi({ description: 'Answer 304 when the device is at one of these versions.' }),
  'if-range': z.string().optional().openapi({ description: 'Honour Range only if the device is at this version; else answer the whole device.' }),
});

const WriteHeaders = z.object({
  'content-range': z.string().optional().openapi({ description: 'bytes <first>-<last>/<size or *>: whole logical blocks. Absent: the whole device.' }),
  'if-match': z.string().optional().openapi({ description: 'Write only if the device is still at this version (else 412).' }),
  'if-none-match': z.string().optional().openapi({ description: '*: never write (the device exists); tags: write unless it is at one of them.' }),
});

const bytesAnswer = (description: string) => ({
  description,
  headers: {
    etag: { description: 'The version read, when no write was in flight.', schema: { type: 'string' as const } },
    'content-range': { description: 'On 206: bytes <first>-<last>/<size>.', schema: { type: 'string' as const } },
  },
  content: { 'application/octet-stream': { schema: { type: 'string' as const, format: 'binary' } } },
});

export interface DataPlaneLimits {
  /** Largest PUT (default DATA_PUT_BYTES_MAX; an edge host with little memory gives less). */
  putBytesMax: number;
  /** PUT bytes held in memory at once, all requests together; past it a PUT is answered 503 (retry). */
  putBytesInFlightMax: number;
}

export const DEFAULT_DATA_PLANE_LIMITS: DataPlaneLimits = { putBytesMax: DATA_PUT_BYTES_MAX, putBytesInFlightMax: 4 * DATA_PUT_BYTES_MAX };

/** What PUTs hold in memory now, against DataPlaneLimits.putBytesInFlightMax. */
interface PutBudget {
  limits: DataPlaneLimits;
  inFlightBytes: number;
}

export function dataRoutes(app: OpenAPIHono, devices: DataDevices, limits: DataPlaneLimits = DEFAULT_DATA_PLANE_LIMITS): void {
  const budget: PutBudget = { limits, inFlightBytes: 0 };
  addRoute(
    app,
    {
      method: 'get', path: PATH, honoPath: HONO_PATH,
      summary: "A device's bytes: all of them, or one Range (206). Streams above 16 MiB; a write during a streamed transfer cuts it.",
      params: RefParams, headers: ReadHeaders,
      responses: { 200: bytesAnswer('The whole device.'), 206: bytesAnswer('The range asked for.'), 304: { description: 'If-None-Match named the current version.' } },
      errors: [400, 401, 404, 409, 412, 416],
    },
    (c, { params }) => readData(c, devices, params.ref),
  );
  documentRoute(
    app,
    {
      method: 'head', path: PATH,
      summary: "A device's size (Content-Length), version (ETag) and Accept-Ranges, as GET would answer them.",
      params: RefParams, headers: ReadHeaders,
      responses: { 200: { description: 'The headers of the whole device.' }, 206: { description: 'The headers of the range.' } },
      errors: [400, 401, 404, 409, 412, 416],
    },
  );
  addRoute(
    app,
    {
      method: 'put', path: PATH, honoPath: HONO_PATH,
      summary: `Write bytes at Content-Range (whole logical blocks, at most ${limits.putBytesMax} bytes), durable when answered; If-Match makes it conditional.`,
      params: RefParams, headers: WriteHeaders,
      rawBody: { description: 'Exactly the bytes Content-Range names.' },
      responses: { 204: { description: 'Written and durable; ETag is the version it made (absent when another write is in flight).' } },
      errors: [400, 401, 404, 409, 412, 413, 416],
    },
    (c, { params }) => writeData(c, devices, params.ref, budget),
  );
}

async function readData(c: Context, devices: DataDevices, ref: string): Promise<Response> {
  const lease = await devices.acquire(ref, 'read');
  let streaming = false;
  try {
    const { device, generation } = lease;
    const headers = new Headers({ 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', 'cache-control': 'no-cache' });
    const etagBefore = generation.etag();
    const ifMatch = parseEtagList(c.req.header('if-match'), 'if-match');
    if (ifMatch !== null && ifMatch !== '*' && !etagMatches(ifMatch, etagBefore)) throw stale('if-match', etagBefore);
    const ifNoneMatch = parseEtagList(c.req.header('if-none-match'), 'if-none-match');
    if (ifNoneMatch !== null && etagBefore !== null && (ifNoneMatch === '*' || weakMatches(ifNoneMatch, etagBefore))) {
      return new Response(null, { status: 304, headers: { etag: etagBefore } });
    }
    // If-Range: the range only if the device is still at that version, else the whole of it
    // (a resumed download never splices two versions).
    const ifRange = c.req.header('if-range');
    const range = ifRange === undefined || (etagBefore !== null && ifRange.trim() === etagBefore) ? rangeOf(c, device) : null;
    const span = range ?? { offsetBytes: 0, lengthBytes: device.sizeBytes };
    const status = range === null ? 200 : 206;
    headers.set('content-length', String(span.lengthBytes));
    if (range !== null) headers.set('content-range', `bytes ${span.offsetBytes}-${span.offsetBytes + span.lengthBytes - 1}/${device.sizeBytes}`);
    if (c.req.raw.method === 'HEAD') {
      if (etagBefore !== null) headers.set('etag', etagBefore);
      return new Response(null, { status, headers });
    }
    if (span.lengthBytes <= BUFFERED_READ_BYTES_MAX) {
      const bytes = await readSpan(device, span);
      const etagAfter = generation.etag();
      if (etagBefore !== null && etagAfter === etagBefore) headers.set('etag', etagBefore);
      return new Response(bytes, { status, headers });
    }
    if (etagBefore !== null) headers.set('etag', etagBefore);
    streaming = true;
    const mark = generation.writeMark();
    const response = new Response(streamSpan(device, span, generation, mark, lease), { status, headers });
    const lend = device.fileSpan;
    if (lend === undefined) return response;
    return withFileBody(response, {
      open: () => lendSpan(device, lend, span),
      check: () => checkUnwritten(generation, mark),
    });
  } finally {
    if (!streaming) lease.release();
  }
}

async function writeData(c: Context, devices: DataDevices, ref: string, budget: PutBudget): Promise<Response> {
  const lease = await devices.acquire(ref, 'write');
  try {
    const { device, generation } = lease;
    if (!device.canWrite) throw new ServiceError('EROFS', `ref: ${ref} cannot be written (read-only)`, 'ref');
    const span = parseContentRange(c.req.header('content-range'), device.sizeBytes, device.logicalBlockBytes);
    const ifMatch = parseEtagList(c.req.header('if-match'), 'if-match');
    const ifNoneMatch = parseEtagList(c.req.header('if-none-match'), 'if-none-match');
    const { putBytesMax, putBytesInFlightMax } = budget.limits;
    if (span.lengthBytes > putBytesMax) throw new ServiceError('E2BIG', `content-range: ${span.lengthBytes} bytes in one PUT; at most ${putBytesMax}`, 'content-range');
    if (budget.inFlightBytes + span.lengthBytes > putBytesInFlightMax) {
      throw new ServiceError('EAGAIN', `body: other PUTs hold ${budget.inFlightBytes} bytes in memory now (at most ${putBytesInFlightMax} at once): retry`, 'body');
    }
    budget.inFlightBytes += span.lengthBytes;
    let data: Uint8Array;
    try {
      data = await readBody(c, span.lengthBytes);
    } catch (error) {
      budget.inFlightBytes -= span.lengthBytes;
      throw error;
    }
    try {
      return await writeChecked(data, span, generation, device, ifMatch, ifNoneMatch);
    } finally {
      budget.inFlightBytes -= span.lengthBytes;
    }
  } finally {
    lease.release();
  }
}

/** The write itself, once the body is in: preconditions, then the write with FUA. */
async function writeChecked(
  data: Uint8Array, span: ByteSpan, generation: WriteGeneration, device: BlockDevice,
  ifMatch: '*' | string[] | null, ifNoneMatch: '*' | string[] | null,
): Promise<Response> {
  // Preconditions with the body in hand, and nothing awaited between them and begin(): a PUT that
  // matched is the one that writes next. If-Match: * matches while another write is in flight
  // (the device exists); a tag does not (its content has no version then).
  const current = generation.etag();
  if (ifMatch !== null && ifMatch !== '*' && !etagMatches(ifMatch, current)) throw stale('if-match', current);
  if (ifNoneMatch !== null && (ifNoneMatch === '*' || (current !== null && weakMatches(ifNoneMatch, current)))) {
    throw new ServiceError('ESTALE', `if-none-match: the device exists${ifNoneMatch === '*' ? '' : ` at ${current}`}`, 'if-none-match');
  }
  if (span.lengthBytes > 0) {
    generation.begin();
    try {
      await device.write(span.offsetBytes, data, { fua: true });
    } finally {
      generation.end();
    }
  }
  const etag = generation.etag();
  return new Response(null, { status: 204, headers: etag === null ? {} : { etag } });
}

/** The Range, with 416's Content-Range header set on the way out when it lies past the end. */
function rangeOf(c: Context, device: BlockDevice): ByteSpan | null {
  try {
    return parseRange(c.req.header('range'), device.sizeBytes);
  } catch (error) {
    if (error instanceof ServiceError && error.code === 'ENXIO') c.header('content-range', `bytes */${device.sizeBytes}`);
    throw error;
  }
}

function stale(field: string, current: string | null): ServiceError {
  return new ServiceError('ESTALE', `${field}: the device is ${current === null ? 'being written' : `at ${current}`}: someone wrote since that version`, field);
}

/** `span` of the device, read in whole logical blocks around it. */
async function readSpan(device: BlockDevice, span: ByteSpan): Promise<Uint8Array> {
  if (span.lengthBytes === 0) return new Uint8Array(0);
  const blockBytes = device.logicalBlockBytes;
  const firstBytes = Math.floor(span.offsetBytes / blockBytes) * blockBytes;
  const endBytes = Math.min(device.sizeBytes, Math.ceil((span.offsetBytes + span.lengthBytes) / blockBytes) * blockBytes);
  const bytes = new Uint8Array(endBytes - firstBytes);
  await device.read(firstBytes, bytes);
  const skipBytes = span.offsetBytes - firstBytes;
  return bytes.subarray(skipBytes, skipBytes + span.lengthBytes);
}

/** `span` of the device as it lies in its file: lent in whole logical blocks around it, then narrowed. */
function lendSpan(device: BlockDevice, lend: NonNullable<BlockDevice['fileSpan']>, span: ByteSpan): FileSpan | null {
  const blockBytes = device.logicalBlockBytes;
  const firstBytes = Math.floor(span.offsetBytes / blockBytes) * blockBytes;
  const endBytes = Math.min(device.sizeBytes, Math.ceil((span.offsetBytes + span.lengthBytes) / blockBytes) * blockBytes);
  const whole = lend.call(device, firstBytes, endBytes - firstBytes);
  if (whole === null) return null;
  const skipBytes = span.offsetBytes - firstBytes;
  return {
    fd: whole.fd,
    fileOffsetBytes: whole.fileOffsetBytes + skipBytes,
    lengthBytes: span.lengthBytes,
    read: (spanOffsetBytes, target) => whole.read(skipBytes + spanOffsetBytes, target),
    release: () => whole.release(),
  };
}

/**
 * `span` in pieces; a write to the device between pieces fails the stream (the transfer is cut).
 * Only the device's own writes count here (`writeMark`), not the host's other changes: creating
 * another device must not cut a transfer. Nothing else can write the device meanwhile: the request
 * holds it, so no engine can take it.
 */
function streamSpan(device: BlockDevice, span: ByteSpan, generation: WriteGeneration, mark: number | null, lease: DataDeviceLease): ReadableStream<Uint8Array> {
  // Nothing is read until the first read (highWaterMark 0): a listener that sends the file body
  // (file-body.ts) never reads this stream. Once reading, the next piece is read while the last
  // one is being sent.
  let nextBytes = 0;
  let ahead: Promise<Uint8Array> | null = null;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    ahead?.catch(() => {}); // a read ahead that fails after the end is nobody's error
    lease.release();
  };
  const readNext = (): Promise<Uint8Array> | null => {
    // Nothing more once released (cancelled while a pull awaited its piece): the device may be closed.
    if (nextBytes === span.lengthBytes || released) return null;
    const pieceBytes = Math.min(STREAM_PIECE_BYTES, span.lengthBytes - nextBytes);
    const reading = readSpan(device, { offsetBytes: span.offsetBytes + nextBytes, lengthBytes: pieceBytes });
    nextBytes += pieceBytes;
    return reading;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (released) return;
        try {
          const piece = await (ahead ?? readNext()!);
          // Checked once the piece is read: a write that began or ended while it was read, or
          // at any time before, shows here.
          checkUnwritten(generation, mark);
          if (released) return;
          ahead = readNext();
          controller.enqueue(piece);
          if (ahead === null) {
            release();
            controller.close();
          }
        } catch (error) {
          release();
          controller.error(error);
        }
      },
      cancel() {
        release();
      },
    },
    { highWaterMark: 0 },
  );
}

/** Throws when the device was written since `mark` (null: no mark taken, nothing to vouch for). */
function checkUnwritten(generation: WriteGeneration, mark: number | null): void {
  if (mark !== null && generation.writeMark() !== mark) throw new ServiceError('ESTALE', 'the device was written during the transfer');
}

/** The request body, which must be exactly `lengthBytes` long. */
async function readBody(c: Context, lengthBytes: number): Promise<Uint8Array> {
  const declared = c.req.header('content-length');
  if (declared !== undefined && Number(declared) !== lengthBytes) throw invalid('body', `holds ${declared} bytes; content-range names ${lengthBytes}`);
  const data = new Uint8Array(lengthBytes);
  let filledBytes = 0;
  const body = c.req.raw.body;
  if (body !== null) {
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (filledBytes + value.length > lengthBytes) {
        await reader.cancel().catch(() => {});
        throw invalid('body', `is longer than the ${lengthBytes} bytes content-range names`);
      }
      data.set(value, filledBytes);
      filledBytes += value.length;
    }
  }
  if (filledBytes !== lengthBytes) throw invalid('body', `holds ${filledBytes} bytes; content-range names ${lengthBytes}`);
  return data;
}
