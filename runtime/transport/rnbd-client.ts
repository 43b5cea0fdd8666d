/**
 * The RNBD client over one RTRS session (rtrs-api.ts), as the kernel's drivers/block/rnbd/rnbd-clt.c:
 * SESS_INFO once connected, then OPEN for each device mapped, each a RemoteDevice
 * (rnbd-remote-device.ts) usable wherever a BlockDevice is.
 *
 * Link state machine (the devices wait on it; see rnbd-remote-device.ts):
 *   up         requests go;
 *   down       after the session's 'disconnected': requests wait (RTRS reconnects the paths);
 *   reopening  after 'reconnected': SESS_INFO again, then every device OPENed again with its name
 *              and access (the server may hand out new device ids, or, if it kept our session,
 *              the same ones); requests keep waiting, and go once every re-open has answered.
 *              A device whose re-open fails fails its requests with EIO until a later reconnect
 *              re-opens it. A 'disconnected' during a re-open makes it down again, and the next
 *              'reconnected' starts over;
 *   gone       after 'closed' (RTRS gave up on every path): requests fail with EIO (final).
 * RTRS is expected to report 'disconnected' before it rejects requests with ENOTCONN for lost
 * paths, so a request refused that way is retried once its device is re-opened, not failed.
 *
 * One device name (normalised: `a//b` is `a/b`) is open at most once per client (EEXIST): the
 * server answers a second OPEN of a name with the same device id, so a CLOSE of one mapping
 * would close the other. close() closes every device (CLOSE each) and stops listening; the session
 * belongs to the caller, who closes it.
 */
import { BlockError } from '../errors.ts';
import { RemoteDevice, requestOpen, type RnbdLink } from './rnbd-remote-device.ts';
import {
  decodeSessInfoRsp, encodeClose, deviceNameProblem, encodeSessInfo, invalidSessInfoRsp, normalizeDeviceName, OPEN_BYTES, RNBD_ACCESS,
  RNBD_PROTOCOL_VERSION_MAJOR, SESS_INFO_RSP_BYTES, type RnbdAccess,
} from './rnbd-messages.ts';
import { blockErrorOf, RemoteError, type RtrsClientSession, type RtrsLinkEvent } from './rtrs-api.ts';

export { RemoteDevice, type WriteZeroesOptions } from './rnbd-remote-device.ts';

export type RnbdLinkState = 'up' | 'down' | 'reopening' | 'gone';

export interface RnbdClientOptions {
  /** One line per reconnect, failed re-open and failed CLOSE. */
  log?: (line: string) => void;
}

export class RnbdClient implements RnbdLink {
  /** The protocol version agreed in SESS_INFO (the lower of the two sides'). */
  version = RNBD_PROTOCOL_VERSION_MAJOR;
  private linkState: RnbdLinkState = 'up';
  /** Bumped by every link event, so a re-open can tell it was overtaken. */
  private epoch = 0;
  private wakeChanged!: () => void;
  private nextChange!: Promise<void>;
  private readonly devicesByName = new Map<string, RemoteDevice>();
  private readonly opening = new Set<string>();
  /** Ids of devices closed while the link was down: CLOSEd after the next SESS_INFO (closeLater). */
  private staleIds: number[] = [];
  private readonly unsubscribe: () => void;
  private readonly logLine: (line: string) => void;
  private closing: Promise<void> | undefined;

  private constructor(readonly session: RtrsClientSession, options: RnbdClientOptions) {
    this.logLine = options.log ?? (() => {});
    this.renewChange();
    this.unsubscribe = session.onLinkEvent((event) => this.onLinkEvent(event));
  }

  /** Starts RNBD on a connected session: SESS_INFO. */
  static async connect(session: RtrsClientSession, options: RnbdClientOptions = {}): Promise<RnbdClient> {
    if (session.maxHeaderBytes < OPEN_BYTES) {
      throw new BlockError('EINVAL', `session ${session.sessionName} takes headers of ${session.maxHeaderBytes} bytes, RNBD needs ${OPEN_BYTES}`);
    }
    const client = new RnbdClient(session, options);
    try {
      client.version = await client.sessInfo();
    } catch (error) {
      client.unsubscribe();
      throw error;
    }
    return client;
  }

  get state(): RnbdLinkState {
    return this.linkState;
  }

  get isUp(): boolean {
    return this.linkState === 'up';
  }

  get isGone(): boolean {
    return this.linkState === 'gone';
  }

  changed(): Promise<void> {
    return this.nextChange;
  }

  closeLater(deviceId: number): void {
    this.staleIds.push(deviceId);
  }

  forget(device: RemoteDevice): void {
    if (this.devicesByName.get(device.deviceName) === device) this.devicesByName.delete(device.deviceName);
  }

