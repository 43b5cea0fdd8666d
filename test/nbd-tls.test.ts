/**
 * NBD over TLS (server/nbd/tls.ts): STARTTLS as proto.md defines it, judged by the real clients
 * (libnbd's nbdinfo and nbdcopy over nbds://, qemu-img with a tls-creds-x509 or tls-creds-psk
 * object) with X.509 certificates in the layout they read, TLS-PSK (on Bun and Deno through the
 * Node child, psk-terminator-client.ts), and our own
 * client for the protocol's edges: options refused TLS_REQD before TLS on a TLS-only server,
 * EXPORT_NAME there closing, STARTTLS with data or twice refused, a failed handshake costing
 * that connection only, and credentials that cannot be used refused at start, naming the file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import {
  NBD_CMD_READ, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_LIST, NBD_OPT_STARTTLS, NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_TLS_REQD,
} from '../server/nbd/constants.ts';
import { encodeGoRequest } from '../server/nbd/option-codec.ts';
import { NbdServer } from '../server/nbd/server.ts';
import { parsePskFile, pskTlsSupported, TlsConfigError, type NbdTlsOptions } from '../server/nbd/tls.ts';
import { startTestServer } from './support/blockcore-server.ts';
import { makeCerts, nbdTlsDirs } from './support/certs.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, until, type Served } from './support/nbd-fixtures.ts';
import { killRunningTools, mustRun, requireTools, runTool } from './support/tools.ts';
import { utf8 } from '../server/nbd/wire.ts';

const MiB = 1024 * 1024;
const test = suite('nbd over TLS');

let tempDir = '';
let served: Served | undefined;
const clients: RawNbd[] = [];
const image = new Prng(21).fill(new Uint8Array(4 * MiB));
/** server/: ca-cert.pem, server-cert.pem, server-key.pem; client/: ca-cert.pem (what nbdkit and qemu read). */
let serverDir = '';
let clientDir = '';
let ca = '';

test.before(() => {
  requireTools(['nbdinfo', 'nbdcopy', 'qemu-img', 'openssl']);
});
test.before.each(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-tls-'));
  const certs = makeCerts(path.join(tempDir, 'pki'));
  ({ serverDir, clientDir } = nbdTlsDirs(certs, tempDir));
  ca = fs.readFileSync(certs.ca, 'utf8');
});
test.after.each(async () => {
  killRunningTools();
  for (const client of clients.splice(0)) client.close();
  await served?.stop();
  served = undefined;
  await fileDevice?.close();
  fileDevice = undefined;
  fs.rmSync(tempDir, { recursive: true, force: true });
});

let fileDevice: FileDevice | undefined;

/** Exports `disk` (memory) and `file` (a file: zero-copy sends, which must be off inside TLS). */
async function start(tls: NbdTlsOptions): Promise<Served> {
  const filePath = path.join(tempDir, 'file.img');
  fs.writeFileSync(filePath, image);
  fileDevice = await FileDevice.open(filePath, { readOnly: true });
  served = await serve([
    { name: 'disk', device: new MemoryDevice({ sizeBytes: image.length, initial: image }), readOnly: false },
    { name: 'file', device: fileDevice, readOnly: true },
  ], { tls });
  return served;
}

async function client(): Promise<RawNbd> {
  const nbd = await RawNbd.connect(served!.tcp);
  clients.push(nbd);
  await nbd.greet();
  return nbd;
}

const tlsUri = () => `nbds://127.0.0.1:${served!.tcp.port}/disk?tls-certificates=${clientDir}`;

