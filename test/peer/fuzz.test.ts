// Hostile clients against one real `imgstream serve peer` process: several hundred
// connections, generated from a fixed seed, speaking the protocol by hand (the byte
// layouts are written out here rather than taken from src/format, so a mistake there
// cannot hide itself): random bytes, damaged preambles and versions, frames with bad
// checksums, oversize or truncated lengths, headers that are not JSON objects, requests
// before authentication, wrong and replayed proofs, malformed requests, and stream.put
// transfers of garbage, cut short or with lying byte counts. Each connection must be
// closed by the daemon (never left hanging), answered with the documented error where
// there is one, and never authenticated without the token. Afterwards the same daemon
// process is alive, logged no internal error, holds no file it should not, and takes a
// normal dump that restores like the source.
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliAsync } from '../support/cli.js';
import { rng, tempDir } from '../support/images.js';
import { exportSha, pool } from '../support/stream-cli.js';
import { hasOpenssl, listTree, makeCert, makeToken, makeVolume, startDaemon, waitFor, type DaemonProcess, type TestVolume } from './support.js';

const root = tempDir('imgstream-peer-fuzz-');
const work = path.join(root, 'work');
const store = path.join(root, 'store');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const random = rng(0xf0221);
const MiB = 1 << 20;

let token: Buffer;
let tokenFile: string;
let d: DaemonProcess;
let tlsd: DaemonProcess;
let v: TestVolume;
/** A valid image stream. */
let good: Buffer;

