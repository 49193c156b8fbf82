// The peer channel between a client (connectPeer) and a daemon run in this process
// (servePeer) with test services: messages and payloads arrive intact and in order, up to
// the limits; the certificate is checked (CA, name, pinned fingerprint) and the token
// proven both ways without being sent; plain and TLS only meet when both sides agree;
// byte counters agree; backpressure holds a fast sender; timeouts, the connection cap
// and failing services cost only their own connection.
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthError, BusyError, ImgstreamError, InvalidInputError, NetworkError } from '../../src/core/errors.js';
import { MAX_PAYLOAD_BYTES } from '../../src/format/peer-protocol.js';
import { connectPeer, type PeerChannel, type PeerClientOptions, type PeerService } from '../../src/peer/index.js';
import { hasOpenssl, makeCert, makeToken, startInProcess, waitFor, type InProcessDaemon, type TestCert } from './support.js';
import { isDirectAligned } from '../../src/fs/direct-io.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-peer-channel-'));
const crc = (b: Buffer) => crc32(b) >>> 0;
const dataDir = path.join(root, 'data');
fs.mkdirSync(dataDir);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** What the echo service saw of its last connection. */
const seen = { bytesReceived: -1, bytesSent: -1, hello: null as unknown };

const services = new Map<string, PeerService>([
  // answers every message with the same message and payload, until the client ends
  [
    'test.echo',
    async (ch, hello) => {
      seen.hello = hello;
      for (;;) {
        const m = await ch.receive();
        if (m === null) break;
        await ch.send(m.msg, m.payload ?? undefined);
      }
      seen.bytesReceived = ch.bytesReceived;
      seen.bytesSent = ch.bytesSent;
    },
  ],
  // sends `count` payloads of `size` bytes as fast as the connection takes them
  [
    'test.flood',
    async (ch, hello) => {
      const size = Number(hello.size);
      for (let i = 0; i < Number(hello.count); i++) {
        const p = Buffer.alloc(size, i & 0xff);
        p.writeUInt32LE(i, 0);
        await ch.send({ i }, p);
        flooded = i + 1;
      }
      await ch.send({ end: true });
    },
  ],
  ['test.crash', async () => Promise.reject(new TypeError('a bug in a service'))],
  ['test.refuse', async () => Promise.reject(new BusyError('not now', 'later'))],
  ['test.wait', async (ch) => void (await ch.receive())],
]);
let flooded = 0;

let token: string;
let otherToken: string;
let cert: TestCert;
let otherCert: TestCert;
let elsewhereCert: TestCert;
let tlsDaemon: InProcessDaemon;
let plainDaemon: InProcessDaemon;

beforeAll(async () => {
  token = makeToken(root, 'token');
  otherToken = makeToken(root, 'other-token');
  cert = makeCert(root, 'daemon');
  otherCert = makeCert(root, 'other');
  elsewhereCert = makeCert(root, 'elsewhere', ['DNS:elsewhere.example']);
  tlsDaemon = await startInProcess({ root: dataDir, tokenFile: token, tls: { cert: cert.cert, key: cert.key }, services });
  plainDaemon = await startInProcess({ root: dataDir, tokenFile: token, plain: true, services });
});
afterAll(async () => {
  await tlsDaemon?.stop();
  await plainDaemon?.stop();
});

const tlsUrl = (host = '127.0.0.1') => `peer://${host}:${tlsDaemon.info.port}`;
const plainUrl = () => `peer://127.0.0.1:${plainDaemon.info.port}`;
const withCa = (): PeerClientOptions => ({ tokenFile: token, tls: { ca: cert.cert } });

async function open(url: string, opts: PeerClientOptions, hello: Record<string, unknown>): Promise<PeerChannel> {
  const ch = await connectPeer(url, opts);
  await ch.send(hello);
  return ch;
}

