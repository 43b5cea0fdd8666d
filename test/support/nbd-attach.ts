/**
 * A connected NBD client for the API tests: the NBD suite's RawNbd (nbd-client.ts) through the
 * usual handshake, with reads and a clean disconnect.
 */
import { NBD_CMD_DISC, NBD_CMD_READ } from '../../server/nbd/constants.ts';
import { RawNbd, type Address } from './nbd-client.ts';

export interface NbdAttachment {
  sizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
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
    async close() {
      nbd.request(NBD_CMD_DISC, 0, 0);
      await nbd.waitClosed();
      nbd.close();
    },
  };
}
