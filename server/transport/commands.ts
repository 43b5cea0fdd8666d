/** `blockcore transport ...`: the transport engine's commands, over the API (/v1/transport). */
import { UsageError, takePositionals } from '../cli/args.ts';
import { pathOf, type Command } from '../cli/command.ts';
import { formatBytes, formatTable } from '../cli/format.ts';
import type { DeviceInfo, SessionInfo } from './registry.ts';
import type { ListenerInfo } from './rnbd-listener.ts';

/** `SRC@HOST:PORT` or `HOST:PORT`. */
function pathSpec(text: string): { dst: string; src?: string } {
  const at = text.lastIndexOf('@');
  return at < 0 ? { dst: text } : { dst: text.slice(at + 1), src: text.slice(0, at) };
}

function sessionLines(session: SessionInfo): string[] {
  const head = `${session.name}: ${session.state}${session.error ? ` (${session.error})` : ''}, policy ${session.policy}${session.digest ? ', digest' : ''}${session.maxIoBytes ? `, max io ${formatBytes(session.maxIoBytes)}` : ''}`;
  const rows = session.pathStats.map((path) => {
    const s = path.stats;
    return [path.name, s.state, `${s.reconnects.ok} ${s.reconnects.failed}`, `${s.readCount} ${formatBytes(s.readBytes)}`, `${s.writeCount} ${formatBytes(s.writeBytes)}`, String(s.inflight), String(s.failoverCount), `${s.curLatencyMs.toFixed(2)} ms`];
  });
  return [head, formatTable(['PATH', 'STATE', 'RECONNECTS', 'READS', 'WRITES', 'INFLIGHT', 'FAILOVERS', 'LATENCY'], rows)];
}

function sessionAction(words: string, usage: string, summary: string, method: 'POST' | 'DELETE', suffix: (path: string) => string): Command {
  return {
    usage,
    summary,
    flags: {},
    async run(context, args) {
      const [name, path] = takePositionals(args, ['SESSION', 'PATH'], this.usage);
      const session = await context.client().request<SessionInfo>(method, `/v1/transport/sessions/${pathOf(name!, 'paths', path!)}${suffix(path!)}`);
      context.out(`${words} ${path}`);
      for (const line of sessionLines(session)) context.out(line);
    },
  };
}

