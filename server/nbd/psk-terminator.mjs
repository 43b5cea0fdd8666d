/**
 * The TLS-PSK terminator: a Node process that does the TLS of NBD connections for a server on a
 * runtime whose node:tls has no PSK (Bun ignores pskCallback; Deno's rustls has none). See
 * psk-terminator-client.ts for the other side and why. Plain JavaScript, so any Node runs it.
 *
 * Started with its settings as one JSON line on stdin ({ socketPath, keys: { identity: hex } }):
 * the keys never appear in argv or the environment. Listens on `socketPath` (a directory only the
 * server's user reads), prints "ready" on stdout, and exits when stdin closes (its server is gone).
 *
 * Per TLS connection the server opens two connections here, each starting with one kind byte
 * ('c' cipher, 'p' plain) and the same 16-byte token:
 *   cipher  carries the client's TLS bytes both ways (the server copies them from and to the
 *           client's socket);
 *   plain   gets one status byte once the handshake is over: 1 then the decrypted stream both
 *           ways; 0 then a one-line reason, and the end.
 * A pair not completed within HANDSHAKE_TIMEOUT_MS, or a handshake that fails, ends both.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const HEADER_BYTES = 17;
const HANDSHAKE_TIMEOUT_MS = 10_000;

const settings = await new Promise((resolve, reject) => {
  let text = '';
  const onData = (chunk) => {
    text += chunk;
    const end = text.indexOf('\n');
    if (end < 0) return;
    process.stdin.off('data', onData);
    try {
      resolve(JSON.parse(text.slice(0, end)));
    } catch (error) {
      reject(error);
    }
  };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', onData);
});
const keys = new Map(Object.entries(settings.keys).map(([identity, hex]) => [identity, Buffer.from(hex, 'hex')]));
// As server/nbd/tls.ts: 'PSK' adds the TLS 1.2 PSK suites; TLS 1.3 needs none.
const tlsServer = tls.createServer({ ciphers: 'PSK', pskCallback: (_socket, identity) => keys.get(identity) ?? null, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });

/** token -> the half of a pair that came first. */
const waiting = new Map();

function pair(token, kind, socket) {
  const other = waiting.get(token);
  if (other === undefined) {
    const timer = setTimeout(() => {
      waiting.delete(token);
      socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    waiting.set(token, { kind, socket, timer });
    return;
  }
  waiting.delete(token);
  clearTimeout(other.timer);
  if (other.kind === kind) {
    other.socket.destroy();
    socket.destroy();
    return;
  }
  const cipher = kind === 'c' ? socket : other.socket;
  const plain = kind === 'p' ? socket : other.socket;
  terminate(cipher, plain);
}

/** Handshakes under way: the cipher socket -> what to do with its outcome. */
const handshakes = new Map();
tlsServer.on('secureConnection', (secured) => handshakes.get(secured._parent)?.secure(secured));
tlsServer.on('tlsClientError', (error, socket) => handshakes.get(socket._parent)?.fail(`TLS handshake failed: ${error.message}`));

function terminate(cipher, plain) {
  const fail = (why) => {
    if (!handshakes.delete(cipher)) return;
    plain.end(Buffer.concat([Buffer.from([0]), Buffer.from(`${why}\n`)]));
    cipher.destroy();
  };
  const secure = (secured) => {
    if (!handshakes.delete(cipher)) return secured.destroy();
    plain.write(Buffer.from([1]));
    secured.pipe(plain);
    plain.pipe(secured);
    secured.on('error', () => plain.destroy());
    secured.on('close', () => plain.destroy());
    plain.on('close', () => secured.destroy());
  };
  handshakes.set(cipher, { secure, fail });
  plain.on('error', () => cipher.destroy());
  plain.once('close', () => fail('the server went away during the TLS handshake'));
  cipher.once('close', () => fail('the client went away during the TLS handshake'));
  tlsServer.emit('connection', cipher);
}

const listener = net.createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('error', () => {});
  let header = Buffer.alloc(0);
  const onData = (chunk) => {
    header = Buffer.concat([header, chunk]);
    if (header.length < HEADER_BYTES) return;
    socket.off('data', onData);
    socket.pause();
    const kind = String.fromCharCode(header[0]);
    if (header.length > HEADER_BYTES) socket.unshift(header.subarray(HEADER_BYTES));
    if (kind !== 'c' && kind !== 'p') return socket.destroy();
    pair(header.subarray(1, HEADER_BYTES).toString('hex'), kind, socket);
  };
  socket.on('data', onData);
});
fs.rmSync(settings.socketPath, { force: true });
listener.listen(settings.socketPath, () => process.stdout.write('ready\n'));
// The server that started us is gone: so are we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
