/** The mirror and log routes' schemas: what they take and answer, validated and documented from here. */
import { z } from '@hono/zod-openapi';
import { DeviceName, Name } from '../http/schemas.ts';
import { SPARES_MAX } from './records.ts';

const Table = z.string().min(1).max(4096).openapi({
  description: 'dm\'s mirror table line: `mirror <log type> <#log args> <log args...> <#legs> <leg> <offset>... [<#features> handle_errors [keep_log]]`; log types core (`<region sectors> [sync|nosync]`), disk (`<dev> <region sectors> [sync|nosync]`) and userspace (`<uuid> [integrated_flush] <core|disk|clustered-core|clustered-disk> <args...>`: a log of this service\'s log server); legs and log devices are device files of the data directory, offsets in sectors.',
  example: 'mirror core 2 1024 nosync 2 leg0.img 0 leg1.img 0 1 handle_errors',
});

export const NewMirror = z
  .strictObject({
    name: Name,
    table: Table,
    legFaultPolicy: z.enum(['remove', 'replace']).optional().openapi({ description: 'With handle_errors, what a failed leg becomes (LVM\'s mirror_image_fault_policy): remove (default: the mirror goes on without it, linear when one leg is left) or replace (the next of `spares` takes its place and is resynced whole).' }),
    spares: z.array(DeviceName).max(SPARES_MAX).optional().openapi({ description: 'Device files for policy replace, used in order.' }),
  })
  .openapi('NewMirror');

export const ReplaceTable = z.strictObject({ table: Table }).openapi('ReplaceTable');

const MirrorLegInfo = z.strictObject({
  device: DeviceName,
  offsetSectors: z.number().int().min(0),
  health: z.enum(['A', 'D', 'R', 'S', 'F']).openapi({ description: "dm's letter: A alive, D write error, R read error, S resync error, F flush error." }),
  state: z.enum(['in-sync', 'recovering', 'failed']),
  errors: z.number().int().min(0),
  isDefault: z.boolean().openapi({ description: 'The leg resync copies from and out-of-sync regions are read from.' }),
});

export const MirrorInfo = z
  .strictObject({
    name: Name,
    table: z.string().openapi({ description: 'The table as loaded now, in dm\'s words.' }),
    statusInfo: z.string().nullable().openapi({ description: 'dm\'s status line (`<#legs> <legs> <in sync>/<regions> 1 <health> <log status>`); null when not open.' }),
    statusTable: z.string().nullable().openapi({ description: 'dm\'s table status line (the log\'s own table words first).' }),
    regionSectors: z.number().int().nullable(),
    regionCount: z.number().int().nullable(),
    inSyncRegions: z.number().int().nullable(),
    syncPercent: z.number().nullable(),
    resyncing: z.boolean(),
    suspended: z.boolean(),
    pendingTable: z.string().nullable().openapi({ description: 'A table loaded by replace-table, swapped in by the next resume.' }),
    legs: z.array(MirrorLegInfo),
    legFaultPolicy: z.enum(['remove', 'replace']),
    spares: z.array(DeviceName),
    exports: z.array(z.string()),
    error: z.string().nullable(),
  })
  .openapi('MirrorInfo');

export const MirrorList = z.strictObject({ mirrors: z.array(MirrorInfo) }).openapi('MirrorList');

const LogInfo = z.strictObject({
  uuid: z.string(),
  luid: z.number().int(),
  type: z.enum(['core', 'disk', 'clustered-core', 'clustered-disk']),
  table: z.string().openapi({ description: 'The log arguments its CTR gave.' }),
  regionSectors: z.number().int(),
  regionCount: z.number().int(),
  inSyncRegions: z.number().int(),
  dirtyRegions: z.number().int(),
  state: z.enum(['inactive', 'live', 'suspended']).openapi({ description: 'inactive: constructed, not resumed (a table loaded beside the live one of its uuid); live: serving; suspended: after POSTSUSPEND.' }),
  device: z.string().nullable(),
  deviceState: z.string(),
  groupMembers: z.number().int().nullable().openapi({ description: "Clustered logs: the members of the log's group (log servers of every node with the log live) as this one sees them; null for core and disk logs." }),
});

export const LogList = z
  .strictObject({
    socket: z.string().nullable().openapi({ description: 'The Unix socket the log server listens on (null: off).' }),
    logs: z.array(LogInfo),
  })
  .openapi('LogList');
