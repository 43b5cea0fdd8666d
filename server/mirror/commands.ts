/** `blockcore mirror ...` and `blockcore log ...`: the mirror engine's commands, over the API (/v1/mirrors, /v1/logs). */
import { UsageError, takePositionals } from '../cli/args.ts';
import { pathOf, type Command } from '../cli/command.ts';
import { formatTable } from '../cli/format.ts';
import type { MirrorInfo } from './registry.ts';

/** `mirror VERB NAME`: one POST, then the mirror's status line. */
function nameCommand(verb: string, summary: string): Command {
  return {
    usage: `mirror ${verb} NAME`,
    summary,
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const mirror = await context.client().request<MirrorInfo>('POST', `/v1/mirrors/${pathOf(name!)}/${verb}`);
      context.out(mirror.statusInfo ?? `${mirror.name}: ${mirror.error}`);
    },
  };
}

export const MIRROR_COMMANDS: Record<string, Command> = {
  'mirror create': {
    usage: 'mirror create NAME [--policy remove|replace] [--spares DEV,DEV] TABLE...',
    summary: 'create a mirror from a dm mirror table line (mirror core 2 1024 nosync 2 a.img 0 b.img 0 1 handle_errors)',
    flags: { '--policy': 'value', '--spares': 'value' },
    async run(context, args) {
      const [name, ...words] = args.positional;
      if (name === undefined || words.length === 0) throw new UsageError(`expected NAME TABLE... (usage: ${this.usage})`);
      const body: Record<string, unknown> = { name, table: words.join(' ') };
      const policy = args.values.get('--policy');
      if (policy !== undefined) body.legFaultPolicy = policy;
      const spares = args.values.get('--spares');
      if (spares !== undefined) body.spares = spares.split(',').filter((spare) => spare.length > 0);
      const mirror = await context.client().request<MirrorInfo>('POST', '/v1/mirrors', body);
      context.out(mirror.statusInfo ?? `${mirror.name}: ${mirror.error}`);
    },
  },
  'mirror ls': {
    usage: 'mirror ls',
    summary: 'list mirrors: legs with their health, sync progress, exports',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { mirrors } = await context.client().request<{ mirrors: MirrorInfo[] }>('GET', '/v1/mirrors');
      context.out(formatTable(['NAME', 'LEGS', 'HEALTH', 'SYNC', 'LOG', 'EXPORTS'], mirrors.map((m) => [
        m.name,
        m.legs.map((leg) => leg.device).join(',') || '-',
        m.legs.map((leg) => leg.health).join('') || '-',
        m.syncPercent === null ? `not open: ${m.error}` : `${m.syncPercent}%${m.resyncing ? ' resyncing' : ''}${m.suspended ? ' suspended' : ''}`,
        m.table.split(' ')[1] ?? '-',
        m.exports.join(',') || '-',
      ])));
    },
  },
  'mirror show': {
    usage: 'mirror show NAME',
    summary: 'one mirror: its table and dm status lines (dmsetup table / status)',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const m = await context.client().request<MirrorInfo>('GET', `/v1/mirrors/${pathOf(name!)}`);
      context.out([`table:  ${m.statusTable ?? m.table}`, `status: ${m.statusInfo ?? m.error}`, ...(m.pendingTable ? [`inactive table: ${m.pendingTable}`] : [])].join('\n'));
    },
  },
  'mirror fail': {
    usage: 'mirror fail NAME LEG',
    summary: 'fail a leg as a write error would (the fault policy applies)',
    flags: {},
    async run(context, args) {
      const [name, leg] = takePositionals(args, ['NAME', 'LEG'], this.usage);
      const mirror = await context.client().request<MirrorInfo>('POST', `/v1/mirrors/${pathOf(name!)}/legs/${pathOf(leg!)}/fail`);
      context.out(mirror.statusInfo ?? mirror.name);
    },
  },
  'mirror resync': nameCommand('resync', 'resync every region from the default leg (lvchange --resync)'),
  'mirror suspend': nameCommand('suspend', 'suspend the mirror (dmsetup suspend)'),
  'mirror resume': nameCommand('resume', 'resume the mirror, swapping in a table loaded by replace-table (dmsetup resume)'),
  'mirror replace-table': {
    usage: 'mirror replace-table NAME TABLE...',
    summary: 'load a new table beside the live one; the next resume swaps it in (dmsetup load)',
    flags: {},
    async run(context, args) {
      const [name, ...words] = args.positional;
      if (name === undefined || words.length === 0) throw new UsageError(`expected NAME TABLE... (usage: ${this.usage})`);
      const mirror = await context.client().request<MirrorInfo>('POST', `/v1/mirrors/${pathOf(name)}/replace-table`, { table: words.join(' ') });
      context.out(`loaded, inactive until resume: ${mirror.pendingTable}`);
    },
  },
  'mirror rm': {
    usage: 'mirror rm NAME',
    summary: 'close and forget a mirror (its legs and log keep their bytes)',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/mirrors/${pathOf(name!)}`);
      context.out(`removed mirror ${name}`);
    },
  },
  'log ls': {
    usage: 'log ls',
    summary: "the dirty-log server's instances (uuid, luid, type, regions, in sync, live or inactive)",
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { socket, logs } = await context.client().request<{ socket: string | null; logs: Array<{ uuid: string; luid: number; type: string; regionCount: number; inSyncRegions: number; dirtyRegions: number; state: string }> }>('GET', '/v1/logs');
      context.out(`socket: ${socket ?? 'off'}\n${formatTable(['UUID', 'LUID', 'TYPE', 'REGIONS', 'IN SYNC', 'DIRTY', 'STATE'], logs.map((log) => [log.uuid, String(log.luid), log.type, String(log.regionCount), String(log.inSyncRegions), String(log.dirtyRegions), log.state]))}`);
    },
  },
};