test('X.509, TLS required: nbdinfo, nbdcopy and qemu-img read the export over TLS; a plain client is refused', async () => {
  await start({ mode: 'require', certificatesDir: serverDir });
  assert.is((await mustRun('nbdinfo', ['--size', tlsUri()])).trim(), String(image.length));
  const copy = path.join(tempDir, 'copy.img');
  await mustRun('nbdcopy', [tlsUri(), copy]);
  assert.ok(Buffer.from(fs.readFileSync(copy)).equals(Buffer.from(image)), 'nbdcopy over TLS');
  const fileCopy = path.join(tempDir, 'file-copy.img');
  await mustRun('nbdcopy', [tlsUri().replace('/disk?', '/file?'), fileCopy]);
  assert.ok(Buffer.from(fs.readFileSync(fileCopy)).equals(Buffer.from(image)), 'nbdcopy over TLS of a file export (no sendfile past TLS)');
  const qemuCopy = path.join(tempDir, 'qemu.img');
  await mustRun('qemu-img', [
    'convert', '-O', 'raw', '--object', `tls-creds-x509,id=tls0,dir=${clientDir},endpoint=client`,
    '--image-opts', `driver=nbd,host=127.0.0.1,port=${served!.tcp.port},export=disk,tls-creds=tls0`, qemuCopy,
  ]);
  assert.ok(Buffer.from(fs.readFileSync(qemuCopy)).equals(Buffer.from(image)), 'qemu-img over TLS');
  const plain = await runTool('nbdinfo', ['--size', `nbd://127.0.0.1:${served!.tcp.port}/disk`]);
  assert.is.not(plain.code, 0, 'a client without TLS gets nothing');
});

test('TLS-only: options before STARTTLS are refused TLS_REQD, EXPORT_NAME closes; STARTTLS with data or twice is refused; inside TLS the client starts over', async () => {
  await start({ mode: 'require', certificatesDir: serverDir });
  const nbd = await client();
  const [go] = await nbd.option(NBD_OPT_GO, encodeGoRequest({ name: 'disk', infoTypes: [] }));
  assert.is(go!.type, NBD_REP_ERR_TLS_REQD);
  assert.is((await nbd.option(NBD_OPT_LIST))[0]!.type, NBD_REP_ERR_TLS_REQD);
  assert.is((await nbd.option(NBD_OPT_STARTTLS, new Uint8Array(1)))[0]!.type, NBD_REP_ERR_INVALID);
  assert.is(await nbd.startTls({ ca, servername: undefined, host: '127.0.0.1' }), NBD_REP_ACK);
  assert.is((await nbd.option(NBD_OPT_STARTTLS))[0]!.type, NBD_REP_ERR_INVALID, 'TLS is on already');
  const { sizeBytes } = await nbd.go('disk');
  assert.is(sizeBytes, image.length);
  nbd.request(NBD_CMD_READ, MiB, 64 * 1024);
  const read = await nbd.reply();
  assert.is(read.error, 0);
  assert.ok(Buffer.from(read.data!).equals(Buffer.from(image.subarray(MiB, MiB + 64 * 1024))), 'a read inside TLS');

  const early = await client();
  early.sendOption(NBD_OPT_EXPORT_NAME, utf8('disk'));
  assert.ok(await early.waitClosed(), 'EXPORT_NAME before TLS on a TLS-only server closes');
});

test('a failed handshake (a client that does not trust our CA) costs that connection only', async () => {
  await start({ mode: 'on', certificatesDir: serverDir });
  const stranger = path.join(tempDir, 'stranger');
  fs.mkdirSync(stranger);
  fs.copyFileSync(path.join(tempDir, 'pki', 'ca.pem'), path.join(stranger, 'unused.pem'));
  const otherCa = makeCerts(path.join(tempDir, 'other-pki'));
  fs.copyFileSync(otherCa.ca, path.join(stranger, 'ca-cert.pem'));
  const refused = await runTool('nbdinfo', ['--size', `nbds://127.0.0.1:${served!.tcp.port}/disk?tls-certificates=${stranger}`]);
  assert.is.not(refused.code, 0, 'the client refuses our certificate');
  // TLS 'on' (not required): a plain client still works, and so does a TLS one.
  assert.is((await mustRun('nbdinfo', ['--size', `nbd://127.0.0.1:${served!.tcp.port}/disk`])).trim(), String(image.length));
  assert.is((await mustRun('nbdinfo', ['--size', tlsUri()])).trim(), String(image.length));
});

