/**
 * Debian's mdadm as the judge of our legs: `mdadm --examine` reads a leg file directly;
 * `mdadm --examine-bitmap` only finds an internal bitmap on a block device, so the leg is attached
 * read-only to a loop device (losetup, as root) for it and detached after. Output is parsed into
 * "Key : value" fields; the clustered bitmap's per-slot sections into one record per slot.
 */
import { mustRun, requireTools } from './tools.ts';

export type Fields = Record<string, string>;

export async function mdadmExamine(path: string): Promise<Fields> {
  requireTools(['mdadm']);
  return parseFields(await mustRun('mdadm', ['--examine', path]));
}

export interface BitmapReport {
  fields: Fields;
  slots: Fields[];
}

export async function mdadmExamineBitmap(path: string): Promise<BitmapReport> {
  requireTools(['mdadm', 'losetup']);
  const loop = (await mustRun('losetup', ['--find', '--show', '--read-only', path])).trim();
  try {
    const out = await mustRun('mdadm', ['--examine-bitmap', loop]);
    const [head, ...sections] = out.split(/^(?=\s*Node Slot :)/m);
    return { fields: parseFields(head!), slots: sections.map(parseFields) };
  } finally {
    await mustRun('losetup', ['--detach', loop]);
  }
}

function parseFields(text: string): Fields {
  const fields: Fields = {};
  for (const line of text.split('\n')) {
    const match = /^\s*([A-Za-z][A-Za-z '.]*?)\s+:\s?(.*)$/.exec(line);
    if (match) fields[match[1]!] = match[2]!.trimEnd();
  }
  return fields;
}
