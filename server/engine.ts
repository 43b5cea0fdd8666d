/**
 * How an engine plugs into the service: one interface the service calls, one context the service
 * gives, and one definition per engine in engines.ts. The service never names an engine; it asks
 * the list (like nbdkit's filter table or md's md_cluster_operations).
 *
 *   EngineDefinition   what is known before the service opens: the kind (`clone`), its CLI
 *                      commands (these only talk to the API, so the CLI loads no engine code), how
 *                      to check its state-file records, and `open`, which loads the engine's
 *                      service half
 *   Engine             the open engine inside the service: restores its records, names the files
 *                      it holds, gives the device behind `<kind>:<name>`, mounts its routes, adds
 *                      its metrics, and closes
 *   EngineContext      what an engine gets from the service: the data directory, events, the log,
 *                      every file held, the state file, the one-change-at-a-time chain, and the
 *                      exports that serve its devices
 *
 * Adding an engine: a folder server/<kind>/ whose index.ts exports an EngineDefinition (routes,
 * records, metrics, CLI commands in their own files there; the engine itself in runtime/<kind>/),
 * and one line in engines.ts. Nothing else in server/ changes: the state file keeps its records
 * under `engines.<kind>`, exports reach its devices as `<kind>:<name>`, /metrics and the OpenAPI
 * document include what it adds, and events are published as `<kind>.<type>`.
 *
 * Every Engine method that changes something runs inside the service's one change at a time
 * (`exclusive`), so no engine guards against a concurrent change itself.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import type { DeviceStore } from '../runtime/devices/device-store.ts';
import type { Command } from './cli/commands.ts';
import type { Coordinator } from './cluster/coordinator.ts';
import type { Hold } from './device-holders.ts';
import type { EventHub } from './event-hub.ts';
import type { PromText } from './prometheus.ts';

export interface ServiceContext {
  /** The data directory's real path. */
  readonly dataDir: string;
  /** Its devices by name, as engines open them (the data directory's files under the service). */
  readonly store: DeviceStore;
  readonly events: EventHub;
  log(line: string): void;
  /** Every file held by an engine or an export, engines first. */
  holds(): Hold[];
  /**
   * Writes the state file after a change already in effect that cannot be undone (a message, a
   * suspend, a finalize): the change is durable when it resolves; if the write fails, rejects with
   * EIO saying `what` is in effect but will not survive a restart (never a bare 500).
   */
  saveApplied(what: string): Promise<void>;
  /** Writes the state file; if that fails, runs `undo` and rejects with EIO. */
  saveOrUndo(undo: () => Promise<void>): Promise<void>;
}

/** The service as an engine sees it. */
export interface EngineContext extends ServiceContext {
  /**
   * The value `serve` was given for one of the engine's own flags (EngineDefinition.serveFlags:
   * the flag, else its environment variable, else its default), already checked; null when the
   * service was started without it (a library caller that did not ask for that listener).
   */
  setting(flag: string): string | null;

  /** This service as a cluster node: its name and id, its lock managers (in-process, etcd). */
  readonly cluster: Coordinator;

  /** Runs `work` as the service's one change at a time; the API's changes all go through here. */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /**
   * The open device behind an engine reference `<kind>:<name>` (`clone:c1`), for an engine that
   * serves or stacks on other engines' devices (the RNBD server); refusals name `field`.
   */
  engineDevice(ref: string, field: string): BlockDevice;
  /** The kinds of engine device references (`clone`, `remote` ...). */
  engineKinds(): readonly string[];
  /** The names of the exports serving device reference `ref` (`clone:c1`). */
  exportsOf(ref: string): string[];
  /** Everything that uses device reference `ref`: exports (`export:e1`) and engine objects (`clone:c1`). */
  usersOf(ref: string): string[];
  /**
   * Replaces the device under the exports of `ref` while they stay connected (dm's table swap
   * under an open device): their new requests wait, `replace` runs (it may drain and close the
   * old device) and returns the device and the device name the exports serve from then on, which
   * they own and hold from then on. If `replace` fails the exports keep the old device.
   */
  replaceUnderExports(ref: string, replace: () => Promise<{ device: BlockDevice; deviceName: string }>): Promise<void>;
}

export interface Engine {
  readonly kind: string;
  /** Reopens the state file's records (checked already); one that cannot be is kept with its error. */
  restore(records: readonly unknown[]): Promise<void>;
  /** What the state file keeps, in creation order; each passes the definition's recordProblem. */
  records(): unknown[];
  /** The files this engine holds now. */
  holds(): Hold[];
  /** The open device `<kind>:<name>` for an export; refusals (no such name, not open) name `field`. */
  deviceOf(name: string, field: string): BlockDevice;
  /** Mounts the engine's routes on the API (under /v1/). */
  routes(app: OpenAPIHono): void;
  /** The engine's objects that use device reference `ref` (`clone:c1` reading `remote:r1`). */
  usersOf?(ref: string): string[];
  /** Adds the engine's families to /metrics. */
  metrics(out: PromText): void;
  /** Closes everything it holds (each engine object commits what it must); for the service's close. */
  closeAll(): Promise<void>;
  /** Lines for `serve` to print once started, one per listener the engine opened (`rtrs 127.0.0.1:10900`). */
  listening?(): string[];
}

/** A flag of `blockcore serve` that belongs to one engine (its listeners, its keys). */
export interface ServeFlag {
  /** `--rtrs` */
  readonly flag: string;
  /** `BLOCKCORE_RTRS`: read when the flag is not given. */
  readonly env: string;
  /** For the usage line: `HOST:PORT[,HOST:PORT...]`. */
  readonly valueName: string;
  /** Used when neither the flag nor the variable is set; null: unset. */
  readonly defaultValue: string | null;
  readonly summary: string;
  /** Why `value` cannot be used (one line), or null: checked before the service opens. */
  problem?(value: string): string | null;
  /** A switch: given alone (its value is "true"); the variable counts when it is "1" or "true". */
  readonly boolean?: boolean;
}

export interface EngineDefinition {
  /** The kind: device references are `<kind>:<name>`, events `<kind>.<type>`. */
  readonly kind: string;
  /** Its `blockcore` commands, keyed by their words (`clone create`). */
  readonly commands: Record<string, Command>;
  /** Its own flags of `blockcore serve`, if any. */
  readonly serveFlags?: readonly ServeFlag[];
  /** The event types it publishes (without the `<kind>.` prefix), for the API's documentation. */
  readonly eventTypes: readonly string[];
  /** Why one state-file record is invalid (`field: what`), or null; run after reading and before writing. */
  recordProblem(record: unknown): string | null;
  /** The record's name, for duplicate checks in the state file. */
  recordName(record: unknown): string;
  /** Loads the engine's service half and opens it (empty; `restore` fills it). */
  open(context: EngineContext): Promise<Engine>;
}
