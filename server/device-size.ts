/** Device sizes the API accepts, wherever devices live: whole sectors, at most what a file may hold. */
import { invalid } from './errors.ts';

export const SECTOR_BYTES = 512;
export const DEVICE_BYTES_MAX = 2 ** 44 - 4096;

export function checkDeviceSize(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalid(field, 'must be an integer number of bytes');
  if (value <= 0 || value % SECTOR_BYTES !== 0) throw invalid(field, `${value} must be a positive multiple of ${SECTOR_BYTES}`);
  if (value > DEVICE_BYTES_MAX) throw invalid(field, `${value} is larger than the ${DEVICE_BYTES_MAX} bytes (16 TiB - 4 KiB) a file may hold`);
  return value;
}