async function failure(p: Promise<unknown>): Promise<ImgstreamError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ImgstreamError);
    expect((err as Error).message).not.toContain('\n');
    return err as ImgstreamError;
  }
  throw new Error('expected a failure');
}

describe.skipIf(!hasOpenssl)('peer channel', () => {
  it('carries messages and payloads of every size up to 64 MiB intact and in order; counters agree on both sides', async () => {
    const ch = await open(tlsUrl(), withCa(), { op: 'test.echo', extra: [1, 2] });
    const sizes = [null, 0, 1, 4095, 65536, 1 << 20, 3_000_001, MAX_PAYLOAD_BYTES];
    const sent = sizes.map((n, i) => (n === null ? null : Buffer.alloc(n, i + 1)));
    for (const [i, p] of sent.entries()) void ch.send({ i, note: 'é\u2603' }, p ?? undefined);
    for (const [i, p] of sent.entries()) {
      const m = await ch.receive();
      expect(m?.msg).toEqual({ i, note: 'é\u2603' });
      if (p === null) expect(m?.payload).toBeNull();
      else expect(createHash('sha256').update(m!.payload!).digest('hex'), `payload ${i}`).toBe(createHash('sha256').update(p).digest('hex'));
    }
    await expect(ch.send({ too: 'big' }, Buffer.alloc(MAX_PAYLOAD_BYTES + 1))).rejects.toBeInstanceOf(InvalidInputError);
    const mine = { sent: ch.bytesSent, received: ch.bytesReceived };
    await ch.close();
    await waitFor(() => seen.bytesReceived >= 0, 'the echo service to end');
    expect(seen.hello).toEqual({ op: 'test.echo', extra: [1, 2] });
    // the daemon's side counts what came after the handshake; ours counts everything
    expect(mine.sent).toBeGreaterThan(sizes.reduce((a: number, n) => a + (n ?? 0), 0));
    expect(seen.bytesReceived).toBeLessThanOrEqual(mine.sent);
    expect(mine.sent - seen.bytesReceived).toBeLessThan(1000);
    expect(mine.received - seen.bytesSent).toBeLessThan(1000);
    seen.bytesReceived = -1;
  });

  it('carries a payload sent in parts (sendOwnedParts) as the one payload they make, over TLS and plain; the parts are released once sent', async () => {
    for (const [url, opts] of [[tlsUrl(), withCa()], [plainUrl(), { tokenFile: token, plain: true }]] as const) {
      const ch = await open(url, opts, { op: 'test.echo' });
      const cases = [[Buffer.alloc(4096, 1), Buffer.alloc(0), Buffer.alloc(4096, 2)], Array.from({ length: 256 }, (_, i) => Buffer.alloc(4096, i)), [Buffer.alloc(0)], [Buffer.alloc(3_000_001, 7), Buffer.alloc(5, 8)]];
      let released = 0;
      for (const [i, parts] of cases.entries()) await ch.sendOwnedParts({ i }, parts, () => released++);
      for (const [i, parts] of cases.entries()) {
        const m = await ch.receive();
        expect(m?.msg).toEqual({ i });
        const whole = Buffer.concat(parts);
        expect(m?.payload?.length, `case ${i}`).toBe(whole.length);
        expect(crc(m!.payload!), `case ${i}`).toBe(crc(whole));
      }
      expect(released).toBe(cases.length);
      await expect(ch.sendOwnedParts({ too: 'big' }, [Buffer.alloc(MAX_PAYLOAD_BYTES), Buffer.alloc(1)])).rejects.toBeInstanceOf(InvalidInputError);
      await ch.close();
    }
  });

  it('makes a frame\'s checksum from the parts\' crc32s the caller gives (sendOwnedParts), computing the others; a wrong one is refused as damage', async () => {
    const ch = await open(plainUrl(), { tokenFile: token, plain: true }, { op: 'test.echo' });
    const parts = Array.from({ length: 5 }, (_, i) => Buffer.alloc(4096 + i, i + 1));
    await ch.sendOwnedParts({ i: 0 }, parts, undefined, parts.map((p, i) => (i % 2 ? crc(p) : -1)));
    const m = await ch.receive();
    expect(m?.msg).toEqual({ i: 0 });
    expect(m!.payload!.equals(Buffer.concat(parts))).toBe(true);
    // the checksum claimed is the one sent: the daemon finds the frame damaged and ends the connection
    await ch.sendOwnedParts({ i: 1 }, parts, undefined, parts.map((p) => (crc(p) ^ 1) >>> 0));
    expect(await ch.receive().catch(() => null)).toBeNull(); // no echo
    await waitFor(() => plainDaemon.logs.some((l) => /damaged frame \(checksum\)/.test(l)), 'the daemon to log the damaged frame');
    await ch.close();
  });

  it('pins the certificate: the right fingerprint connects, another one is refused naming both', async () => {
    const ch = await open(tlsUrl(), { tokenFile: token, tls: { fingerprint: cert.fingerprint } }, { op: 'test.echo' });
    await ch.close();
    const err = await failure(connectPeer(tlsUrl(), { tokenFile: token, tls: { fingerprint: otherCert.fingerprint } }));
    expect(err).toBeInstanceOf(AuthError);
    expect(err.exitCode).toBe(11);
    expect(err.message).toContain(cert.fingerprint);
    expect(err.message).toContain(otherCert.fingerprint);
  });

  it('checks the certificate against the CA and the host name', async () => {
    const ch = await open(tlsUrl('localhost'), withCa(), { op: 'test.echo' });
    await ch.close();
    const wrongCa = await failure(connectPeer(tlsUrl(), { tokenFile: token, tls: { ca: otherCert.cert } }));
    expect(wrongCa).toBeInstanceOf(AuthError);
    expect(wrongCa.message).toMatch(/does not check out against .*other\.crt/);
    // a daemon whose certificate names another host
    const d = await startInProcess({ root: dataDir, tokenFile: token, tls: { cert: elsewhereCert.cert, key: elsewhereCert.key }, services });
    try {
      const wrongName = await failure(connectPeer(`peer://127.0.0.1:${d.info.port}`, { tokenFile: token, tls: { ca: elsewhereCert.cert } }));
      expect(wrongName).toBeInstanceOf(AuthError);
      expect(wrongName.message).toMatch(/not for "127\.0\.0\.1"/);
      // pinned, the name does not matter
      const ch2 = await open(`peer://127.0.0.1:${d.info.port}`, { tokenFile: token, tls: { fingerprint: elsewhereCert.fingerprint } }, { op: 'test.echo' });
      await ch2.close();
    } finally {
      await d.stop();
    }
  });

  it('needs a CA or a pin for TLS, and plain on both sides', async () => {
    await expect(connectPeer(tlsUrl(), { tokenFile: token })).rejects.toThrow(/needs --tls-ca FILE or --tls-fingerprint/);
    await expect(connectPeer(tlsUrl(), { tokenFile: token, plain: true, tls: { ca: cert.cert } })).rejects.toThrow(/cannot be combined/);
    const plainToTls = await failure(connectPeer(tlsUrl(), { tokenFile: token, plain: true }));
    expect(plainToTls).toBeInstanceOf(NetworkError);
    expect(plainToTls.hint ?? '').toMatch(/--plain|TLS/);
    const tlsToPlain = await failure(connectPeer(plainUrl(), withCa()));
    expect(tlsToPlain).toBeInstanceOf(NetworkError);
    expect(tlsToPlain.hint).toMatch(/--plain/);
    await waitFor(() => plainDaemon.logs.some((l) => /a TLS client on a plain daemon/.test(l)), 'the daemon to log the TLS client');
    const ch = await open(plainUrl(), { tokenFile: token, plain: true }, { op: 'test.echo' });
    await ch.send({ hello: 1 }, Buffer.from('plain'));
    expect((await ch.receive())?.payload?.toString()).toBe('plain');
    await ch.close();
  });

  it('refuses a wrong token, on TLS and plain, and logs it', async () => {
    for (const [url, opts] of [
      [tlsUrl(), { tokenFile: otherToken, tls: { ca: cert.cert } }],
      [plainUrl(), { tokenFile: otherToken, plain: true }],
    ] as const) {
      const err = await failure(connectPeer(url, opts));
      expect(err).toBeInstanceOf(AuthError);
      expect(err.message).toMatch(/authentication failed/);
    }
    expect(tlsDaemon.logs.some((l) => /auth failed: wrong token/.test(l))).toBe(true);
  });

  it('refuses a daemon that does not hold the token, and never sends the token itself', async () => {
    // an impostor: speaks the protocol, takes any proof, answers with a proof made from another token
    const sentByClient: Buffer[] = [];
    const impostor = net.createServer((s) => {
      s.on('error', () => {});
      const nonce = Buffer.alloc(32, 9);
      const mine = Buffer.concat([Buffer.from('IMGSPEER'), Buffer.from([1, 0, 1, 0, 0, 0, 0, 0]), nonce]);
      s.write(mine);
      let got = Buffer.alloc(0);
      s.on('data', (b: Buffer) => {
        sentByClient.push(b);
        got = Buffer.concat([got, b]);
        if (got.length < 48 + 20) return;
        const hl = got.readUInt32LE(48);
        if (got.length < 48 + 20 + hl) return;
        const theirs = got.subarray(0, 48);
        const input = Buffer.concat([Buffer.from('imgstream-peer auth server\0'), theirs, mine]);
        const mac = createHmac('sha256', 'not the token at all').update(input).digest('hex');
        const json = Buffer.from(JSON.stringify({ type: 'auth', mac }));
        const prefix = Buffer.alloc(20);
        prefix.writeUInt32LE(json.length, 0);
        prefix.writeUInt32LE(crc(json), 12);
        prefix.writeUInt32LE(crc(prefix.subarray(0, 16)), 16);
        s.write(Buffer.concat([prefix, json]));
      });
    });
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    try {
      const err = await failure(connectPeer(`peer://127.0.0.1:${(impostor.address() as net.AddressInfo).port}`, { tokenFile: token, plain: true }));
      expect(err).toBeInstanceOf(AuthError);
      expect(err.message).toMatch(/could not prove it holds the same token/);
      const wire = Buffer.concat(sentByClient);
      const secret = fs.readFileSync(token, 'utf8').trim();
      expect(wire.length).toBeGreaterThan(48);
      expect(wire.includes(Buffer.from(secret))).toBe(false);
      expect(wire.includes(Buffer.from(secret, 'hex'))).toBe(false);
    } finally {
      impostor.close();
    }
  });

  it('answers an unknown operation, a refusing service and a crashing one with an error, and keeps serving', async () => {
    const unknown = await open(tlsUrl(), withCa(), { op: 'no.such.op' });
    expect((await unknown.receive())?.msg.error).toEqual({
      code: 'invalid-input',
      message: 'unknown operation "no.such.op"',
      hint: expect.stringMatching(/this daemon offers .*test\.echo/),
    });
    expect(await unknown.receive()).toBeNull(); // and the daemon closed the connection
    const refuse = await open(tlsUrl(), withCa(), { op: 'test.refuse' });
    expect((await refuse.receive())?.msg).toEqual({ error: { code: 'busy', message: 'not now', hint: 'later' } });
    const crash = await open(tlsUrl(), withCa(), { op: 'test.crash' });
    expect((await crash.receive())?.msg.error).toMatchObject({ code: 'io', message: 'internal error in the daemon' });
    expect(tlsDaemon.logs.some((l) => /test\.crash failed: internal error: a bug in a service/.test(l))).toBe(true);
    const ch = await open(tlsUrl(), withCa(), { op: 'test.echo' });
    await ch.send({ still: 'here' });
    expect((await ch.receive())?.msg).toEqual({ still: 'here' });
    await ch.close();
  });

  it('holds a fast sender back while the receiver does not read (backpressure)', async () => {
    flooded = 0;
    const count = 96;
    const ch = await open(tlsUrl(), withCa(), { op: 'test.flood', count, size: 1 << 20 });
    await new Promise((r) => setTimeout(r, 1500));
    const whileIdle = flooded;
    // about 8 MiB held by the channel plus what the sockets buffer: far from all of it
    expect(whileIdle).toBeLessThan(48);
    for (let i = 0; i < count; i++) {
      const m = await ch.receive();
      expect(m?.msg).toEqual({ i });
      expect(m?.payload?.readUInt32LE(0)).toBe(i);
      expect(m?.payload?.[100]).toBe(i & 0xff);
    }
    expect((await ch.receive())?.msg).toEqual({ end: true });
    await ch.close();
  });

  it('reads payloads into memory given back only once the caller is done with it (recycle)', async () => {
    const count = 48;
    const ch = await open(tlsUrl(), withCa(), { op: 'test.flood', count, size: 1 << 20 });
    const held: Buffer[] = [];
    const backings = new Set<ArrayBufferLike>();
    for (let i = 0; i < count; i++) {
      const m = await ch.receive();
      const p = m!.payload!;
      expect(p.readUInt32LE(0)).toBe(i);
      expect(p[100]).toBe(i & 0xff);
      if (i < count / 2) {
        held.push(p); // never given back: must never change
        ch.recycle(p, new Promise<void>(() => {}));
      } else {
        backings.add(p.buffer);
        ch.recycle(p, Promise.resolve());
        await new Promise((r) => setImmediate(r));
      }
    }
    expect((await ch.receive())?.msg).toEqual({ end: true });
    held.forEach((p, i) => {
      expect(p.readUInt32LE(0), `held payload ${i}`).toBe(i);
      expect(p.subarray(4).every((b) => b === (i & 0xff)), `held payload ${i}`).toBe(true);
    });
    // payloads given back were read into again: a few buffers served the second half
    expect(backings.size).toBeLessThan(count / 4);
    await ch.close();
  });

  it('puts a payload that spans socket chunks at the end of page-aligned memory, so the whole blocks it ends in are aligned (DATA records)', async () => {
    const count = 24;
    const head = 8 + 8 * 256; // a DATA record: count, VBNs, then 256 blocks
    const ch = await open(tlsUrl(), withCa(), { op: 'test.flood', count, size: head + (1 << 20) });
    const backings = new Set<ArrayBufferLike>();
    for (let i = 0; i < count; i++) {
      const p = (await ch.receive())!.payload!;
      expect(p.length).toBe(head + (1 << 20));
      expect(p.readUInt32LE(0)).toBe(i);
      expect(p.subarray(4).every((b) => b === (i & 0xff)), `payload ${i}`).toBe(true);
      expect(isDirectAligned(p.subarray(head)), `payload ${i} at byte offset ${p.byteOffset}`).toBe(true);
      backings.add(p.buffer);
      ch.recycle(p, Promise.resolve()); // given back although it does not start its buffer
      await new Promise((r) => setImmediate(r));
    }
    expect((await ch.receive())?.msg).toEqual({ end: true });
    expect(backings.size).toBeLessThan(count / 4);
    await ch.close();
  });

  it('limits the rate of what a client sends', async () => {
    const ch = await open(tlsUrl(), { ...withCa(), limitRate: 1 << 20 }, { op: 'test.echo' });
    const started = performance.now();
    for (let i = 0; i < 12; i++) await ch.send({ i }, Buffer.alloc(256 << 10));
    for (let i = 0; i < 12; i++) await ch.receive();
    const seconds = (performance.now() - started) / 1000;
    // 3 MiB at 1 MiB/s with one second of burst: at least 2 s
    expect(seconds).toBeGreaterThan(1.8);
    await ch.close();
  });

  it('times out a silent handshake and a silent connection, and tells the client "busy" beyond the connection cap', async () => {
    const d = await startInProcess({ root: dataDir, tokenFile: token, plain: true, services, handshakeTimeoutMs: 300, idleTimeoutMs: 500, maxConnections: 1 });
    try {
      const silent = net.connect(d.info.port, '127.0.0.1');
      silent.on('error', () => {});
      silent.resume(); // read what comes (its preamble), so the close is seen
      const closed = new Promise<void>((r) => silent.once('close', () => r()));
      await closed;
      expect(d.logs.some((l) => /handshake timed out after 0\.3 s/.test(l))).toBe(true);

      const holder = await open(`peer://127.0.0.1:${d.info.port}`, { tokenFile: token, plain: true }, { op: 'test.wait' });
      const busy = await failure(connectPeer(`peer://127.0.0.1:${d.info.port}`, { tokenFile: token, plain: true }));
      expect(busy).toBeInstanceOf(BusyError);
      expect(busy.message).toMatch(/too many connections \(1\)/);
      // the holder says nothing: the idle timeout ends it, and the next client gets in
      await expect(holder.receive()).resolves.toBeNull();
      const next = await open(`peer://127.0.0.1:${d.info.port}`, { tokenFile: token, plain: true }, { op: 'test.echo' });
      await next.send({ x: 1 });
      expect((await next.receive())?.msg).toEqual({ x: 1 });
      await next.close();
    } finally {
      await d.stop();
    }
  });

  it('ends a client that stops answering (client idle timeout)', async () => {
    const ch = await connectPeer(tlsUrl(), { ...withCa(), idleTimeoutMs: 400 });
    await ch.send({ op: 'test.wait' });
    const err = await failure(ch.receive());
    expect(err).toBeInstanceOf(NetworkError);
    expect(err.message).toMatch(/nothing heard for 0\.4 s/);
  });

  it('reports a daemon that is not there, and a port that is not a peer daemon', async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const port = (free.address() as net.AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    const refused = await failure(connectPeer(`peer://127.0.0.1:${port}`, { tokenFile: token, plain: true }));
    expect(refused).toBeInstanceOf(NetworkError);
    expect(refused.message).toMatch(/connection refused/);
    const http = net.createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'.padEnd(60, ' ')));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const notPeer = await failure(connectPeer(`peer://127.0.0.1:${(http.address() as net.AddressInfo).port}`, { tokenFile: token, plain: true }));
      expect(notPeer.message).toMatch(/not an imgstream peer daemon/);
      const silent = net.createServer(() => {});
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const timeout = await failure(connectPeer(`peer://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, { tokenFile: token, plain: true, timeoutMs: 300 }));
      expect(timeout).toBeInstanceOf(NetworkError);
      expect(timeout.message).toMatch(/no answer within 0\.3 s/);
      silent.close();
    } finally {
      http.close();
    }
  });

  it('refuses to start without TLS or plain, with a token file others may read, or a root that is not a directory', async () => {
    await expect(startInProcess({ root: dataDir, tokenFile: token, services })).rejects.toThrow(/needs --tls-cert FILE and --tls-key FILE, or --plain/);
    const loose = makeToken(root, 'loose', { mode: 0o644 });
    await expect(startInProcess({ root: dataDir, tokenFile: loose, plain: true, services })).rejects.toThrow(/group or others may access it \(mode 0644\)/);
    await expect(startInProcess({ root: path.join(root, 'missing'), tokenFile: token, plain: true, services })).rejects.toThrow(/no such directory/);
    await expect(startInProcess({ root: dataDir, tokenFile: token, tls: { cert: cert.cert, key: otherCert.key }, services })).rejects.toThrow(/--tls-key/);
    await expect(startInProcess({ root: dataDir, tokenFile: token, tls: { cert: token, key: cert.key }, services })).rejects.toThrow(/not a PEM certificate/);
  });
});