beforeAll(async () => {
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(store);
  if (!hasOpenssl) return;
  tokenFile = makeToken(root, 'token');
  token = Buffer.from(fs.readFileSync(tokenFile, 'utf8').trim());
  const cert = makeCert(root, 'daemon');
  v = await makeVolume(work, env, 1);
  const r = await runCliAsync(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', path.join(work, 'v.l0'), '-q'], { env, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  good = fs.readFileSync(path.join(work, 'v.l0'));
  fs.copyFileSync(path.join(work, 'v.l0'), path.join(store, 'seeded.l0'));
  d = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', tokenFile, '--plain', '--idle-timeout', '5', '--max-connections', '64']);
  tlsd = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', tokenFile, '--tls-cert', cert.cert, '--tls-key', cert.key]);
});

afterAll(async () => {
  await d?.stop();
  await tlsd?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------- the protocol, by hand

/** preamble: "IMGSPEER", u16 min version, u16 max version, u32 reserved, 32-byte nonce */
function preamble(o: { magic?: string; min?: number; max?: number; reserved?: number } = {}): Buffer {
  const b = Buffer.alloc(48);
  b.write(o.magic ?? 'IMGSPEER', 0, 'latin1');
  b.writeUInt16LE(o.min ?? 1, 8);
  b.writeUInt16LE(o.max ?? 1, 10);
  b.writeUInt32LE(o.reserved ?? 0, 12);
  randomBytes(32).copy(b, 16);
  return b;
}

interface FrameOptions {
  headerLength?: number;
  payloadLength?: number;
  flags?: number;
  reserved?: number;
  badBodyCrc?: boolean;
  badPrefixCrc?: boolean;
}

/** frame: u32 header length, u32 payload length, u16 flags (1: payload), u16 0, u32 crc32(header+payload), u32 crc32(prefix[0..16]) */
function frame(header: Record<string, unknown> | unknown[] | Buffer | string, payload: Buffer | null = null, o: FrameOptions = {}): Buffer {
  const h = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const p = Buffer.alloc(20);
  p.writeUInt32LE(o.headerLength ?? h.length, 0);
  p.writeUInt32LE(o.payloadLength ?? payload?.length ?? 0, 4);
  p.writeUInt16LE(o.flags ?? (payload ? 1 : 0), 8);
  p.writeUInt16LE(o.reserved ?? 0, 10);
  let c = crc32(h);
  if (payload) c = crc32(payload, c);
  p.writeUInt32LE((o.badBodyCrc ? c ^ 1 : c) >>> 0, 12);
  const pc = crc32(p.subarray(0, 16)) >>> 0;
  p.writeUInt32LE(o.badPrefixCrc ? (pc ^ 0x100) >>> 0 : pc, 16);
  return Buffer.concat([p, h, payload ?? Buffer.alloc(0)]);
}

function clientMac(clientPre: Buffer, serverPre: Buffer, key: Buffer = token): string {
  return createHmac('sha256', key).update(Buffer.concat([Buffer.from('imgstream-peer auth client\0', 'latin1'), clientPre, serverPre])).digest('hex');
}

/** A client socket read as exact byte counts and frames. */
class Raw {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  ended = false;
  readonly closed: Promise<void>;
  /** Every byte the daemon sent. */
  readonly all: Buffer[] = [];

  constructor(readonly socket: net.Socket) {
    socket.on('data', (b: Buffer) => {
      this.all.push(b);
      this.buf = Buffer.concat([this.buf, b]);
      this.waiting?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.waiting?.();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }

  write(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  /** Exactly n bytes, or null when the daemon closed first. */
  async read(n: number, ms = 10_000): Promise<Buffer | null> {
    const deadline = Date.now() + ms;
    while (this.buf.length < n) {
      if (this.ended) return null;
      if (Date.now() > deadline) throw new Error(`no ${n} bytes from the daemon within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiting = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiting = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  /** The daemon's next message, or null when it closed first. */
  async frame(): Promise<{ msg: Record<string, any>; payload: Buffer | null } | null> {
    const p = await this.read(20);
    if (!p) return null;
    const h = await this.read(p.readUInt32LE(0));
    const payload = p.readUInt16LE(8) & 1 ? await this.read(p.readUInt32LE(4)) : null;
    if (!h) return null;
    return { msg: JSON.parse(h.toString()), payload };
  }
}

/** Preambles both ways, then a correct proof: returns the connection, authenticated. */
async function authenticated(c: Raw): Promise<{ clientPre: Buffer; serverPre: Buffer }> {
  const serverPre = (await c.read(48))!;
  expect(serverPre.subarray(0, 8).toString()).toBe('IMGSPEER');
  const clientPre = preamble();
  c.write(clientPre);
  c.write(frame({ type: 'auth', mac: clientMac(clientPre, serverPre) }));
  const r = await c.frame();
  expect(r?.msg.type, 'the daemon proves itself').toBe('auth');
  return { clientPre, serverPre };
}

/** Preambles both ways, without a proof. */
async function unauthenticated(c: Raw): Promise<{ clientPre: Buffer; serverPre: Buffer }> {
  const serverPre = (await c.read(48))!;
  const clientPre = preamble();
  c.write(clientPre);
  return { clientPre, serverPre };
}

const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(xs: T[]): T => xs[int(xs.length)];

// ---------------------------------------------------------------- the cases

interface Case {
  name: string;
  /** Talks to the daemon; may assert its answers. The connection is half-closed after it. */
  run(c: Raw): Promise<void>;
  /** The error code the daemon must answer with (checked among everything it sent). */
  expectError?: string;
  /** TLS daemon instead of the plain one. */
  tls?: boolean;
}

let replayed: { mac: string } | null = null;
const cases: Case[] = [];
const add = (name: string, run: Case['run'], expectError?: string, tls = false) => cases.push({ name, run, expectError, tls });

// random bytes, at the plain and the TLS daemon
for (let i = 0; i < 100; i++) {
  const n = pick([0, 1, 7, 20, 47, 48, 49, 100, 1000, 3000, int(5000)]);
  add(`random ${n} bytes`, async (c) => c.write(bytes(n)));
}
for (let i = 0; i < 20; i++) add(`random bytes to TLS`, async (c) => c.write(bytes(1 + int(2000))), undefined, true);
add('a plain preamble to TLS', async (c) => c.write(Buffer.concat([preamble(), frame({ type: 'auth', mac: '0'.repeat(64) })])), undefined, true);

// a valid preamble, then garbage
for (let i = 0; i < 40; i++) {
  add('preamble + random bytes', async (c) => {
    await unauthenticated(c);
    c.write(bytes(1 + int(3000)));
  });
}

// damaged preambles, other versions
add('bad magic', async (c) => c.write(preamble({ magic: 'IMGSPEEX' })));
add('HTTP', async (c) => c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.padEnd(60))));
add('TLS hello bytes at a plain daemon', async (c) => c.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), bytes(300)])));
for (const [min, max] of [[2, 3], [9, 9], [65535, 65535]]) {
  add(`only versions ${min}..${max}`, async (c) => {
    await c.read(48);
    c.write(preamble({ min, max }));
    const r = await c.frame();
    expect(r?.msg.error?.message).toMatch(/this daemon speaks peer protocol versions 1\.\.1/);
  }, 'invalid-input');
}
for (const [min, max, reserved] of [[0, 1, 0], [0, 0, 0], [3, 1, 0], [1, 1, 7]]) add(`damaged preamble ${min}/${max}/${reserved}`, async (c) => c.write(preamble({ min, max, reserved })));
for (let i = 0; i < 8; i++) add('preamble cut short', async (c) => c.write(preamble().subarray(0, int(48))));

// frames before authentication
for (let i = 0; i < 10; i++) {
  add('a request before authenticating', async (c) => {
    await unauthenticated(c);
    c.write(frame({ op: 'stream.put', name: `fuzz/early-${i}` }));
  }, 'auth');
}
const preAuthFrames: Array<[string, () => Buffer]> = [
  ['a header over the pre-auth limit', () => frame({ type: 'auth', mac: 'a'.repeat(5000) })],
  ['a payload before authenticating', () => frame({ type: 'auth', mac: '0'.repeat(64) }, Buffer.alloc(10))],
  ['a 4 GiB header length', () => frame({ a: 1 }, null, { headerLength: 0xffffffff })],
  ['a 4 GiB payload length', () => frame({ a: 1 }, null, { payloadLength: 0xffffffff, flags: 1 })],
  ['a payload length without the flag', () => frame({ a: 1 }, null, { payloadLength: 10, flags: 0 })],
  ['unknown flags', () => frame({ a: 1 }, null, { flags: 6 })],
  ['a reserved field set', () => frame({ a: 1 }, null, { reserved: 1 })],
  ['a bad prefix checksum', () => frame({ type: 'auth', mac: '0'.repeat(64) }, null, { badPrefixCrc: true })],
  ['a bad body checksum', () => frame({ type: 'auth', mac: '0'.repeat(64) }, null, { badBodyCrc: true })],
  ['a header of 0 bytes', () => frame(Buffer.alloc(0))],
  ['a header of 1 byte', () => frame('{')],
  ['a header that is not JSON', () => frame('not json at all')],
  ['a JSON array', () => frame([1, 2, 3])],
  ['JSON null', () => frame('null')],
  ['a JSON number', () => frame('12345')],
  ['a JSON string', () => frame('"auth"')],
  ['invalid UTF-8', () => frame(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))],
  ['a deeply nested header', () => frame(`${'['.repeat(1500)}${']'.repeat(1500)}`)],
  ['a truncated frame', () => frame({ type: 'auth', mac: '0'.repeat(64) }).subarray(0, 30)],
  ['a prefix alone', () => frame({ type: 'auth', mac: '0'.repeat(64) }).subarray(0, 20)],
];
for (const [name, make] of preAuthFrames) {
  for (let k = 0; k < 3; k++) {
    add(`pre-auth: ${name}`, async (c) => {
      await unauthenticated(c);
      c.write(make());
    });
  }
}

for (let k = 0; k < 3; k++) {
  add('pre-auth: a flood of tiny frames', async (c) => {
    await unauthenticated(c);
    c.write(Buffer.concat(Array.from({ length: 20_000 }, () => frame({}))));
  }, 'auth');
}

// wrong proofs
const wrongMacs: Array<[string, (pre: { clientPre: Buffer; serverPre: Buffer }) => unknown]> = [
  ['a random MAC', () => bytes(32).toString('hex')],
  ['a MAC made with another token', (p) => clientMac(p.clientPre, p.serverPre, Buffer.from('another token entirely 123456'))],
  ['the server role MAC', (p) => createHmac('sha256', token).update(Buffer.concat([Buffer.from('imgstream-peer auth server\0'), p.clientPre, p.serverPre])).digest('hex')],
  ['a MAC with preambles swapped', (p) => clientMac(p.serverPre, p.clientPre)],
  ['a MAC of 63 digits', (p) => clientMac(p.clientPre, p.serverPre).slice(1)],
  ['a MAC of 65 digits', (p) => `${clientMac(p.clientPre, p.serverPre)}0`],
  ['a MAC that is not hex', () => 'zz'.repeat(32)],
  ['a MAC as a number', () => 12345],
  ['a MAC as an object', () => ({ mac: 'x' })],
  ['no MAC', () => undefined],
];
for (const [name, mac] of wrongMacs) {
  for (let k = 0; k < 2; k++) {
    add(`auth: ${name}`, async (c) => {
      const p = await unauthenticated(c);
      c.write(frame({ type: 'auth', mac: mac(p) }));
      const r = await c.frame();
      expect(r?.msg.error).toMatchObject({ code: 'auth' });
    }, 'auth');
  }
}
for (let k = 0; k < 6; k++) {
  add('auth: a MAC replayed from an earlier connection', async (c) => {
    await unauthenticated(c);
    c.write(frame({ type: 'auth', mac: replayed!.mac }));
    const r = await c.frame();
    expect(r?.msg.error).toMatchObject({ code: 'auth' });
  }, 'auth');
}

// authenticated, then malformed requests
const badHellos: Array<[string, () => Buffer, string | undefined]> = [
  ['an empty request', () => frame({}), 'invalid-input'],
  ['op is a number', () => frame({ op: 5 }), 'invalid-input'],
  ['op is null', () => frame({ op: null }), 'invalid-input'],
  ['op in capitals', () => frame({ op: 'STREAM.PUT', name: 'x' }), 'invalid-input'],
  ['op with empty parts', () => frame({ op: 'stream..put' }), 'invalid-input'],
  ['a long op', () => frame({ op: 'a'.repeat(100) }), 'invalid-input'],
  ['an unknown op', () => frame({ op: 'no.such.op', name: 'x' }), 'invalid-input'],
  ['an error instead of a request', () => frame({ error: { code: 'io', message: 'x' } }), 'invalid-input'],
  ['a request with a payload', () => frame({ op: 'stream.get', name: 'seeded.l0' }, Buffer.alloc(100)), 'invalid-input'],
  ['a name with ..', () => frame({ op: 'stream.put', name: '../fuzz-escape' }), 'invalid-input'],
  ['an absolute name', () => frame({ op: 'stream.put', name: `${store}/fuzz-abs` }), 'invalid-input'],
  ['a name with NUL', () => frame({ op: 'stream.put', name: 'fuzz\0x' }), 'invalid-input'],
  ['a number as name', () => frame({ op: 'stream.get', name: 7 }), 'invalid-input'],
  ['no name for stream.put', () => frame({ op: 'stream.put' }), 'invalid-input'],
  ['a header that is not JSON', () => frame('{"op": "stream.put", '), undefined],
  ['a JSON array', () => frame(['stream.put']), undefined],
  ['a payload over 64 MiB', () => frame({ op: 'x' }, null, { payloadLength: 64 * MiB + 1, flags: 1 }), undefined],
  ['a header over 1 MiB', () => frame({ op: 'x' }, null, { headerLength: MiB + 1 }), undefined],
  ['a bad body checksum', () => frame({ op: 'stream.get', name: 'seeded.l0' }, null, { badBodyCrc: true }), undefined],
  ['a bad prefix checksum', () => frame({ op: 'stream.get', name: 'seeded.l0' }, null, { badPrefixCrc: true }), undefined],
  ['a truncated request', () => frame({ op: 'stream.get', name: 'seeded.l0' }).subarray(0, 25), undefined],
  ['random bytes', () => bytes(500), undefined],
];
for (const [name, make, code] of badHellos) {
  for (let k = 0; k < 4; k++) {
    add(`request: ${name}`, async (c) => {
      await authenticated(c);
      c.write(make());
    }, code);
  }
}

// stream.put of garbage
let puts = 0;
const putThen = (name: string, after: (c: Raw) => void | Promise<void>, code?: string, n = 3) => {
  for (let k = 0; k < n; k++) {
    add(`stream.put: ${name}`, async (c) => {
      await authenticated(c);
      c.write(frame({ op: 'stream.put', name: `fuzz/p${puts++}.l0`, force: true }));
      const r = await c.frame();
      expect(r?.msg).toEqual({ type: 'ready' });
      await after(c);
    }, code);
  }
};
const sendData = (c: Raw, b: Buffer) => {
  for (let o = 0; o < b.length; o += 100_000) c.write(frame({ type: 'data' }, b.subarray(o, o + 100_000)));
};
putThen('random bytes, then a correct end', (c) => {
  const b = bytes(1 + int(300_000));
  if (b[0] === 0x49) b[0] = 0; // not even the first byte of a stream's magic ("IMGSTRM1"): no stream at all
  sendData(c, b);
  c.write(frame({ type: 'end', bytes: b.length }));
}, 'not-a-volume', 8);
putThen('an empty stream', (c) => c.write(frame({ type: 'end', bytes: 0 })), 'corrupt');
putThen('a stream cut short, then a correct end', (c) => {
  const cut = good.subarray(0, 1 + int(good.length - 2));
  sendData(c, cut);
  c.write(frame({ type: 'end', bytes: cut.length }));
}, 'corrupt', 8);
putThen('a whole stream, then an end with the wrong count', (c) => {
  sendData(c, good);
  c.write(frame({ type: 'end', bytes: good.length + 1 + int(100) }));
}, 'corrupt', 4);
putThen('a whole stream with a damaged byte', (c) => {
  const b = Buffer.from(good);
  b[16 + int(b.length - 16)] ^= 1 << int(8);
  sendData(c, b);
  c.write(frame({ type: 'end', bytes: b.length }));
}, 'corrupt', 8);
putThen('a whole stream, then more bytes', (c) => {
  sendData(c, Buffer.concat([good, bytes(1 + int(1000))]));
  c.write(frame({ type: 'end', bytes: good.length }));
}, 'corrupt', 3);
putThen('a stream, then the connection drops', (c) => sendData(c, good.subarray(0, int(good.length))), undefined, 5);
putThen('an abort', (c) => {
  sendData(c, good.subarray(0, int(good.length)));
  c.write(frame({ type: 'abort' }));
}, undefined, 3);
putThen('an unknown message', (c) => c.write(frame({ type: 'what' })), 'corrupt');
putThen('data without a payload', (c) => c.write(frame({ type: 'data' })), 'corrupt');
putThen('a second request', (c) => c.write(frame({ op: 'stream.put', name: 'fuzz/second' })), 'corrupt');
putThen('a damaged frame in the middle', (c) => {
  sendData(c, good.subarray(0, 10_000));
  c.write(frame({ type: 'data' }, good.subarray(10_000, 20_000), { badBodyCrc: true }));
}, undefined, 3);

// stream.get
for (let k = 0; k < 8; k++) {
  add('stream.get of a missing name', async (c) => {
    await authenticated(c);
    c.write(frame({ op: 'stream.get', name: `fuzz/missing-${k}` }));
  }, 'not-found');
}
for (let k = 0; k < 8; k++) {
  add('stream.get, leaving after the first bytes', async (c) => {
    await authenticated(c);
    c.write(frame({ op: 'stream.get', name: 'seeded.l0' }));
    const r = await c.frame();
    expect(r?.msg).toEqual({ type: 'stream', bytes: good.length });
    c.socket.destroy();
  });
}

// ---------------------------------------------------------------- running them

/** Every message the daemon sent after its preamble (what can be parsed of it). */
function messagesIn(sent: Buffer): Array<Record<string, any>> {
  const out: Array<Record<string, any>> = [];
  let o = 48;
  while (o + 20 <= sent.length) {
    const hl = sent.readUInt32LE(o);
    const pl = sent.readUInt16LE(o + 8) & 1 ? sent.readUInt32LE(o + 4) : 0;
    if (o + 20 + hl + pl > sent.length) break;
    out.push(JSON.parse(sent.subarray(o + 20, o + 20 + hl).toString()));
    o += 20 + hl + pl;
  }
  return out;
}

describe.skipIf(!hasOpenssl)('a daemon under hostile clients', () => {
  it(`survives ${cases.length} malformed connections, answering each as documented and closing it`, async () => {
    expect(cases.length).toBeGreaterThanOrEqual(400);
    // a proof that was good once, for the replay cases
    const first = await Raw.connect(d.info.port);
    const p = await authenticated(first);
    replayed = { mac: clientMac(p.clientPre, p.serverPre) };
    first.socket.destroy();
    const failures: string[] = [];
    await pool(8, cases, async (k, i) => {
      const c = await Raw.connect(k.tls ? tlsd.info.port : d.info.port);
      const what = `case ${i} (${k.name})`;
      try {
        await k.run(c);
        c.socket.end();
        let timer: NodeJS.Timeout | undefined;
        const closed = await Promise.race([c.closed.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 15_000)))]);
        clearTimeout(timer);
        if (!closed) failures.push(`${what}: the daemon did not close the connection`);
        if (!k.tls) {
          const msgs = messagesIn(Buffer.concat(c.all));
          const authed = msgs.some((m) => m.type === 'auth');
          if (authed && !/^(request|stream\.)/.test(k.name)) failures.push(`${what}: the daemon authenticated a client without the token`);
          if (k.expectError && !msgs.some((m) => m.error?.code === k.expectError)) failures.push(`${what}: no "${k.expectError}" error, got ${JSON.stringify(msgs).slice(0, 200)}`);
        }
      } catch (err) {
        failures.push(`${what}: ${(err as Error).message}`);
      } finally {
        c.socket.destroy();
      }
    });
    expect(failures).toEqual([]);
    expect(d.alive() && tlsd.alive()).toBe(true);
  });

  it('is still the same process afterwards, logged every connection without an internal error, and kept no file from them', async () => {
    const log = d.stderr();
    expect(log).not.toMatch(/internal error/);
    expect(log).not.toMatch(/^\s+at\s/m);
    expect(tlsd.stderr()).not.toMatch(/internal error/);
    // every case, and the one that recorded a proof for the replays
    const connections = cases.filter((k) => !k.tls).length + 1;
    expect((log.match(/: connect$/gm) ?? []).length).toBe(connections);
    // (the last ones may still be in the daemon's short wait for the client to close)
    await waitFor(() => (d.stderr().match(/: disconnect: /gm) ?? []).length === connections, 'every connection to be logged as ended', 10_000);
    expect(log).toMatch(/auth failed: wrong token/);
    // the puts left no file: no stream, no temporary file (directories they made may stay)
    expect(listTree(store).filter((f) => !f.endsWith('/'))).toEqual(['seeded.l0']);
    expect(fs.existsSync(path.join(root, 'fuzz-escape'))).toBe(false);
  });

  it('then takes a normal dump and gives it back', async () => {
    const flags = ['--token-file', tokenFile, '--plain'];
    const url = `peer://127.0.0.1:${d.info.port}/after-fuzz.l0`;
    const r = await runCliAsync(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', url, ...flags], { env, timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const back = await runCliAsync(['restore', '--from', url, '--to', path.join(work, 'after.vol'), ...flags], { env, timeoutMs: 120_000 });
    expect(back.code, back.stderr).toBe(0);
    expect(await exportSha(`${path.join(work, 'after.vol')}@s1`, { env })).toBe(v.s1);
    expect(d.alive()).toBe(true);
  });
});
