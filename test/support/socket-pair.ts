/** A connected TCP pair on 127.0.0.1 for tests of socket machinery: [server side, client side]. */
import net from 'node:net';

export async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const server = await accepted;
  listener.close();
  return [server, client];
}
