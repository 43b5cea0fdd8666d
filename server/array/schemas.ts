/** The array routes' schemas: what they take and answer, validated and documented from here. */
import { z } from '@hono/zod-openapi';
import { NODES_MAX } from '../../runtime/cluster/leg-layout.ts';
import { Count, DeviceName, Name } from '../http/schemas.ts';
import { LEGS_MAX } from './records.ts';

const BitmapKind = z.enum(['clustered', 'internal', 'none']).openapi({
  description: 'clustered: a write-intent bitmap per node slot (several nodes); internal: one bitmap, one node; none: no bitmap, a crash resyncs everything.',
});

const LockKind = z.enum(['in-process', 'etcd']).openapi({
  description: 'The lock manager the array\'s nodes coordinate through: in-process (default: this service is every node of it) or etcd (nodes are separate services started with --etcd: create on one, assemble on the others with the same lock). Assembling with another kind than the array was created with is refused.',
});

const ResyncRate = z.number().int().min(4096).max(Number.MAX_SAFE_INTEGER);

const Legs = z.array(DeviceName).min(1).max(LEGS_MAX).openapi({ description: 'Device files of the data directory, one per leg, in slot order (spares last).' });

export const NewArray = z
  .strictObject({
    name: Name,
    legs: Legs,
    assemble: z.boolean().optional().openapi({ description: 'true: assemble the array the legs already hold (join it as one more node); the fields below `lock` are not taken then.' }),
    lock: LockKind.optional(),
    level: z.enum(['raid1', 'raid10']).optional().openapi({ description: 'Required to create.' }),
    layout: z.enum(['n2', 'n3']).optional().openapi({ description: 'raid10: near copies (default n2).' }),
    nodes: z.number().int().min(1).max(NODES_MAX).optional().openapi({ description: 'Node slots of the clustered bitmap (default 2, as mdadm needs at least two).' }),
    clusterName: z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/).optional().openapi({ description: 'The bitmap\'s cluster name (default "blockcore").' }),
    chunkSizeBytes: z.number().int().min(4096).max(64 * 1024 * 1024).optional().openapi({ description: 'raid10 chunk (mdadm --chunk; default 512 KiB), a power of two.' }),
    bitmapChunkBytes: z.number().int().min(4096).max(2 ** 30).optional().openapi({ description: 'Write-intent bitmap chunk (mdadm --bitmap-chunk; default 64 MiB), a power of two.' }),
    assumeClean: z.boolean().optional().openapi({ description: 'Skip the initial resync (mdadm --assume-clean).' }),
    spares: z.number().int().min(0).max(LEGS_MAX - 1).optional().openapi({ description: 'How many of the last legs are spares (default 0).' }),
    sizeBytes: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional().openapi({ description: "The array's size (mdadm --size, here in bytes of array); default: all the smallest leg holds. Growing later (POST /resize) needs no new legs." }),
    bitmap: BitmapKind.optional().openapi({ description: 'The bitmap (mdadm --bitmap; default clustered). internal and none take one node at a time; room for a clustered bitmap of `nodes` slots is kept.' }),
    resyncMaxBytesPerSecond: ResyncRate.optional().openapi({ description: "This node's resync and recovery rate limit in bytes per second (md's sync_speed_max; default: none). Taken on create and on assemble; kept across restarts; POST /resync-speed changes it." }),
  })
  .openapi('NewArray');

export const ResyncSpeed = z
  .strictObject({
    maxBytesPerSecond: ResyncRate.nullable().openapi({ description: "The most bytes per second this node's resync and recovery copy (md's sync_speed_max); null: no limit. Copies that start from now on keep to it." }),
  })
  .openapi('ResyncSpeed');

export const SwitchBitmap = z
  .strictObject({
    bitmap: BitmapKind,
    nodes: z.number().int().min(1).max(NODES_MAX).optional().openapi({ description: 'clustered: node slots (default 2).' }),
    bitmapChunkBytes: z.number().int().min(4096).max(2 ** 30).optional().openapi({ description: 'clustered or internal: the bitmap chunk (default 64 MiB), a power of two.' }),
    clusterName: z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/).optional().openapi({ description: 'clustered: the cluster name (default "blockcore").' }),
  })
  .openapi('SwitchBitmap');

