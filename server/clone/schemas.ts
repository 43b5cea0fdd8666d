/** The clone routes' schemas: what they take and answer, validated and documented from here. */
import { z } from '@hono/zod-openapi';
import { Count, DeviceName, Name } from '../http/schemas.ts';
import { TABLE_CHARS_MAX } from './records.ts';

export const MESSAGE_CHARS_MAX = 256;

export const NewClone = z
  .strictObject({
    name: Name,
    table: z.string().max(TABLE_CHARS_MAX).openapi({
      description:
        '[0 <length>] clone <metadata dev> <destination dev> <source dev> <region size> [<#features> <feature>*] [<#core args> <key> <value>*]; ' +
        'devices are names in the data directory, the source may be an http(s) URL.',
    }),
  })
  .openapi('NewClone');

export const Message = z
  .strictObject({
    message: z.string().max(MESSAGE_CHARS_MAX).openapi({ description: 'disable_hydration, enable_hydration, hydration_threshold N or hydration_batch_size N.' }),
  })
  .openapi('Message');

export const Clone = z
  .strictObject({
    name: Name,
    table: z.string().openapi({ description: 'The effective dm-clone table line (messages included); the clone reopens from it after a restart.' }),
    suspended: z.boolean(),
    error: z.string().nullable().openapi({ description: 'Why the clone could not be reopened after a restart.' }),
    exports: z.array(Name),
    status: z.string().nullable().openapi({ description: "dm-clone's status line; null when the clone is not open. The fields below are that line parsed, plus progress." }),
    metadataBlockSectors: Count.optional(),
    metadataUsedBlocks: Count.optional(),
    metadataTotalBlocks: Count.optional(),
    regionSectors: Count.optional(),
    hydratedRegions: Count.optional(),
    totalRegions: Count.optional(),
    hydratingRegions: Count.optional(),
    features: z.array(z.enum(['no_hydration', 'no_discard_passdown'])).optional(),
    hydrationThreshold: Count.optional(),
    hydrationBatchSize: Count.optional(),
    mode: z.enum(['rw', 'ro', 'Fail']).optional(),
    hydrationEnabled: z.boolean().optional(),
    hydrationComplete: z.boolean().optional(),
    hydrationError: z.string().nullable().optional(),
    bytesHydrated: Count.optional(),
    totalBytes: Count.optional(),
    rateBytesPerSecond: z.number().optional(),
    etaSeconds: z.number().nullable().optional(),
    commits: Count.optional(),
  })
  .openapi('Clone');

export const CloneList = z.strictObject({ clones: z.array(Clone) });

export const Finalized = z.strictObject({ clone: Name, device: DeviceName }).openapi('Finalized');
