/**
 * The errno values a dm-log-userspace reply carries in `error` (negated: a reply's error is 0 or
 * -errno, as the kernel's client and cmirrord read it). Linux's numbers (asm-generic/errno-base.h).
 */
export const ULOG_ERRNO = {
  ENOENT: 2,
  ESRCH: 3,
  EIO: 5,
  EAGAIN: 11,
  ENOMEM: 12,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
} as const;
export type UlogErrnoName = keyof typeof ULOG_ERRNO;

const NAMES = Object.fromEntries(Object.entries(ULOG_ERRNO).map(([name, code]) => [code, name])) as Record<number, UlogErrnoName>;

/** "-EINVAL" for -22, "0" for 0, the number otherwise. */
export function ulogErrorName(error: number): string {
  if (error === 0) return '0';
  const name = NAMES[-error];
  return name === undefined ? String(error) : `-${name}`;
}