test('TLS-PSK: nbdinfo and nbdcopy with the identity in the URI; a wrong key fails that client only (Bun, Deno: in the Node child)', async () => {
  const pskFile = path.join(tempDir, 'keys.psk');
  fs.writeFileSync(pskFile, `alice:${'5a'.repeat(32)}\n`);
  if (!pskTlsSupported()) {
    // Where the TLS runs in a Node child, no node means no start, said in one line.
    process.env.BLOCKCORE_NODE = path.join(tempDir, 'no-such-node');
    try {
      assert.throws(() => serveSync({ mode: 'require', pskFile }), (error: Error) => error instanceof TlsConfigError && /no-such-node --version` failed: put Node on PATH/.test(error.message));
    } finally {
      delete process.env.BLOCKCORE_NODE;
    }
  }
  await start({ mode: 'require', pskFile });
  assert.is((await mustRun('nbdinfo', ['--size', `nbds://alice@127.0.0.1:${served!.tcp.port}/disk?tls-psk-file=${pskFile}`])).trim(), String(image.length));
  const copy = path.join(tempDir, 'psk-copy.img');
  await mustRun('nbdcopy', [`nbds://alice@127.0.0.1:${served!.tcp.port}/disk?tls-psk-file=${pskFile}`, copy]);
  assert.ok(Buffer.from(fs.readFileSync(copy)).equals(Buffer.from(image)), 'nbdcopy over TLS-PSK');
  // qemu's tls-creds-psk reads keys.psk from a directory, the identity given as username.
  const qemuDir = path.join(tempDir, 'qemu-psk');
  fs.mkdirSync(qemuDir);
  fs.copyFileSync(pskFile, path.join(qemuDir, 'keys.psk'));
  const qemuCopy = path.join(tempDir, 'qemu-psk.img');
  await mustRun('qemu-img', [
    'convert', '-O', 'raw', '--object', `tls-creds-psk,id=tls0,dir=${qemuDir},username=alice,endpoint=client`,
    '--image-opts', `driver=nbd,host=127.0.0.1,port=${served!.tcp.port},export=disk,tls-creds=tls0`, qemuCopy,
  ]);
  assert.ok(Buffer.from(fs.readFileSync(qemuCopy)).equals(Buffer.from(image)), 'qemu-img over TLS-PSK');
  const wrong = path.join(tempDir, 'wrong.psk');
  fs.writeFileSync(wrong, `alice:${'a5'.repeat(32)}\n`);
  assert.is.not((await runTool('nbdinfo', ['--size', `nbds://alice@127.0.0.1:${served!.tcp.port}/disk?tls-psk-file=${wrong}`])).code, 0);
  assert.is((await mustRun('nbdinfo', ['--size', `nbds://alice@127.0.0.1:${served!.tcp.port}/disk?tls-psk-file=${pskFile}`])).trim(), String(image.length), 'the server goes on');
  await until(() => served!.events.some((event) => event.type === 'protocol-error' && /TLS handshake failed/.test(event.message)), 'the failed handshake reported');
});

test('the service with --nbd-tls require: an export is read over nbds:// and refused in the clear', async () => {
  const server = await startTestServer({ settings: { '--nbd-tls': 'require', '--nbd-tls-certificates': serverDir } });
  try {
    fs.writeFileSync(path.join(server.dataDir, 'golden.img'), image);
    assert.is((await server.call('POST', '/v1/exports', { name: 'g', device: 'golden.img', readOnly: true })).status, 201);
    const address = server.running.nbd as { port: number };
    const copy = path.join(tempDir, 'service-copy.img');
    await mustRun('nbdcopy', [`nbds://127.0.0.1:${address.port}/g?tls-certificates=${clientDir}`, copy]);
    assert.ok(Buffer.from(fs.readFileSync(copy)).equals(Buffer.from(image)), 'nbdcopy from the service over TLS');
    assert.is.not((await runTool('nbdinfo', ['--size', `nbd://127.0.0.1:${address.port}/g`])).code, 0, 'no TLS, no export');
  } finally {
    await server.dispose();
  }
});

test('credentials that cannot be used are refused at start, naming the file or line', () => {
  fs.rmSync(path.join(serverDir, 'server-key.pem'));
  assert.throws(() => serveSync({ mode: 'on', certificatesDir: serverDir }), /server-key\.pem: cannot be read/);
  assert.throws(() => parsePskFile('alice:5a5a\nbob 1234\n', 'keys.psk'), /keys\.psk:2: not an identity:hexkey line/);
  assert.throws(() => parsePskFile('alice:5a5a\nalice:1234\n', 'keys.psk'), /appears twice/);
  assert.throws(() => serveSync({ mode: 'on' }), /exactly one of/);
});

/** Builds (not starts) a server: its credentials are read in the constructor. */
function serveSync(tls: NbdTlsOptions): void {
  new NbdServer({ lookup: () => undefined, list: () => [], tls });
}

test.run();
