/**
 * The engines and API on a host with no file system and no sockets of its own (workerd, a
 * Cloudflare Worker's Durable Object): devices are KvDevices in the host's key-value storage
 * (kv-store.ts), sources are HTTP images (HttpDevice over fetch) or the host's own devices, and
 * the clone engine runs as under the service, with the same registry, routes and errors. What
 * needs files or sockets (exports over NBD, arrays, mirrors, the transport, the cluster, /metrics)
 * answers 501 (unavailable.ts).
 *
 * State: the engines' records in one key, `state` (JSON {format: 1, engines: {clone: [...]}}),
 * written and synced after each change as the service writes its state file; on open the records
 * are restored, so clones come back after the host restarts (their metadata and destination
 * devices are in the same storage). One change at a time, as in the service.
 *
 * This file imports nothing that needs node:fs, FFI or sockets (test/edge-app.test.ts bundles it
 * and checks), so a bundler can build a Worker from it (server/edge/worker.ts).
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { KvStorage } from '../../runtime/devices/kv-device.ts';
import { cloneEngine } from '../clone/index.ts';
import { WriteGenerations } from '../data-plane/write-generation.ts';
import { StoreDataDevices } from '../data-plane/store-data-devices.ts';
import type { Hold } from '../device-holders.ts';
import type { Engine, EngineContext } from '../engine.ts';
import { ServiceError } from '../errors.ts';
import { EventHub } from '../event-hub.ts';
import { assembleApp } from '../http/api.ts';
import { ChangeChain } from '../change-chain.ts';
import { engineDeviceOf } from '../engine-device.ts';
import { KvDeviceStore } from './kv-store.ts';
import { unavailableRoutes } from './unavailable.ts';

const STATE_KEY = 'state';
const STATE_FORMAT = 1;
const ENGINES = [cloneEngine];
export const EDGE_UNAVAILABLE_REASON = 'no files or sockets on an edge host';
/** PUTs on an edge host: an isolate has little memory (128 MB on Cloudflare). */
export const EDGE_DATA_LIMITS = { putBytesMax: 8 * 1024 * 1024, putBytesInFlightMax: 32 * 1024 * 1024 };
export const EDGE_DESCRIPTION = "Control API of blockcore on an edge host: devices in the host's storage and their bytes, and dm-clone style clones from HTTP images.";

export interface EdgeHostOptions {
  storage: KvStorage;
  log?: (line: string) => void;
  /** For /v1/health: the package version and the host's name. */
  version: string;
  runtime: string;
}

export class EdgeHost {
  readonly events = new EventHub();
  readonly engines = new Map<string, Engine>();
  readonly store: KvDeviceStore;
  readonly data: StoreDataDevices;
  private readonly context: EngineContext;
  /** One change at a time (change-chain.ts). */
  private readonly changes: ChangeChain;
  /** The devices' versions (ETags). */
  private readonly generations = new WriteGenerations();

  private constructor(private readonly options: EdgeHostOptions) {
    const log = options.log ?? ((line: string) => console.error(line));
    this.store = new KvDeviceStore(options.storage, () => this.holds());
    const engines = this.engines;
    this.changes = new ChangeChain(this.generations, () => this.engineHolds());
    this.context = {
      dataDir: '',
      store: this.store,
      events: this.events,
      log,
      holds: () => this.holds(),
      saveApplied: async (what) => {
        try {
          await this.save();
        } catch (error) {
          throw new ServiceError('EIO', `${what} is in effect, but the state could not be stored, so it will not survive a restart: ${(error as Error).message}`);
        }
      },
      saveOrUndo: async (undo) => {
        try {
          await this.save();
        } catch (error) {
          await undo();
          throw new ServiceError('EIO', `cannot store the state: ${(error as Error).message}`);
        }
      },
      setting: () => null,
      get cluster(): never {
        throw new ServiceError('ENOSYS', `no cluster node here: ${EDGE_UNAVAILABLE_REASON}`);
      },
      exclusive: (work) => this.changes.exclusive(work),
      engineDevice: (ref, field) => engineDeviceOf(this.engines, ref, field),
      engineKinds: () => [...engines.keys()],
      exportsOf: () => [],
      usersOf: (ref) => [...engines.values()].flatMap((engine) => engine.usersOf?.(ref) ?? []),
      // No exports here: the replacement (a finalized clone's destination) has nobody to serve.
      replaceUnderExports: async (_ref, replace) => {
        const { device } = await replace();
        await device.close();
      },
    };
    this.data = new StoreDataDevices({
      store: this.store,
      engines,
      generations: this.generations,
      otherHolds: () => this.engineHolds(),
      serialized: (work) => this.changes.serialized(work),
    });
  }

