/**
 * Errors the service raises for the world: bad input, unknown names, conflicts. Each carries an
 * errno-like `code` (the same vocabulary as BlockError, plus EBUSY for "in use") and, for bad input,
 * the `field` at fault, so the HTTP layer maps it to a status without parsing messages and the
 * client learns which field to fix. Bugs stay assertions (runtime/assert.ts).
 */
export type ServiceErrorCode =
  | 'EINVAL' // bad input: wrong type, unknown field, malformed name or value
  | 'ENOENT' // no such device, clone or export
  | 'EEXIST' // the name is taken
  | 'EBUSY' // the thing is in use (by a clone, an export, a connected client)
  | 'E2BIG' // the request body is too large
  | 'EACCES' // missing or wrong credentials
  | 'EAGAIN' // the service is stopping: try again after it restarts
  | 'ENOTCONN' // a remote side (an RTRS server) could not be reached or refused us
  | 'ENXIO' // a byte range lies past the end of the device (HTTP 416)
  | 'ESTALE' // a precondition (If-Match) names a version of the data that is not the current one
  | 'EROFS' // the device cannot be written (a read-only export, a source)
  | 'ENOSYS' // this host cannot serve the route (an edge host without files or sockets)
  | 'EIO'; // the host failed (disk, state file): not the client's fault

export class ServiceError extends Error {
  override name = 'ServiceError';
  constructor(readonly code: ServiceErrorCode, message: string, readonly field?: string) {
    super(message);
  }
}

/** Bad input naming its field: the message starts with the field so it reads on its own. */
export function invalid(field: string, message: string): ServiceError {
  return new ServiceError('EINVAL', `${field}: ${message}`, field);
}
