/**
 * Coded lock errors, named as the DLM names them, so a caller (md-cluster's message sender, the
 * join probe of other slots' bitmap locks) can decide on `code` alone.
 */
export type LockErrorCode =
  | 'EAGAIN' // NOQUEUE and the request could not be granted at once
  | 'ECANCELED' // the request or conversion was cancelled (its AbortSignal fired) before a grant
  | 'EDEADLK' // a conversion would wait on a conversion that waits on it
  | 'EBUSY' // the lock has a conversion in flight (unlock or convert again refused)
  | 'EINVAL' // a malformed argument: not a mode, an empty or overlong name, a slot out of range
  | 'ENOTCONN' // the lockspace member left or died; its locks are gone
  | 'EPROTO'; // the lock state kept elsewhere (etcd) does not decode: a key naming what is wrong

export class LockError extends Error {
  override name = 'LockError';
  readonly code: LockErrorCode;
  readonly resource: string | undefined;

  constructor(code: LockErrorCode, message: string, resource?: string) {
    super(resource === undefined ? `${code}: ${message}` : `${code}: ${message} (resource ${resource})`);
    this.code = code;
    this.resource = resource;
  }
}
