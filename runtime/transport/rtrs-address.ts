/**
 * Addresses of RTRS paths: "HOST:PORT" (IPv6 as "[::1]:PORT"), parsed once at the boundary, and
 * whether a host is loopback (the server refuses to listen anywhere else without a key).
 */
import { isIP } from 'node:net';
import { BlockError } from '../errors.ts';

export interface HostPort {
  host: string;
  port: number;
}

/** Parses "HOST:PORT"; `field` names the input in the error. Port 0 (any) only for a listener. */
export function parseHostPort(text: string, field: string, listening = false): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text);
  if (match === null) throw new BlockError('EINVAL', `${field}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (port < (listening ? 0 : 1) || port > 65535) throw new BlockError('EINVAL', `${field}: port ${port} is not ${listening ? 0 : 1}..65535`);
  if (match[1] !== undefined && isIP(host) !== 6) throw new BlockError('EINVAL', `${field}: ${host} is not an IPv6 address`);
  return { host, port };
}

export function formatHostPort({ host, port }: HostPort): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}
