/**
 * The CLI's commands, each a usage line, its flags and what it asks the API. Output is for people:
 * tables for listings, one line for changes; the server's errors come back as one line on stderr
 * (main.ts).
 */
import { ENGINES } from '../engines.ts';
import type { ClusterInfo } from '../cluster/coordinator.ts';
import type { DeviceInfo, ExportInfo } from '../service.ts';
import { takePositionals } from './args.ts';
import { pathOf, type Command } from './command.ts';
import { formatBytes, formatTable, parseSize } from './format.ts';

export type { Command, CommandContext } from './command.ts';

/** Devices, each engine's commands (engines.ts), exports, events. */
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
  ...Object.assign({}, ...ENGINES.map((engine) => engine.commands)),
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
      await context.client().request('DELETE', `/v1/exports/${pathOf(name!)}`);
      context.out(`deleted export ${name}`);
    },
  },
  cluster: {
    usage: 'cluster',
    summary: 'this node (name, id) and, with --etcd, the registered nodes and each lockspace\'s members and slots',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const info = await context.client().request<ClusterInfo>('GET', '/v1/cluster');
      context.out(`node ${info.node.name} (${info.node.id})`);
      if (info.etcd === null) {
        context.out('etcd: not configured (arrays use the in-process lock manager)');
        return;
      }
      const { etcd } = info;
      context.out(`etcd ${etcd.urls.join(',')}: ${etcd.reachable ? 'reachable' : 'NOT REACHABLE'}, lease TTL ${etcd.leaseTtlSeconds} s`);
      context.out(formatTable(['NODE', 'ID'], etcd.nodes.map((n) => [n.name, n.id])));
      if (etcd.lockspaces.length > 0) {
        context.out(formatTable(['LOCKSPACE', 'MEMBERS (SLOT)', 'OUR SLOT', 'WRITES FOR'], etcd.lockspaces.map((l) => [
          l.lockspace, l.members.map((m) => `${m.name} (${m.slot})`).join(', '), String(l.slot), `${l.writesAllowedForMs} ms`,
        ])));
      }
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