  /** Opens the engines and restores their records from the storage. */
  static async open(options: EdgeHostOptions): Promise<EdgeHost> {
    const host = new EdgeHost(options);
    const state = await host.readState();
    for (const definition of ENGINES) {
      const engine = await definition.open(host.context);
      host.engines.set(definition.kind, engine);
      const records = state[definition.kind] ?? [];
      const valid = records.filter((record) => {
        const problem = definition.recordProblem(record);
        if (problem !== null) host.context.log(`${definition.kind} record dropped from the stored state: ${problem}`);
        return problem === null;
      });
      await engine.restore(valid);
    }
    return host;
  }

  /** The API: the same app as the service's, with what this host lacks answering 501. */
  app(token: string | null): OpenAPIHono {
    const host = this;
    const app = assembleApp({
      token,
      devices: {
        listDevices: () => this.store.listDevices(),
        createDevice: (name, sizeBytes) => this.changes.exclusive(async () => {
          const device = await this.store.createDevice(name, sizeBytes);
          this.generations.ofFile(name).reincarnate();
          host.events.publish('device.created', { device: name, sizeBytes });
          return device;
        }),
        deleteDevice: (name) => this.changes.exclusive(async () => {
          await this.store.deleteDevice(name);
          this.generations.ofFile(name).reincarnate();
          host.events.publish('device.removed', { device: name });
        }),
      },
      data: this.data,
      engines: this.engines.values(),
      events: this.events,
      engineEventTypes: ENGINES.flatMap((engine) => engine.eventTypes.map((type) => `${engine.kind}.${type}`)),
      description: EDGE_DESCRIPTION,
      dataLimits: EDGE_DATA_LIMITS,
      version: this.options.version,
      runtime: this.options.runtime,
    });
    unavailableRoutes(app, EDGE_UNAVAILABLE_REASON);
    return app;
  }

  /** Closes every engine object (a clone commits its metadata). */
  close(): Promise<void> {
    return this.changes.exclusive(async () => {
      this.events.close();
      for (const engine of [...this.engines.values()].reverse()) await engine.closeAll();
    });
  }

  private engineHolds(): Hold[] {
    return [...this.engines.values()].flatMap((engine) => engine.holds());
  }

  private holds(): Hold[] {
    return [...this.engineHolds(), ...this.data.holds()];
  }

  private async readState(): Promise<Record<string, unknown[]>> {
    const value = (await this.options.storage.get([STATE_KEY])).get(STATE_KEY);
    if (value === undefined) return {};
    const state = typeof value === 'string' ? (JSON.parse(value) as { format?: number; engines?: Record<string, unknown[]> }) : null;
    if (state === null || state.format !== STATE_FORMAT || typeof state.engines !== 'object' || state.engines === null) {
      throw new ServiceError('EIO', `the stored state is not one this build reads (format ${state?.format})`);
    }
    return state.engines;
  }

  private async save(): Promise<void> {
    const engines = Object.fromEntries([...this.engines].map(([kind, engine]) => [kind, engine.records()]));
    await this.options.storage.put({ [STATE_KEY]: JSON.stringify({ format: STATE_FORMAT, engines }) });
    await this.options.storage.sync();
  }
}
