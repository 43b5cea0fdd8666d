/**
 * Option haggling for one connection (proto.md "Fixed newstyle negotiation"): takes one option and
 * its data, returns the replies to send and what happens next. Pure over its inputs (the export
 * catalogue and this connection's negotiated state), so tests drive it without a socket.
 *
 * State carried between options: structured replies agreed; the metadata contexts selected and the
 * export name they were selected for (BLOCK_STATUS works only if GO names the same export).
 * Replies, per option:
 *   EXPORT_NAME   known export: size, flags (+124 zeros unless NO_ZEROES), enter transmission;
 *                 unknown: close (the option cannot carry an error);
 *   GO / INFO     REP_INFO EXPORT, BLOCK_SIZE always, NAME / DESCRIPTION when asked, then ACK
 *                 (GO enters transmission); unknown export ERR_UNKNOWN; malformed ERR_INVALID;
 *   LIST          one REP_SERVER per export, ACK; with data ERR_INVALID;
 *   ABORT         ACK, then close;
 *   STRUCTURED_REPLY  ACK (again if repeated); with data ERR_INVALID; after EXTENDED_HEADERS
 *                 ERR_EXT_HEADER_REQD (no going back);
 *   EXTENDED_HEADERS  ACK (again if repeated): structured replies too, with 32-byte headers in
 *                 transmission (extended-codec.ts); with data ERR_INVALID; EXPORT_NAME after it
 *                 closes (proto.md forbids it);
 *   LIST / SET_META_CONTEXT  before STRUCTURED_REPLY ERR_INVALID; otherwise the export's contexts
 *                 (meta-contexts.ts: base:allocation, and qemu:dirty-bitmap:<name> for each bitmap
 *                 its device's engine keeps) that the queries name: SET selects exact names, LIST
 *                 also takes a namespace or prefix ending in ':' ("base:", "qemu:",
 *                 "qemu:dirty-bitmap:") and lists all with no query; other names are ignored;
 *   STARTTLS      without TLS configured ERR_UNSUP; with data, or TLS already on, ERR_INVALID; else
 *                 ACK, and the connection upgrades the stream (tls.ts), after which `secured()`
 *                 forgets everything agreed in plain text;
 *   before TLS on a TLS-only ('require') server: every option but STARTTLS and ABORT ERR_TLS_REQD,
 *                 EXPORT_NAME closes;
 *   anything else  ERR_UNSUP.
 */
import { contextsOf, listed, type MetaContext } from './meta-contexts.ts';
import type { NbdTlsMode } from './tls.ts';
import type { NbdExport } from './types.ts';
import {
  NBD_INFO_DESCRIPTION, NBD_INFO_NAME, NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME, NBD_OPT_EXTENDED_HEADERS, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_EXT_HEADER_REQD, NBD_REP_ERR_INVALID, NBD_REP_ERR_PLATFORM, NBD_REP_ERR_TLS_REQD, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT, NBD_REP_SERVER, MAX_MESSAGE_BYTES, MAX_STRING_BYTES,
} from './constants.ts';
import { blockSizes, transmissionFlags } from './export-flags.ts';
import {
  decodeGoRequest, decodeMetaContextRequest, encodeExportNameReply, encodeInfoBlockSize, encodeInfoExport, encodeInfoString,
  encodeMetaContext, encodeOptionReply, encodeServerEntry,
} from './option-codec.ts';
import { decodeString, utf8Truncated } from './wire.ts';

export interface Catalogue {
  lookup(name: string): NbdExport | undefined;
  list(): NbdExport[];
}

/** What transmission needs from the handshake. */
export interface Agreement {
  exported: NbdExport;
  structuredReplies: boolean;
  /** 32-byte request and reply headers (extended-codec.ts); implies structuredReplies. */
  extendedHeaders: boolean;
  /** The metadata contexts selected for this export, in id order (BLOCK_STATUS answers one chunk each). */
  metaContexts: readonly MetaContext[];
}

