/** `blockcore clone ...`: the clone engine's commands, over the API (/v1/clones). */
import { UsageError, takePositionals } from '../cli/args.ts';
import { pathOf, type Command } from '../cli/command.ts';
import { formatTable } from '../cli/format.ts';
import type { CloneInfo } from './entry.ts';
import { progressLine, watchClone } from './progress.ts';

export const CLONE_COMMANDS: Record<string, Command> = {
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
      const clone = await client.request<CloneInfo>('GET', `/v1/clones/${pathOf(name!)}`);
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
      const clone = await context.client().request<CloneInfo>('POST', `/v1/clones/${pathOf(name)}/message`, { message: words.join(' ') });
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
      const done = await context.client().request<{ clone: string; device: string }>('POST', `/v1/clones/${pathOf(name!)}/finalize`);
      context.out(`finalized ${done.clone}: ${done.device} is now a plain device`);
    },
  },
  'clone rm': {
    usage: 'clone rm NAME',
    summary: 'close a clone (its files stay)',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/clones/${pathOf(name!)}`);
      context.out(`deleted clone ${name}`);
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
      const clone = await context.client().request<CloneInfo>('POST', `/v1/clones/${pathOf(name!)}/${action}`);
      context.out(`${clone.name}: ${action === 'suspend' ? 'suspended' : 'resumed'}`);
    },
  };
}