  log(line: string): void {
    this.logLine(line);
  }

  /** The devices open now. */
  devices(): RemoteDevice[] {
    return [...this.devicesByName.values()];
  }

  /** Maps the server's device `name` with `access`. */
  async open(name: string, access: RnbdAccess): Promise<RemoteDevice> {
    const label = `rnbd:${this.session.sessionName}/${String(name)}`;
    if (this.closing !== undefined) throw new BlockError('EBADF', 'open on a closed RNBD client', { device: label });
    const problem = deviceNameProblem(name);
    if (problem !== null) throw new BlockError('EINVAL', `cannot open: ${problem}`, { device: label });
    if (!Object.hasOwn(RNBD_ACCESS, access)) throw new BlockError('EINVAL', `access must be ro, rw or migration, got ${String(access)}`, { device: label });
    const deviceName = normalizeDeviceName(name);
    if (deviceName === '') throw new BlockError('EINVAL', 'cannot open: device name is empty', { device: label });
    if (this.devicesByName.has(deviceName) || this.opening.has(deviceName)) throw new BlockError('EEXIST', `${deviceName} is open on this session already`, { device: label });
    this.opening.add(deviceName);
    try {
      await this.whenUp(label);
      const epoch = this.epoch;
      const device = new RemoteDevice(this, deviceName, access, await requestOpen(this.session, deviceName, access, label));
      this.devicesByName.set(deviceName, device);
      // Opened just as the link changed: make sure it is open on the server's session of now.
      if (this.epoch !== epoch) {
        await this.whenUp(label);
        await device.reopen();
      }
      return device;
    } finally {
      this.opening.delete(deviceName);
    }
  }

  /** Closes every device and stops following the session (which stays the caller's to close). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.setState(this.linkState); // wakes opens waiting for the link, which now see the client closing
      await Promise.all(this.devices().map((device) => device.close()));
      this.unsubscribe();
    })();
    return this.closing;
  }

  private async whenUp(label: string): Promise<void> {
    while (!this.isUp) {
      if (this.closing !== undefined) throw new BlockError('EBADF', 'the RNBD client closed while waiting for the session to reconnect', { device: label });
      await this.changed();
    }
  }

  private async sessInfo(): Promise<number> {
    const data = new Uint8Array(SESS_INFO_RSP_BYTES);
    try {
      await this.session.request({ direction: 'read', header: encodeSessInfo({ version: RNBD_PROTOCOL_VERSION_MAJOR }), data });
    } catch (error) {
      if (error instanceof RemoteError) throw blockErrorOf(error.errno, `SESS_INFO refused: ${error.message}`, this.session.sessionName);
      throw error;
    }
    const problem = invalidSessInfoRsp(data);
    if (problem !== null) throw new BlockError('EIO', `SESS_INFO answered with a bad SESS_INFO_RSP: ${problem}`, { device: this.session.sessionName });
    return Math.min(decodeSessInfoRsp(data).version, RNBD_PROTOCOL_VERSION_MAJOR);
  }

  private onLinkEvent(event: RtrsLinkEvent): void {
    if (this.closing !== undefined || this.linkState === 'gone') return;
    this.epoch++;
    if (event === 'closed') {
      this.log(`rnbd: session ${this.session.sessionName} has no path left; its devices fail`);
      this.setState('gone');
    } else if (event === 'disconnected') {
      this.log(`rnbd: session ${this.session.sessionName} disconnected; requests wait for the reconnect`);
      this.setState('down');
    } else {
      void this.reopenAll(this.epoch);
    }
  }

  private async reopenAll(epoch: number): Promise<void> {
    this.setState('reopening');
    const devices = this.devices();
    try {
      this.version = await this.sessInfo();
      // Before any OPEN, so an id a new server session hands out again cannot be the one closed.
      const stale = this.staleIds.splice(0);
      await Promise.all(stale.map((deviceId) => this.session.request({ direction: 'write', header: encodeClose({ deviceId }), data: new Uint8Array(0) }).catch(() => {})));
      await Promise.all(devices.map((device) => device.reopen()));
    } catch (error) {
      for (const device of devices) device.fail(error);
    }
    if (this.epoch !== epoch) return;
    this.log(`rnbd: session ${this.session.sessionName} reconnected; ${devices.length} device(s) re-opened`);
    this.setState('up');
  }

  private setState(state: RnbdLinkState): void {
    this.linkState = state;
    const wake = this.wakeChanged;
    this.renewChange();
    wake();
  }

  private renewChange(): void {
    this.nextChange = new Promise((resolve) => (this.wakeChanged = resolve));
  }
}
