/** The transport routes' schemas: what they take and answer, validated and documented from here. */
import { isIP } from 'node:net';
import { z } from '@hono/zod-openapi';
import { parseHostPort } from '../../runtime/transport/rtrs-address.ts';
import { POLICIES } from '../../runtime/transport/rtrs-policy.ts';
import { invalid } from '../errors.ts';
import { byCheck, Count, DeviceName, Name } from '../http/schemas.ts';
import { ACCESS_MODES, remoteNameProblem } from './records.ts';

const HostPort = z.string().max(300).superRefine(byCheck((value: string, field: string) => {
  try {
    parseHostPort(value, field);
  } catch (error) {
    throw invalid(field, (error as Error).message.replace(/^EINVAL: [^:]*: /, ''));
  }
})).openapi({ description: 'HOST:PORT ([IPv6]:PORT).', example: '127.0.0.1:10900' });

const SourceIp = z.string().max(45).refine((value) => isIP(value) !== 0, 'must be an IP address').openapi({ description: 'Local address to connect from (an IP of this machine).' });

export const PathSpec = z.strictObject({ dst: HostPort, src: SourceIp.optional() }).openapi('PathSpec');

export const NewSession = z
  .strictObject({
    name: Name.openapi({ description: 'The session name, also what the server knows it by: unique on that server.' }),
    paths: z.array(PathSpec).min(1).max(128),
    policy: z.enum(POLICIES).optional().openapi({ description: 'Multipath policy; default min-inflight.' }),
    keyFile: DeviceName.optional().openapi({ description: 'A file in the data directory holding the pre-shared key (first line, >= 16 characters).' }),
    digest: z.boolean().optional().openapi({ description: 'CRC32C over every frame; default false.' }),
    alwaysInvalidate: z.boolean().optional().openapi({ description: 'Require chunk keys to rotate after every IO (the server may rotate them anyway); default false.' }),
  })
  .openapi('NewSession');

const PathStats = z.strictObject({
  reconnects: z.strictObject({ ok: Count, failed: Count }),
  readCount: Count,
  readBytes: Count,
  writeCount: Count,
  writeBytes: Count,
  inflight: Count,
  failoverCount: Count,
  curLatencyMs: z.number(),
  state: z.enum(['CONNECTING', 'CONNECTING_ERR', 'RECONNECTING', 'CONNECTED', 'CLOSED', 'DEAD']),
});

export const Session = z
  .strictObject({
    name: Name,
    paths: z.array(PathSpec),
    policy: z.enum(POLICIES),
    keyFile: z.string().nullable(),
    digest: z.boolean(),
    alwaysInvalidate: z.boolean(),
    state: z.enum(['connected', 'connecting', 'closed']).openapi({ description: 'connected: a path is up; connecting: paths reconnect; closed: not open (see error).' }),
    error: z.string().nullable(),
    maxIoBytes: Count.nullable(),
    devices: z.array(Name),
    pathStats: z.array(z.strictObject({
      name: z.string(), dst: z.string(), src: z.string().nullable(), pathUuid: z.string(),
      threadedConnections: Count.openapi({ description: 'Of the path\'s connections, those served by IO threads (--rtrs-threads).' }),
      stats: PathStats,
    })),
  })
  .openapi('Session');

export const SessionList = z.strictObject({ sessions: z.array(Session) });

const RemoteName = z.string().superRefine(byCheck((value: string, field: string) => {
  const problem = remoteNameProblem(value);
  if (problem !== null) throw invalid(field, problem);
})).openapi({ description: "The device's name on the server: a file of its data directory, or an engine device such as clone:c1." });

export const NewDevice = z
  .strictObject({
    name: Name.openapi({ description: 'Our name for it: exports and clones use it as remote:<name>.' }),
    session: Name,
    device: RemoteName,
    access: z.enum(ACCESS_MODES).optional().openapi({ description: 'ro, rw (default; one writer) or migration (one extra writer).' }),
  })
  .openapi('NewRemoteDevice');

export const RemoteDevice = z
  .strictObject({
    name: Name,
    session: Name,
    device: z.string(),
    access: z.enum(ACCESS_MODES),
    open: z.boolean(),
    error: z.string().nullable(),
    sizeBytes: Count.nullable(),
    exports: z.array(Name),
  })
  .openapi('RemoteDevice');

export const RemoteDeviceList = z.strictObject({ devices: z.array(RemoteDevice) });

const ServerPath = z.strictObject({
  pathUuid: z.string(),
  state: z.enum(['CONNECTING', 'CONNECTED', 'CLOSING', 'CLOSED']),
  connections: Count,
  threadedConnections: Count.openapi({ description: 'Of the connections, those served by IO threads (--rtrs-threads).' }),
  remote: z.string(),
  stats: z.strictObject({ readCount: Count, readBytes: Count, writeCount: Count, writeBytes: Count, curLatencyMs: z.number() }),
});

export const ServerInfo = z
  .strictObject({
    listen: z.array(z.string()),
    keyRequired: z.boolean(),
    ioThreads: Count.openapi({ description: 'Worker threads serving IO connections (--rtrs-threads; 0 where the runtime cannot hand connections to threads).' }),
    sessions: z.array(z.strictObject({
      sessionName: z.string(),
      sessionUuid: z.string(),
      alwaysInvalidate: z.boolean(),
      requestsInFlight: Count,
      paths: z.array(ServerPath),
      devices: z.array(z.strictObject({ deviceId: Count, name: z.string(), access: z.string() })),
    })),
  })
  .openapi('TransportServer');

export const PathParams = z.strictObject({
  name: Name.openapi({ param: { name: 'name', in: 'path' }, description: "The session's name." }),
  path: z.string().max(300).openapi({ param: { name: 'path', in: 'path' }, description: "The path's name: its destination HOST:PORT." }),
});
