/**
 * The service's RTRS server with RNBD on top: it listens where `--rtrs` says (default 127.0.0.1:10900
 * and 127.0.0.2:10900: two addresses, so a client on this machine can have two paths), requires the
 * key of `--rtrs-key-file` when one is given (and refuses to listen off loopback without one), and
 * serves RNBD clients the service's devices by the names exports use: a device file of the data
 * directory (opened here for as long as a session has it open) or an engine device (`clone:c1`,
 * `remote:r1`: stacked, not owned).
 *
 * Files opened for RNBD are held like every other (device-holders.ts: many readers or one writer)
 * under one holder, `rnbd`: between RNBD sessions the kernel's own rules apply (rnbd-server.ts:
 * ro always, one rw, migration one more), and between RNBD and the rest of the service the
 * service's. A refusal becomes the errno the client gets (ENOENT, EINVAL, EBUSY).
 */
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { BlockError } from '../../runtime/errors.ts';
import { ERRNO, RemoteError } from '../../runtime/transport/rtrs-api.ts';
import { formatHostPort, parseHostPort, type HostPort } from '../../runtime/transport/rtrs-address.ts';
import { RnbdServer, type ResolvedDevice } from '../../runtime/transport/rnbd-server.ts';
import type { RnbdAccess } from '../../runtime/transport/rnbd-messages.ts';
import { RtrsServer, type ServerSessionInfo } from '../../runtime/transport/rtrs-server.ts';
import { defaultKernels } from '../../runtime/wasm/kernels.ts';
import { devicePath, statDevice } from '../device-files.ts';
import { checkCanHold, type Hold } from '../device-holders.ts';
import type { EngineContext } from '../engine.ts';
import { ServiceError } from '../errors.ts';
import { parseDeviceRef } from '../names.ts';
import { readKeyFile } from './key-file.ts';

/** Who holds the files RNBD clients opened (one holder: RNBD's own rules apply between its sessions). */
const RTRS_HOLDER = 'rnbd';

export interface ListenerInfo {
  listen: string[];
  keyRequired: boolean;
  /** IO threads serving connections (--rtrs-threads, where the runtime can). */
  ioThreads: number;
  sessions: Array<ServerSessionInfo & { devices: Array<{ deviceId: number; name: string; access: string }> }>;
}

/** Parses `--rtrs`'s value: addresses separated by commas. */
export function parseListenList(value: string): HostPort[] {
  const parts = value.split(',').map((part) => part.trim()).filter((part) => part !== '');
  if (parts.length === 0) throw new BlockError('EINVAL', 'expected HOST:PORT[,HOST:PORT...]');
  return parts.map((part) => parseHostPort(part, 'address', true));
}

export class RnbdListener {
  private readonly holds: Hold[] = [];
  private addresses: string[] = [];

  private constructor(
    private readonly context: EngineContext,
    private readonly server: RtrsServer,
    readonly rnbd: RnbdServer,
    private readonly keyRequired: boolean,
  ) {}

  /** Starts listening on every address; if one fails, closes what it opened and rejects. */
  static async start(context: EngineContext, addresses: readonly HostPort[], keyFile: string | null, ioThreads = 0): Promise<RnbdListener> {
    const key = keyFile === null ? null : readKeyFile(keyFile);
    const kernels = await defaultKernels();
    let listener: RnbdListener | null = null;
    const rnbd = new RnbdServer((name, access) => listener!.resolve(name, access), { log: (line) => context.log(line) });
    const server = new RtrsServer({ handler: rnbd, crc32c: (bytes, seed) => kernels.crc32c(bytes, seed), key, ioThreads, log: (line) => context.log(line) });
    listener = new RnbdListener(context, server, rnbd, key !== null);
    try {
      for (const address of addresses) listener.addresses.push(await server.listen(address.host, address.port));
    } catch (error) {
      await server.close();
      throw new Error(`RTRS cannot listen on ${addresses.map(formatHostPort).join(',')}: ${(error as Error).message}`);
    }
    return listener;
  }

  get listening(): string[] {
    return [...this.addresses];
  }

  heldFiles(): Hold[] {
    return [...this.holds];
  }

  info(): ListenerInfo {
    const opened = new Map(this.rnbd.sessions().map((session) => [session.sessionUuid, session.devices]));
    return {
      listen: this.listening,
      keyRequired: this.keyRequired,
      ioThreads: this.server.ioThreadCount,
      sessions: this.server.sessionsInfo().map((session) => ({ ...session, devices: opened.get(session.sessionUuid) ?? [] })),
    };
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private async resolve(name: string, access: RnbdAccess): Promise<ResolvedDevice> {
    try {
      const ref = parseDeviceRef(name, 'device', [...this.context.engineKinds()]);
      if (ref.kind !== 'file') return { device: this.context.engineDevice(name, 'device'), release: async () => {} };
      statDevice(this.context.dataDir, ref.name, 'device');
      const path = devicePath(this.context.dataDir, ref.name, 'device');
      const hold: Hold = { path, name: ref.name, access: access === 'ro' ? 'read' : 'write', holder: RTRS_HOLDER };
      checkCanHold(this.context.holds(), hold, 'device');
      const device = await FileDevice.open(path, { readOnly: access === 'ro' });
      this.holds.push(hold);
      return {
        device,
        release: async () => {
          this.holds.splice(this.holds.indexOf(hold), 1);
          await device.close();
        },
      };
    } catch (error) {
      throw asRemote(error);
    }
  }
}

/** A service refusal as the errno an RNBD client gets. */
function asRemote(error: unknown): unknown {
  if (!(error instanceof ServiceError)) return error;
  const errno = error.code === 'ENOENT' ? ERRNO.ENOENT : error.code === 'EBUSY' ? ERRNO.EBUSY : error.code === 'EINVAL' ? ERRNO.EINVAL : ERRNO.EIO;
  return new RemoteError(errno, error.message);
}
