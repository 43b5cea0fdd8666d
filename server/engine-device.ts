/** The open device behind `<kind>:<name>` among a host's engines; refusals name `field`. */
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import type { Engine } from './engine.ts';
import { invalid } from './errors.ts';
import { parseDeviceRef } from './names.ts';

export function engineDeviceOf(engines: ReadonlyMap<string, Engine>, ref: string, field: string): BlockDevice {
  const parsed = parseDeviceRef(ref, field, [...engines.keys()]);
  const engine = engines.get(parsed.kind);
  if (engine === undefined) throw invalid(field, `"${ref}" is not an engine device (expected <kind>:<name>)`);
  return engine.deviceOf(parsed.name, field);
}