export const ResizeArray = z
  .strictObject({
    sizeBytes: z.union([z.number().int().min(1).max(Number.MAX_SAFE_INTEGER), z.literal('max')]).openapi({
      description: "The array's new size in bytes (raid1: a multiple of 4096; raid10: a size of its layout), or \"max\": the most the legs and the bitmap's node slots hold.",
    }),
    assumeClean: z.boolean().optional().openapi({ description: 'Growing: take the new part as in sync, no resync (mdadm --assume-clean).' }),
  })
  .openapi('ResizeArray');

const Leg = z.strictObject({
  device: DeviceName,
  slot: Count.openapi({ description: "The leg's device number (md's dev_number): what /legs/{slot} names." }),
  role: Count.nullable().openapi({ description: 'Its place in the array while active; null for spares and failed legs.' }),
  state: z.enum(['active', 'spare', 'faulty']),
  recovering: z.boolean().openapi({ description: 'Active but still being recovered: written, not read.' }),
});

export const NewLeg = z
  .strictObject({
    device: DeviceName,
    spare: z.boolean().optional().openapi({ description: 'Keep it a spare even when a role is vacant (mdadm --add-spare).' }),
    grow: z.boolean().optional().openapi({ description: 'raid1: one more active leg, rebuilt on this device (mdadm --grow --raid-devices=N+1 --add); a spare of the array named here becomes that leg (mdadm --grow --raid-devices=N+1).' }),
  })
  .openapi('NewLeg');

const Range = z.strictObject({ lowSectors: Count, highSectors: Count });

export const ArrayInfo = z
  .strictObject({
    name: Name,
    legs: z.array(Leg),
    lock: LockKind,
    error: z.string().nullable().openapi({ description: 'Why the array could not be assembled after a restart.' }),
    exports: z.array(Name),
    state: z.string().nullable().openapi({ description: 'The array as /proc/mdstat prints it (level, legs with their slots, size, [n/m] [UU], resync progress or PENDING, bitmap).' }),
    level: z.enum(['raid1', 'raid10']).optional(),
    picture: z.string().optional().openapi({ description: '[UU], [U_]: one letter per slot, U in use.' }),
    slot: Count.optional().openapi({ description: "This node's slot in the clustered bitmap (0-based)." }),
    nodes: Count.optional(),
    bitmap: z.enum(['clustered', 'internal', 'none']).optional(),
    nodesSeen: z.array(Count).optional().openapi({ description: 'Slots of the nodes this node knows to be in the cluster (itself included).' }),
    recoveringNodes: z.boolean().optional().openapi({ description: 'A departed node\'s slot is being recovered here (its bits merged; a resync follows).' }),
    sizeBytes: Count.optional(),
    events: Count.optional(),
    resync: z.strictObject({ state: z.enum(['idle', 'pending', 'running']), doneChunks: Count, totalChunks: Count }).optional(),
    suspended: z.array(Range).optional().openapi({ description: "Ranges other nodes are resyncing: this node's writes there wait." }),
    dirtyChunks: Count.optional().openapi({ description: "Bits set in this node's write-intent bitmap." }),
    chunkBytes: Count.optional(),
    bitmapCommits: Count.optional(),
    messages: z.strictObject({ sent: Count, received: Count, refused: Count }).optional(),
    resyncMaxBytesPerSecond: Count.nullable().optional().openapi({ description: "This node's resync and recovery rate limit (md's sync_speed_max); null: none." }),
    fenced: z.boolean().optional().openapi({ description: 'True once this node may not write to the legs: its etcd lease could not be renewed in time. The service assembles it again as a new member once etcd answers.' }),
  })
  .openapi('Array');

export const ArrayList = z.strictObject({ arrays: z.array(ArrayInfo) });
