/**
 * The running NBD server as the service sees it: the two things it reads. The shapes it exchanges
 * with the server (exports, events, connections, counters) are the server's own, from
 * server/nbd/types.ts.
 */
import type { NbdConnectionInfo, NbdCounters } from './nbd/types.ts';

export interface NbdView {
  connections(): NbdConnectionInfo[];
  readonly counters: NbdCounters;
}
