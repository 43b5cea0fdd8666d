/**
 * The thread layouts transport tests run in: everything on the event loop, the server's IO
 * connections on IO threads, and both ends' (runtime/transport/rtrs-io-threads.ts); the threaded
 * cases only where the runtime can hand connections to threads.
 */
import { loadAdapter } from '../../runtime/adapter/index.ts';

export interface ThreadsCase {
  /** RtrsServerOptions.ioThreads */
  server: number;
  /** RtrsClientOptions.ioThreads */
  client: number;
  /** For test names: '' or ', server IO on 2 threads' ... */
  label: string;
}

const threaded = (await loadAdapter()).threadSockets !== null;

export const THREAD_CASES: readonly ThreadsCase[] = [
  { server: 0, client: 0, label: '' },
  ...(threaded ? [{ server: 2, client: 0, label: ', server IO on 2 threads' }, { server: 2, client: 2, label: ', server and client IO on 2 threads' }] : []),
];

/** How many of a path's `connections` IO threads serve with `threads` of them: all but connection 0, or none. */
export function threadedCount(threads: number, connections: number): number {
  return threads > 0 ? connections - 1 : 0;
}
