/**
 * A resource's keys as the shared queue rules (../resource.ts) see them, and back: `loadResource`
 * rebuilds a Resource from the head and request keys a mirror holds at one revision; the caller
 * applies one call to it (a request, conversion, unlock, cancel or purge) and the grant pass;
 * `resourceWrites` turns the result into the puts and deletes of one transaction, guarded by the
 * head's mod revision, so the decision and the state it was made on cannot come apart.
 */
import type { EtcdCompare, EtcdKeyValue, EtcdOp } from './etcd-store.ts';
import { Resource, type LockEntry, type Outcome } from '../resource.ts';
import { VALUE_BLOCK_BYTES, type LockMode } from '../modes.ts';
import {
  decodeEntry, decodeHead, encodeEntry, encodeHead, KeyValueError, type EntryRecord, type HeadRecord, type LockspaceKeys,
} from './lock-keys.ts';

export interface LoadedResource {
  readonly name: string;
  readonly resource: Resource;
  readonly head: HeadRecord;
  /** Null when the resource has no head yet (its first request creates it). */
  readonly headModRevision: string | null;
  /** Request key -> entry, and entry -> its key and record as read. */
  readonly byKey: Map<string, LockEntry>;
  readonly records: Map<LockEntry, { key: string; lease: string; record: EntryRecord | null }>;
  /** The seq the transaction that writes this state gives new requests and conversions. */
  readonly nextSeq: number;
  /** Entries granted by this call or its pass (their `told` starts over). */
  readonly grantedNow: Set<LockEntry>;
}

/**
 * The resource `name` from the mirror's keys. A request key that does not decode is reported
 * through `onBadKey` and left out; a head that does not decode is thrown (the resource cannot be
 * used until it is repaired).
 */
export function loadResource(
  keys: LockspaceKeys,
  name: string,
  kvs: EtcdKeyValue[],
  onBadKey: (error: KeyValueError) => void,
): LoadedResource {
  const headKey = keys.head(name);
  const headKv = kvs.find((kv) => kv.key === headKey);
  const head = headKv === undefined
    ? { seq: 0, lvb: new Uint8Array(VALUE_BLOCK_BYTES), valid: true }
    : decodeHead(headKey, headKv.value);
  const resource = new Resource(name);
  resource.valueBlock.set(head.lvb);
  resource.valueBlockValid = head.valid;
  const loaded: LoadedResource = {
    name, resource, head, headModRevision: headKv?.modRevision ?? null,
    byKey: new Map(), records: new Map(), nextSeq: head.seq + 1, grantedNow: new Set(),
  };
  const converting: { entry: LockEntry; c: number }[] = [];
  const waiting: { entry: LockEntry; q: number }[] = [];
  for (const kv of kvs) {
    const parsed = keys.parse(kv.key);
    if (parsed.kind !== 'lock' || parsed.resource !== name) continue;
    let record: EntryRecord;
    try {
      record = decodeEntry(kv.key, kv.value);
    } catch (error) {
      if (!(error instanceof KeyValueError)) throw error;
      onBadKey(error);
      continue;
    }
    const entry = resource.newEntry(record.slot);
    entry.grantedMode = record.g;
    entry.requestedMode = record.r;
    entry.highestBlockingMode = record.hb;
    if (record.g === null) {
      entry.state = 'waiting';
      waiting.push({ entry, q: record.q });
    } else {
      resource.granted.push(entry);
      entry.state = record.r === null ? 'granted' : 'converting';
      if (record.r !== null) converting.push({ entry, c: record.c });
    }
    loaded.byKey.set(kv.key, entry);
    loaded.records.set(entry, { key: kv.key, lease: parsed.lease, record });
  }
  for (const { entry } of converting.sort((a, b) => a.c - b.c)) resource.converting.push(entry);
  for (const { entry } of waiting.sort((a, b) => a.q - b.q)) resource.waiting.push(entry);
  return loaded;
}

/** Adds a new request's entry (not yet in etcd) under `key`. */
export function addEntry(loaded: LoadedResource, key: string, lease: string, slot: number): LockEntry {
  const entry = loaded.resource.newEntry(slot);
  loaded.byKey.set(key, entry);
  loaded.records.set(entry, { key, lease, record: null });
  return entry;
}

/** Grants `entry` in `mode` now (a new request or a conversion that fits), noting the grant. */
export function grantNow(loaded: LoadedResource, entry: LockEntry, mode: LockMode): void {
  loaded.resource.grant(entry, mode);
  loaded.grantedNow.add(entry);
}

/** Runs the grant pass; returns the blocking notices per entry, in order. */
export function runGrantPass(loaded: LoadedResource): Map<LockEntry, LockMode[]> {
  const outbox: Outcome[] = [];
  loaded.resource.grantPass(outbox);
  const notices = new Map<LockEntry, LockMode[]>();
  for (const outcome of outbox) {
    if (outcome.kind === 'granted') {
      loaded.grantedNow.add(outcome.entry);
      notices.delete(outcome.entry);
    } else {
      notices.set(outcome.entry, [...(notices.get(outcome.entry) ?? []), outcome.mode]);
    }
  }
  return notices;
}

/**
 * The compare and ops that write `loaded` back: every request key that changed, every one that
 * went, and the head (seq advanced, the value block as the call left it). `conversionsNow` are
 * the entries whose conversion this call queued (they get the new seq as their place).
 */
export function resourceWrites(
  keys: LockspaceKeys,
  loaded: LoadedResource,
  notices: Map<LockEntry, LockMode[]>,
  conversionsNow: Set<LockEntry> = new Set(),
): { compare: EtcdCompare; ops: EtcdOp[] } {
  const ops: EtcdOp[] = [];
  for (const [entry, { key, record }] of loaded.records) {
    if (entry.state === 'gone') {
      if (record !== null) ops.push({ delete: { key } });
      continue;
    }
    const grantedNow = loaded.grantedNow.has(entry);
    const next: EntryRecord = {
      slot: entry.memberSlot,
      g: entry.grantedMode,
      r: entry.requestedMode,
      q: record?.q ?? loaded.nextSeq,
      c: conversionsNow.has(entry) ? loaded.nextSeq : record?.c ?? 0,
      hb: entry.highestBlockingMode,
      told: [...(grantedNow ? [] : record?.told ?? []), ...(notices.get(entry) ?? [])],
      gs: (record?.gs ?? 0) + (grantedNow ? 1 : 0),
    };
    if (record !== null && sameRecord(record, next)) continue;
    ops.push({ put: { key, value: encodeEntry(next) } });
  }
  ops.push({
    put: {
      key: keys.head(loaded.name),
      value: encodeHead({ seq: loaded.nextSeq, lvb: loaded.resource.valueBlock, valid: loaded.resource.valueBlockValid }),
    },
  });
  return { compare: resourceUnchanged(keys, loaded), ops };
}

/** The compare alone: the state `loaded` was read at is still current (a decision that writes nothing). */
export function resourceUnchanged(keys: LockspaceKeys, loaded: LoadedResource): EtcdCompare {
  const headKey = keys.head(loaded.name);
  return loaded.headModRevision === null
    ? { key: headKey, target: 'version', op: '==', value: '0' }
    : { key: headKey, target: 'modRevision', op: '==', value: loaded.headModRevision };
}

function sameRecord(a: EntryRecord, b: EntryRecord): boolean {
  return a.slot === b.slot && a.g === b.g && a.r === b.r && a.q === b.q && a.c === b.c && a.hb === b.hb
    && a.gs === b.gs && a.told.length === b.told.length && a.told.every((mode, i) => mode === b.told[i]);
}
