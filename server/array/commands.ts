/** `blockcore array ...`: the array engine's commands in mdadm's words, over the API (/v1/arrays). */
import { UsageError, takePositionals } from '../cli/args.ts';
import { pathOf, type Command } from '../cli/command.ts';
import { formatTable } from '../cli/format.ts';
import type { ArrayInfo } from './registry.ts';

function numberFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,12}$/.test(value)) throw new UsageError(`${flag} "${value}" must be a whole number`);
  return Number(value);
}

/** `array VERB NAME SLOT`: one request on a leg, then the array's state. */
function slotCommand(verb: string, method: 'POST' | 'DELETE', suffix: string, summary: string): Command {
  return {
    usage: `array ${verb} NAME SLOT`,
    summary,
    flags: {},
    async run(context, args) {
      const [name, slot] = takePositionals(args, ['NAME', 'SLOT'], this.usage);
      const array = await context.client().request<ArrayInfo>(method, `/v1/arrays/${pathOf(name!)}/legs/${pathOf(slot!)}${suffix}`);
      context.out(array.state ?? array.name);
    },
  };
}

export const ARRAY_COMMANDS: Record<string, Command> = {
  'array create': {
    usage: 'array create NAME --level raid1|raid10 [--lock in-process|etcd] [--layout n2|n3] [--nodes N] [--cluster-name NAME] [--chunk-bytes N] [--bitmap clustered|internal|none] [--bitmap-chunk-bytes N] [--spares N] [--size BYTES] [--assume-clean] [--resync-max BYTES_PER_SECOND] LEG...',
    summary: 'create a clustered array on device files (mdadm --create --bitmap=clustered) and assemble it here',
    flags: { '--level': 'value', '--lock': 'value', '--layout': 'value', '--nodes': 'value', '--cluster-name': 'value', '--chunk-bytes': 'value', '--bitmap-chunk-bytes': 'value', '--spares': 'value', '--size': 'value', '--bitmap': 'value', '--assume-clean': 'switch', '--resync-max': 'value' },
    async run(context, args) {
      const [name, ...legs] = args.positional;
      if (name === undefined || legs.length === 0) throw new UsageError(`expected NAME LEG... (usage: ${this.usage})`);
      const level = args.values.get('--level');
      if (level === undefined) throw new UsageError(`--level is required (usage: ${this.usage})`);
      const body: Record<string, unknown> = { name, legs, level };
      const lock = args.values.get('--lock');
      if (lock !== undefined) body.lock = lock;
      const layout = args.values.get('--layout');
      if (layout !== undefined) body.layout = layout;
      const clusterName = args.values.get('--cluster-name');
      if (clusterName !== undefined) body.clusterName = clusterName;
      const bitmap = args.values.get('--bitmap');
      if (bitmap !== undefined) body.bitmap = bitmap;
      for (const [flag, field] of [['--nodes', 'nodes'], ['--chunk-bytes', 'chunkSizeBytes'], ['--bitmap-chunk-bytes', 'bitmapChunkBytes'], ['--spares', 'spares'], ['--size', 'sizeBytes'], ['--resync-max', 'resyncMaxBytesPerSecond']] as const) {
        const value = numberFlag(args.values.get(flag), flag);
        if (value !== undefined) body[field] = value;
      }
      if (args.switches.has('--assume-clean')) body.assumeClean = true;
      const array = await context.client().request<ArrayInfo>('POST', '/v1/arrays', body);
      context.out(array.state ?? `${array.name}: ${array.error}`);
    },
  },
  'array assemble': {
    usage: 'array assemble NAME [--lock in-process|etcd] [--resync-max BYTES_PER_SECOND] LEG...',
    summary: 'assemble the array its legs hold, as one more node of it (mdadm --assemble)',
    flags: { '--lock': 'value', '--resync-max': 'value' },
    async run(context, args) {
      const [name, ...legs] = args.positional;
      if (name === undefined || legs.length === 0) throw new UsageError(`expected NAME LEG... (usage: ${this.usage})`);
      const lock = args.values.get('--lock');
      const rate = numberFlag(args.values.get('--resync-max'), '--resync-max');
      const array = await context.client().request<ArrayInfo>('POST', '/v1/arrays', {
        name, legs, assemble: true, ...(lock === undefined ? {} : { lock }), ...(rate === undefined ? {} : { resyncMaxBytesPerSecond: rate }),
      });
      context.out(array.state ?? `${array.name}: ${array.error}`);
    },
  },
  'array ls': {
    usage: 'array ls',
    summary: 'list arrays (like /proc/mdstat, one line each)',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { arrays } = await context.client().request<{ arrays: ArrayInfo[] }>('GET', '/v1/arrays');
      context.out(formatTable(['NAME', 'LEVEL', 'LEGS', 'SIZE', 'RESYNC', 'EXPORTS'], arrays.map((a) => [
        a.name,
        a.level ?? `not assembled: ${a.error}`,
        a.picture ?? '-',
        a.sizeBytes === undefined ? '-' : String(a.sizeBytes),
        a.resync === undefined ? '-' : a.resync.state === 'running' ? `${a.resync.doneChunks}/${a.resync.totalChunks}` : a.resync.state,
        a.exports.join(',') || '-',
      ])));
    },
  },
  'array detail': {
    usage: 'array detail NAME',
    summary: 'show an array as /proc/mdstat does, with its legs (mdadm --detail)',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const array = await context.client().request<ArrayInfo>('GET', `/v1/arrays/${pathOf(name!)}`);
      if (array.state === null) {
        context.out(`${array.name}: not assembled: ${array.error}`);
        return 1;
      }
      context.out(array.state);
      context.out(formatTable(['SLOT', 'ROLE', 'STATE', 'DEVICE'], array.legs.map((leg) => [String(leg.slot), leg.role === null ? '-' : String(leg.role), leg.state, leg.device])));
    },
  },
  'array add': {
    usage: 'array add NAME DEVICE [--spare | --grow]',
    summary: 'add a leg (mdadm --add; --spare: --add-spare; --grow: raid1 one more active leg, --grow --raid-devices=N+1)',
    flags: { '--spare': 'switch', '--grow': 'switch' },
    async run(context, args) {
      const [name, device] = takePositionals(args, ['NAME', 'DEVICE'], this.usage);
      const array = await context.client().request<ArrayInfo>('POST', `/v1/arrays/${pathOf(name!)}/legs`, { device, spare: args.switches.has('--spare'), grow: args.switches.has('--grow') });
      context.out(array.state ?? array.name);
    },
  },
  'array grow': {
    usage: 'array grow NAME (--size BYTES|max [--assume-clean] | --bitmap clustered|internal|none [--nodes N] [--bitmap-chunk-bytes N] [--cluster-name NAME])',
    summary: "change the array's size on every node, or switch its bitmap (mdadm --grow --size / --bitmap)",
    flags: { '--size': 'value', '--assume-clean': 'switch', '--bitmap': 'value', '--nodes': 'value', '--bitmap-chunk-bytes': 'value', '--cluster-name': 'value' },
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const size = args.values.get('--size');
      const bitmap = args.values.get('--bitmap');
      if ((size === undefined) === (bitmap === undefined)) throw new UsageError(`give --size or --bitmap (usage: ${this.usage})`);
      let array: ArrayInfo;
      if (size !== undefined) {
        const body: Record<string, unknown> = { sizeBytes: size === 'max' ? 'max' : numberFlag(size, '--size') };
        if (args.switches.has('--assume-clean')) body.assumeClean = true;
        array = await context.client().request<ArrayInfo>('POST', `/v1/arrays/${pathOf(name!)}/resize`, body);
      } else {
        const body: Record<string, unknown> = { bitmap };
        for (const [flag, field] of [['--nodes', 'nodes'], ['--bitmap-chunk-bytes', 'bitmapChunkBytes']] as const) {
          const value = numberFlag(args.values.get(flag), flag);
          if (value !== undefined) body[field] = value;
        }
        const clusterName = args.values.get('--cluster-name');
        if (clusterName !== undefined) body.clusterName = clusterName;
        array = await context.client().request<ArrayInfo>('POST', `/v1/arrays/${pathOf(name!)}/bitmap`, body);
      }
      context.out(array.state ?? array.name);
    },
  },
  'array remove': slotCommand('remove', 'DELETE', '', 'remove a spare or failed leg (mdadm --remove)'),
  'array fail': slotCommand('fail', 'POST', '/fail', 'mark a leg faulty on every node (mdadm --fail)'),
  'array re-add': slotCommand('re-add', 'POST', '/re-add', 'bring a failed leg back (mdadm --re-add): only what it missed is recovered'),
  'array resync-speed': {
    usage: 'array resync-speed NAME BYTES_PER_SECOND|none',
    summary: "set this node's resync and recovery rate limit, or lift it (md's sync_speed_max)",
    flags: {},
    async run(context, args) {
      const [name, rate] = takePositionals(args, ['NAME', 'BYTES_PER_SECOND'], this.usage);
      const maxBytesPerSecond = rate === 'none' ? null : numberFlag(rate, 'BYTES_PER_SECOND')!;
      const array = await context.client().request<ArrayInfo>('POST', `/v1/arrays/${pathOf(name!)}/resync-speed`, { maxBytesPerSecond });
      context.out(`${array.name}: resync limit ${array.resyncMaxBytesPerSecond === null || array.resyncMaxBytesPerSecond === undefined ? 'none' : `${array.resyncMaxBytesPerSecond} bytes/s`}`);
    },
  },
  'array stop': {
    usage: 'array stop NAME',
    summary: 'stop the array on this node (mdadm --stop); its legs keep it',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('POST', `/v1/arrays/${pathOf(name!)}/stop`);
      context.out(`stopped array ${name}`);
    },
  },
};
