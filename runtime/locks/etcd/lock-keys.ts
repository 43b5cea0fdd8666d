/**
 * Where the etcd lock manager keeps a lockspace, and the values it writes there (the on-etcd
 * format; frozen by test/etcd-lock-keys.test.ts). Under the lockspace prefix
 * `<root><lockspace>/` (names percent-encoded, so a `/` in a name cannot reach another key):
 *
 *   members/<lease>              {"name","slot","node"}   on the member's lease (node: optional)
 *   names/<member name>          <lease>                  on the lease (a name is taken once)
 *   slots/<slot>                 <lease>                  on the lease (create-if-absent: one holder)
 *   res/<resource>/head          {"seq","lvb","valid"}    the resource's version key and value block
 *   res/<resource>/lock/<lease>/<lockId>
 *                                {"slot","g","r","q","c","hb","told","gs"}   one per request
 *   sync                         anything                 the settle barrier (tests)
 *
 * A request: `g` the granted mode (null while a new request waits), `r` the requested mode of a
 * waiting request or conversion (null when none), `q` its place among new requests and `c` among
 * conversions (both from the head's `seq`, which every transaction on the resource advances), `hb`
 * the highest mode its holder was told it blocks since its last grant, `told` those notices in
 * order (the holder delivers the ones it has not yet), `gs` how many grants it had (a new grant
 * restarts `told`). The head's `lvb` is the 64-byte value block in hex.
 *
 * Values are checked when read: a key whose value does not decode is reported once by key and
 * left out (it is never a grant); a head that does not decode makes its resource refuse calls.
 */
import { LockMode, VALUE_BLOCK_BYTES, isLockMode } from '../modes.ts';

export const DEFAULT_ROOT = '/blockcore/locks/';

export class KeyValueError extends Error {
  override name = 'KeyValueError';
  constructor(readonly key: string, why: string) {
    super(`etcd key ${key}: ${why}`);
  }
}

export interface MemberRecord {
  name: string;
  slot: number;
  /** The node (service) the member runs in: a restarted node takes its old members' names over. */
  node?: string;
}

export interface HeadRecord {
  seq: number;
  lvb: Uint8Array;
  valid: boolean;
}

export interface EntryRecord {
  slot: number;
  g: LockMode | null;
  r: LockMode | null;
  q: number;
  c: number;
  hb: number;
  told: LockMode[];
  gs: number;
}

const enc = (name: string) => encodeURIComponent(name);

export class LockspaceKeys {
  readonly prefix: string;

  constructor(root: string, readonly lockspace: string) {
    this.prefix = `${root}${enc(lockspace)}/`;
  }

  get members(): string {
    return `${this.prefix}members/`;
  }
  member(lease: string): string {
    return `${this.members}${lease}`;
  }
  name(memberName: string): string {
    return `${this.prefix}names/${enc(memberName)}`;
  }
  get slots(): string {
    return `${this.prefix}slots/`;
  }
  slot(slot: number): string {
    return `${this.slots}${slot}`;
  }
  get resources(): string {
    return `${this.prefix}res/`;
  }
  resource(resource: string): string {
    return `${this.resources}${enc(resource)}/`;
  }
  head(resource: string): string {
    return `${this.resource(resource)}head`;
  }
  lock(resource: string, lease: string, lockId: number): string {
    return `${this.resource(resource)}lock/${lease}/${lockId}`;
  }
  get sync(): string {
    return `${this.prefix}sync`;
  }

  /** What a key under the prefix is, or null for keys this manager does not write. */
  parse(key: string):
    | { kind: 'member'; lease: string }
    | { kind: 'head'; resource: string }
    | { kind: 'lock'; resource: string; lease: string; lockId: number }
    | { kind: 'other' } {
    if (!key.startsWith(this.prefix)) return { kind: 'other' };
    const rest = key.slice(this.prefix.length).split('/');
    if (rest[0] === 'members' && rest.length === 2 && /^\d+$/.test(rest[1]!)) return { kind: 'member', lease: rest[1]! };
    if (rest[0] !== 'res' || rest.length < 3) return { kind: 'other' };
    const resource = safeDecode(rest[1]!);
    if (resource === null) return { kind: 'other' };
    if (rest.length === 3 && rest[2] === 'head') return { kind: 'head', resource };
    if (rest.length === 5 && rest[2] === 'lock' && /^\d+$/.test(rest[3]!) && /^\d+$/.test(rest[4]!)) {
      return { kind: 'lock', resource, lease: rest[3]!, lockId: Number(rest[4]) };
    }
    return { kind: 'other' };
  }
}