export type Outcome =
  | { next: 'options'; replies: Uint8Array[] }
  | { next: 'transmission'; replies: Uint8Array[]; agreement: Agreement }
  | { next: 'abort'; replies: Uint8Array[] }
  | { next: 'starttls'; replies: Uint8Array[] }
  | { next: 'close'; replies: Uint8Array[]; reason: string };

export class Negotiation {
  structuredReplies = false;
  extendedHeaders = false;
  /** Set from the client flags. */
  noZeroes = false;
  private metaExportName: string | null = null;
  private metaSelected: readonly MetaContext[] = [];

  /** TLS is up on this connection. */
  private tlsOn = false;

  /** `tls`: the server's TLS mode, or null when it has no TLS. */
  constructor(private readonly catalogue: Catalogue, private readonly tls: NbdTlsMode | null = null) {}

  /** The stream is now TLS: what was agreed in plain text is forgotten (the client asks again). */
  secured(): void {
    this.tlsOn = true;
    this.structuredReplies = false;
    this.extendedHeaders = false;
    this.metaExportName = null;
    this.metaSelected = [];
  }

  handle(option: number, data: Uint8Array): Outcome {
    if (option === NBD_OPT_STARTTLS) return this.startTls(data);
    if (this.tls === 'require' && !this.tlsOn && option !== NBD_OPT_ABORT) {
      if (option === NBD_OPT_EXPORT_NAME) return { next: 'close', replies: [], reason: 'EXPORT_NAME before STARTTLS on a TLS-only server' };
      return error(option, NBD_REP_ERR_TLS_REQD, 'this server requires TLS: send STARTTLS first');
    }
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return this.exportName(data);
      case NBD_OPT_ABORT:
        return { next: 'abort', replies: [encodeOptionReply(option, NBD_REP_ACK)] };
      case NBD_OPT_LIST:
        return this.list(data);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.info(option, data);
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return error(option, NBD_REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        if (this.extendedHeaders) return error(option, NBD_REP_ERR_EXT_HEADER_REQD, 'extended headers are agreed already: no going back to compact ones');
        this.structuredReplies = true;
        return { next: 'options', replies: [encodeOptionReply(option, NBD_REP_ACK)] };
      case NBD_OPT_EXTENDED_HEADERS:
        if (data.length !== 0) return error(option, NBD_REP_ERR_INVALID, 'EXTENDED_HEADERS takes no data');
        this.extendedHeaders = true;
        this.structuredReplies = true;
        return { next: 'options', replies: [encodeOptionReply(option, NBD_REP_ACK)] };
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        return error(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private startTls(data: Uint8Array): Outcome {
    if (this.tls === null) return error(NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, 'TLS is not configured on this server');
    if (this.tlsOn) return error(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, 'TLS is on already');
    if (data.length !== 0) return error(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, 'STARTTLS takes no data');
    return { next: 'starttls', replies: [encodeOptionReply(NBD_OPT_STARTTLS, NBD_REP_ACK)] };
  }

  /** An option whose data was too large to read: refused, except EXPORT_NAME, which cannot be. */
  tooBig(option: number, lengthBytes: number): Outcome {
    if (option === NBD_OPT_EXPORT_NAME) return { next: 'close', replies: [], reason: `EXPORT_NAME of ${lengthBytes} bytes` };
    return error(option, NBD_REP_ERR_TOO_BIG, `option data of ${lengthBytes} bytes is too large`);
  }

  private exportName(data: Uint8Array): Outcome {
    if (this.extendedHeaders) return { next: 'close', replies: [], reason: 'EXPORT_NAME after EXTENDED_HEADERS (use GO)' };
    const name = decodeString(data, MAX_STRING_BYTES);
    const exported = name === null ? undefined : this.catalogue.lookup(name);
    if (name === null) return { next: 'close', replies: [], reason: 'EXPORT_NAME is not a valid string' };
    if (exported === undefined) return { next: 'close', replies: [], reason: `EXPORT_NAME: no export named "${name}"` };
    if (blockSizes(exported.device) === null) return { next: 'close', replies: [], reason: `EXPORT_NAME: "${name}" has a logical block over 64 KiB` };
    const flags = transmissionFlags(exported, this.structuredReplies);
    return {
      next: 'transmission',
      replies: [encodeExportNameReply(exported.device.sizeBytes, flags, this.noZeroes)],
      agreement: this.agreement(exported),
    };
  }

  private list(data: Uint8Array): Outcome {
    if (data.length !== 0) return error(NBD_OPT_LIST, NBD_REP_ERR_INVALID, 'LIST takes no data');
    const replies = this.catalogue.list().map((exported) => encodeOptionReply(NBD_OPT_LIST, NBD_REP_SERVER, encodeServerEntry(exported.name, exported.description ?? '')));
    replies.push(encodeOptionReply(NBD_OPT_LIST, NBD_REP_ACK));
    return { next: 'options', replies };
  }

  private info(option: number, data: Uint8Array): Outcome {
    const request = decodeGoRequest(data);
    if (typeof request === 'string') return error(option, NBD_REP_ERR_INVALID, request);
    const exported = this.catalogue.lookup(request.name);
    if (exported === undefined) return error(option, NBD_REP_ERR_UNKNOWN, `no export named "${request.name}"`);
    const sizes = blockSizes(exported.device);
    if (sizes === null) return error(option, NBD_REP_ERR_PLATFORM, `export "${request.name}" has a ${exported.device.logicalBlockBytes}-byte logical block; NBD allows at most 64 KiB`);
    const flags = transmissionFlags(exported, this.structuredReplies);
    const replies = [
      encodeOptionReply(option, NBD_REP_INFO, encodeInfoExport(exported.device.sizeBytes, flags)),
      // Always sent: our minimum (the device's logical block) is stricter than the default of 1.
      encodeOptionReply(option, NBD_REP_INFO, encodeInfoBlockSize(sizes.minimumBytes, sizes.preferredBytes, sizes.maximumBytes)),
    ];
    const asked = new Set(request.infoTypes);
    if (asked.has(NBD_INFO_NAME)) replies.push(encodeOptionReply(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, exported.name)));
    if (asked.has(NBD_INFO_DESCRIPTION) && exported.description !== undefined) {
      replies.push(encodeOptionReply(option, NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, exported.description)));
    }
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    if (option === NBD_OPT_INFO) return { next: 'options', replies };
    return { next: 'transmission', replies, agreement: this.agreement(exported) };
  }

  private metaContext(option: number, data: Uint8Array): Outcome {
    const setting = option === NBD_OPT_SET_META_CONTEXT;
    // SET replaces the selection even when it fails.
    if (setting) {
      this.metaExportName = null;
      this.metaSelected = [];
    }
    if (!this.structuredReplies) return error(option, NBD_REP_ERR_INVALID, 'negotiate STRUCTURED_REPLY before metadata contexts');
    const request = decodeMetaContextRequest(data);
    if (typeof request === 'string') return error(option, NBD_REP_ERR_INVALID, request);
    const exported = this.catalogue.lookup(request.name);
    if (exported === undefined) return error(option, NBD_REP_ERR_UNKNOWN, `no export named "${request.name}"`);
    for (const query of request.queries) {
      if (!query.includes(':')) return error(option, NBD_REP_ERR_INVALID, `metadata context query "${query}" has no namespace`);
    }
    const matches = contextsOf(exported).filter((context) => (setting ? request.queries.includes(context.name) : listed(context, request.queries)));
    const replies = matches.map((context) => encodeOptionReply(option, NBD_REP_META_CONTEXT, encodeMetaContext(setting ? context.id : 0, context.name)));
    replies.push(encodeOptionReply(option, NBD_REP_ACK));
    if (setting) {
      this.metaExportName = request.name;
      this.metaSelected = matches;
    }
    return { next: 'options', replies };
  }

  private agreement(exported: NbdExport): Agreement {
    return {
      exported,
      structuredReplies: this.structuredReplies,
      extendedHeaders: this.extendedHeaders,
      metaContexts: this.structuredReplies && this.metaExportName === exported.name ? this.metaSelected : [],
    };
  }
}

function error(option: number, replyType: number, message: string): Outcome {
  return { next: 'options', replies: [encodeOptionReply(option, replyType, utf8Truncated(message, MAX_MESSAGE_BYTES))] };
}
