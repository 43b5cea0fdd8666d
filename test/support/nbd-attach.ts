/**
 * A connected NBD client for the API tests: the NBD suite's RawNbd (nbd-client.ts) through the
 * usual handshake, with reads, writes (FUA or not), flushes and a clean disconnect.
 */
import { NBD_CMD_DISC, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE } from '../../server/nbd/constants.ts';
import { RawNbd, type Address } from './nbd-client.ts';

export interface NbdAttachment {
  sizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
  /** One write, awaited; `fua`: durable when it answers. */
  write(offsetBytes: number, data: Uint8Array, fua?: boolean): Promise<void>;
  flush(): Promise<void>;
  /** NBD_CMD_DISC, then waits for the server to close the connection. */
  close(): Promise<void>;
}

export async function attachNbd(address: Address, exportName: string): Promise<NbdAttachment> {
  const nbd = await RawNbd.connect(address);
  const { sizeBytes } = await nbd.go(exportName);
  return {
    sizeBytes,
    async read(offsetBytes, lengthBytes) {
      nbd.request(NBD_CMD_READ, offsetBytes, lengthBytes);
      const reply = await nbd.reply();
      if (reply.error !== 0) throw new Error(`NBD read failed with error ${reply.error}: ${reply.message ?? ''}`);
      return reply.data!;
    },
    async write(offsetBytes, data, fua = false) {
      nbd.request(NBD_CMD_WRITE, offsetBytes, data.length, { data, flags: fua ? NBD_CMD_FLAG_FUA : 0 });
      const reply = await nbd.reply();
      if (reply.error !== 0) throw new Error(`NBD write failed with error ${reply.error}: ${reply.message ?? ''}`);
    },
    async flush() {
      nbd.request(NBD_CMD_FLUSH, 0, 0);
      const reply = await nbd.reply();
      if (reply.error !== 0) throw new Error(`NBD flush failed with error ${reply.error}: ${reply.message ?? ''}`);
    },
    async close() {
      nbd.request(NBD_CMD_DISC, 0, 0);
      await nbd.waitClosed();
      nbd.close();
    },
  };
}