function safeDecode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export function encodeMember(record: MemberRecord): Uint8Array {
  return encoder.encode(JSON.stringify({ name: record.name, slot: record.slot, ...(record.node === undefined ? {} : { node: record.node }) }));
}

export function decodeMember(key: string, value: Uint8Array): MemberRecord {
  const raw = parseObject(key, value);
  if (typeof raw.name !== 'string' || raw.name.length === 0) throw new KeyValueError(key, 'member name is not a non-empty string');
  if (!isCount(raw.slot) || raw.slot < 1) throw new KeyValueError(key, 'member slot is not a positive integer');
  if (raw.node !== undefined && (typeof raw.node !== 'string' || raw.node.length === 0 || raw.node.length > 64)) throw new KeyValueError(key, 'member node is not a string of 1 to 64 characters');
  return { name: raw.name, slot: raw.slot, ...(raw.node === undefined ? {} : { node: raw.node as string }) };
}

export function encodeHead(head: HeadRecord): Uint8Array {
  return encoder.encode(JSON.stringify({ seq: head.seq, lvb: toHex(head.lvb), valid: head.valid }));
}

export function decodeHead(key: string, value: Uint8Array): HeadRecord {
  const raw = parseObject(key, value);
  if (!isCount(raw.seq)) throw new KeyValueError(key, 'head seq is not a non-negative integer');
  if (typeof raw.lvb !== 'string' || !new RegExp(`^[0-9a-f]{${VALUE_BLOCK_BYTES * 2}}$`).test(raw.lvb)) {
    throw new KeyValueError(key, `head lvb is not ${VALUE_BLOCK_BYTES} bytes of lowercase hex`);
  }
  if (typeof raw.valid !== 'boolean') throw new KeyValueError(key, 'head valid is not a boolean');
  return { seq: raw.seq, lvb: fromHex(raw.lvb), valid: raw.valid };
}

export function encodeEntry(entry: EntryRecord): Uint8Array {
  return encoder.encode(JSON.stringify({
    slot: entry.slot, g: entry.g, r: entry.r, q: entry.q, c: entry.c, hb: entry.hb, told: entry.told, gs: entry.gs,
  }));
}

export function decodeEntry(key: string, value: Uint8Array): EntryRecord {
  const raw = parseObject(key, value);
  const modeOrNull = (field: string) => {
    const v = raw[field];
    if (v === null) return null;
    if (!isLockMode(v)) throw new KeyValueError(key, `${field} is not a lock mode or null`);
    return v;
  };
  const g = modeOrNull('g');
  const r = modeOrNull('r');
  if (g === null && r === null) throw new KeyValueError(key, 'neither granted (g) nor requested (r)');
  for (const field of ['slot', 'q', 'c', 'gs']) {
    if (!isCount(raw[field])) throw new KeyValueError(key, `${field} is not a non-negative integer`);
  }
  if (!Number.isInteger(raw.hb) || (raw.hb as number) < -1 || (raw.hb as number) > LockMode.EX) throw new KeyValueError(key, 'hb is not -1 or a lock mode');
  if (!Array.isArray(raw.told) || raw.told.length > 6 || !raw.told.every(isLockMode)) throw new KeyValueError(key, 'told is not a list of at most 6 lock modes');
  return {
    slot: raw.slot as number, g, r, q: raw.q as number, c: raw.c as number, hb: raw.hb as number,
    told: raw.told as LockMode[], gs: raw.gs as number,
  };
}

function parseObject(key: string, value: Uint8Array): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(value));
  } catch {
    throw new KeyValueError(key, 'value is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new KeyValueError(key, 'value is not a JSON object');
  return parsed as Record<string, unknown>;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function toHex(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += byte.toString(16).padStart(2, '0');
  return text;
}

function fromHex(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}