export const TRANSPORT_COMMANDS: Record<string, Command> = {
  'transport server': {
    usage: 'transport server',
    summary: 'where our RTRS server listens, and the sessions connected to it',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const server = await context.client().request<ListenerInfo>('GET', '/v1/transport/server');
      context.out(server.listen.length ? `listening on ${server.listen.join(' ')}${server.keyRequired ? ', key required' : ''}` : 'not listening');
      context.out(formatTable(['SESSION', 'PATHS', 'IN FLIGHT', 'DEVICES'], server.sessions.map((session) => [
        session.sessionName, session.paths.map((path) => `${path.remote} ${path.state}`).join(', '), String(session.requestsInFlight), session.devices.map((device) => `${device.name} (${device.access})`).join(', ') || '-',
      ])));
    },
  },
  'transport session create': {
    usage: 'transport session create NAME [SRC@]HOST:PORT... [--policy P] [--key-file F] [--digest] [--always-invalidate]',
    summary: 'open an RTRS session, one path per address (P: round-robin, min-inflight, min-latency)',
    flags: { '--policy': 'value', '--key-file': 'value', '--digest': 'switch', '--always-invalidate': 'switch' },
    async run(context, args) {
      const [name, ...paths] = args.positional;
      if (name === undefined || paths.length === 0) throw new UsageError(`expected NAME and at least one HOST:PORT (usage: ${this.usage})`);
      const body: Record<string, unknown> = { name, paths: paths.map(pathSpec), digest: args.switches.has('--digest'), alwaysInvalidate: args.switches.has('--always-invalidate') };
      if (args.values.has('--policy')) body.policy = args.values.get('--policy');
      if (args.values.has('--key-file')) body.keyFile = args.values.get('--key-file');
      const session = await context.client().request<SessionInfo>('POST', '/v1/transport/sessions', body);
      for (const line of sessionLines(session)) context.out(line);
    },
  },
  'transport session ls': {
    usage: 'transport session ls',
    summary: 'list sessions with their paths',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { sessions } = await context.client().request<{ sessions: SessionInfo[] }>('GET', '/v1/transport/sessions');
      if (sessions.length === 0) context.out('no sessions');
      for (const session of sessions) for (const line of sessionLines(session)) context.out(line);
    },
  },
  'transport session show': {
    usage: 'transport session show NAME',
    summary: "one session's paths and their stats (the kernel's sysfs)",
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      for (const line of sessionLines(await context.client().request<SessionInfo>('GET', `/v1/transport/sessions/${pathOf(name!)}`))) context.out(line);
    },
  },
  'transport session rm': {
    usage: 'transport session rm NAME',
    summary: 'close a session (unmap its devices first)',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/transport/sessions/${pathOf(name!)}`);
      context.out(`closed session ${name}`);
    },
  },
  'transport session reset-stats': {
    usage: 'transport session reset-stats NAME',
    summary: "zero a session's path stats",
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      for (const line of sessionLines(await context.client().request<SessionInfo>('POST', `/v1/transport/sessions/${pathOf(name!)}/stats/reset`))) context.out(line);
    },
  },
  'transport path add': {
    usage: 'transport path add SESSION [SRC@]HOST:PORT',
    summary: 'add a path to a session',
    flags: {},
    async run(context, args) {
      const [name, path] = takePositionals(args, ['SESSION', 'HOST:PORT'], this.usage);
      const session = await context.client().request<SessionInfo>('POST', `/v1/transport/sessions/${pathOf(name!)}/paths`, pathSpec(path!));
      for (const line of sessionLines(session)) context.out(line);
    },
  },
  'transport path rm': sessionAction('removed path', 'transport path rm SESSION PATH', 'remove a path (its IO fails over)', 'DELETE', () => ''),
  'transport path reconnect': sessionAction('reconnecting', 'transport path reconnect SESSION PATH', 'drop a path and connect it again now', 'POST', () => '/reconnect'),
  'transport path disconnect': sessionAction('disconnected', 'transport path disconnect SESSION PATH', 'close a path until reconnect', 'POST', () => '/disconnect'),
  'transport map': {
    usage: 'transport map NAME --session S --device D [--access ro|rw|migration]',
    summary: "map a server's device over a session, usable as remote:NAME",
    flags: { '--session': 'value', '--device': 'value', '--access': 'value' },
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      const session = args.values.get('--session');
      const device = args.values.get('--device');
      if (session === undefined || device === undefined) throw new UsageError(`--session and --device are required (usage: ${this.usage})`);
      const body = { name, session, device, ...(args.values.has('--access') ? { access: args.values.get('--access') } : {}) };
      const mapped = await context.client().request<DeviceInfo>('POST', '/v1/transport/devices', body);
      context.out(`mapped ${mapped.device} over ${mapped.session} as remote:${mapped.name} (${mapped.access}, ${formatBytes(mapped.sizeBytes ?? 0)})`);
    },
  },
  'transport devices': {
    usage: 'transport devices',
    summary: 'list remote devices',
    flags: {},
    async run(context, args) {
      takePositionals(args, [], this.usage);
      const { devices } = await context.client().request<{ devices: DeviceInfo[] }>('GET', '/v1/transport/devices');
      context.out(formatTable(['NAME', 'SESSION', 'DEVICE', 'ACCESS', 'SIZE', 'STATE'], devices.map((d) => [
        `remote:${d.name}`, d.session, d.device, d.access, d.sizeBytes === null ? '-' : formatBytes(d.sizeBytes), d.open ? 'open' : `not open: ${d.error}`,
      ])));
    },
  },
  'transport unmap': {
    usage: 'transport unmap NAME',
    summary: 'unmap a remote device',
    flags: {},
    async run(context, args) {
      const [name] = takePositionals(args, ['NAME'], this.usage);
      await context.client().request('DELETE', `/v1/transport/devices/${pathOf(name!)}`);
      context.out(`unmapped remote:${name}`);
    },
  },
};
