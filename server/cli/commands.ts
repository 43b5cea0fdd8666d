/**
 * The CLI's commands, each a usage line, its flags and what it asks the API. Output is for people:
 * tables for listings, one line for changes; the server's errors come back as one line on stderr
 * (main.ts).
 */
import type { DeviceInfo, CloneInfo, ExportInfo } from '../service.ts';
import { UsageError, takePositionals, type Args, type FlagSpec } from './args.ts';
import type { ApiClient } from './client.ts';
import { formatBytes, formatTable, parseSize } from './format.ts';
import { progressLine, watchClone } from './progress.ts';

export interface CommandContext {
  client(): ApiClient;
  out(line: string): void;
  /** Raw text to stdout (the in-place progress line). */
  write(text: string): void;
  isTty: boolean;
}

export interface Command {
  usage: string;
  summary: string;
  flags: FlagSpec;
  run(context: CommandContext, args: Args): Promise<number | void>;
}

const path = (...parts: string[]) => parts.map((part) => encodeURIComponent(part)).join('/');

export const COMMANDS: Record<string, Command> = {
  'device create': {
    usage: 'device create NAME SIZE',
    summary: 'create a sparse device file (SIZE like 4096, 512M, 10G)',
    flags: {},
    async run(context, args) {
      const [name, size] = takePositionals(args, ['NAME', 'SIZE'], this.usage);
      const device = await context.client().request<DeviceInfo>('POST', '/v1/devices', { name, sizeBytes: parseSize(size!, 'SIZE') });
      context.out(`created ${device.name} (${formatBytes(device.sizeBytes)})`);
    },
  },
  'device ls': {
    usage: 'device ls',
    summary: 'list device files',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { devices } = await context.client().request<{ devices: DeviceInfo[] }>('GET', '/v1/devices');
      context.out(formatTable(['NAME', 'SIZE', 'ALLOCATED', 'USED BY'], devices.map((d) => [d.name, formatBytes(d.sizeBytes), formatBytes(d.allocatedBytes), d.usedBy.join(',') || '-'])));
    },
  },
  'device rm': {
    usage: 'device rm NAME',
    summary: 'delete a device file',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/devices/${name!.split('/').map((part) => encodeURIComponent(part)).join('/')}`);
      context.out(`deleted ${name}`);
    },
  },
  'clone create': {
    usage: 'clone create NAME --table TABLE',
    summary: "open a clone from a dm-clone table line: 'clone META DEST SOURCE REGION_SECTORS ...'",
    flags: { '--table': 'value' },
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const table = args.values.get('--table');
      if (table === undefined) throw new UsageError(`--table is required (usage: ${this.usage})`);
      const clone = await context.client().request<CloneInfo>('POST', '/v1/clones', { name, table });
      context.out(`created clone ${clone.name}: ${clone.status}`);
    },
  },
  'clone ls': {
    usage: 'clone ls',
    summary: 'list clones with their progress',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { clones } = await context.client().request<{ clones: CloneInfo[] }>('GET', '/v1/clones');
      context.out(formatTable(['NAME', 'PROGRESS', 'EXPORTS', 'TABLE'], clones.map((c) => [
        c.name,
        c.status === null ? `not open: ${c.error}` : progressLine(c, false).slice(c.name.length + 1),
        c.exports.join(',') || '-',
        c.table,
      ])));
    },
  },
  'clone status': {
    usage: 'clone status NAME [--watch] [--interval-ms N]',
    summary: 'show a clone; --watch follows hydration to the end',
    flags: { '--watch': 'switch', '--interval-ms': 'value' },
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const client = context.client();
      if (args.switches.has('--watch')) {
        const intervalText = args.values.get('--interval-ms') ?? '1000';
        if (!/^\d{1,7}$/.test(intervalText) || Number(intervalText) < 10) throw new UsageError(`--interval-ms "${intervalText}" must be an integer of at least 10`);
        return watchClone(client, name!, { tty: context.isTty, intervalMs: Number(intervalText), write: context.write });
      }
      const clone = await client.request<CloneInfo>('GET', `/v1/clones/${path(name!)}`);
      if (clone.status === null) {
        context.out(`${clone.name}: not open: ${clone.error}`);
        return 1;
      }
      context.out(progressLine(clone, false));
      context.out(`status ${clone.status}`);
      context.out(`table  ${clone.table}`);
      if (clone.suspended) context.out('suspended');
      if (clone.hydrationError) context.out(`hydration stopped: ${clone.hydrationError}`);
    },
  },
  'clone message': {
    usage: 'clone message NAME MESSAGE...',
    summary: 'send a dm-clone message: disable_hydration, enable_hydration, hydration_threshold N, hydration_batch_size N',
    flags: {},
    async run(context, args) {
      const [name, ...words] = args.positional;
      if (name === undefined || words.length === 0) throw new UsageError(`expected NAME MESSAGE... (usage: ${this.usage})`);
      const clone = await context.client().request<CloneInfo>('POST', `/v1/clones/${path(name)}/message`, { message: words.join(' ') });
      context.out(`${clone.name}: ${clone.status}`);
    },
  },
  'clone suspend': simpleCloneAction('suspend', 'stop hydration and I/O, and commit'),
  'clone resume': simpleCloneAction('resume', 'resume I/O and hydration'),
  'clone finalize': {
    usage: 'clone finalize NAME',
    summary: 'once hydrated: drop the clone, keep its destination as a plain device',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const done = await context.client().request<{ clone: string; device: string }>('POST', `/v1/clones/${path(name!)}/finalize`);
      context.out(`finalized ${done.clone}: ${done.device} is now a plain device`);
    },
  },
  'clone rm': {
    usage: 'clone rm NAME',
    summary: 'close a clone (its files stay)',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/clones/${path(name!)}`);
      context.out(`deleted clone ${name}`);
    },
  },
  'export add': {
    usage: 'export add NAME DEVICE [--read-only] [--description TEXT]',
    summary: 'serve a device over NBD (DEVICE: a device name, or clone:NAME)',
    flags: { '--read-only': 'switch', '--description': 'value' },
    async run(context, args) {
      const [name, device] = takePositionals(args, ['NAME', 'DEVICE'], this.usage);
      const description = args.values.get('--description');
      const body = { name, device, readOnly: args.switches.has('--read-only'), ...(description === undefined ? {} : { description }) };
      const created = await context.client().request<ExportInfo>('POST', '/v1/exports', body);
      context.out(`exported ${created.device} as ${created.name}${created.readOnly ? ' (read-only)' : ''}`);
    },
  },
  'export ls': {
    usage: 'export ls',
    summary: 'list exports and their clients',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { exports } = await context.client().request<{ exports: ExportInfo[] }>('GET', '/v1/exports');
      context.out(formatTable(['NAME', 'DEVICE', 'MODE', 'SIZE', 'CLIENTS'], exports.map((e) => [
        e.name, e.device, e.readOnly ? 'ro' : 'rw', e.sizeBytes === null ? `not open: ${e.error}` : formatBytes(e.sizeBytes),
        e.clients.map((client) => client.remote).join(',') || '-',
      ])));
    },
  },
  'export rm': {
    usage: 'export rm NAME',
    summary: 'stop serving an export',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/exports/${path(name!)}`);
      context.out(`deleted export ${name}`);
    },
  },
  events: {
    usage: 'events',
    summary: 'print events as they happen (one JSON object a line) until interrupted',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      await context.client().events((event) => context.out(event.data));
    },
  },
};

function simpleCloneAction(action: 'suspend' | 'resume', summary: string): Command {
  return {
    usage: `clone ${action} NAME`,
    summary,
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const clone = await context.client().request<CloneInfo>('POST', `/v1/clones/${path(name!)}/${action}`);
      context.out(`${clone.name}: ${action === 'suspend' ? 'suspended' : 'resumed'}`);
    },
  };
}
