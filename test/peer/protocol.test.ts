// The pure parts of the peer transport: the frame and preamble codec (round trips, every
// damaged bit caught, lengths refused before their bytes are awaited), peer URLs and
// names, fingerprints, token files, the rate limiter (on a fake clock), and name
// containment on a real directory tree.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { crc32 as zcrc32 } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidInputError, NotFoundError } from '../../src/core/errors.js';
import {
  FULL_LIMITS,
  MAX_HEADER_BYTES,
  MAX_PAYLOAD_BYTES,
  PEER_PREAMBLE_BYTES,
  PEER_PREFIX_BYTES,
  PRE_AUTH_LIMITS,
  PeerFormatError,
  commonVersion,
  decodePeerMessage,
  decodePeerPreamble,
  decodePeerPrefix,
  encodePeerFrame,
  encodePeerPreamble,
} from '../../src/format/peer-protocol.js';
import { RateLimiter, checkPeerName, formatPeerUrl, parseFingerprint, parsePeerListen, parsePeerUrl, readTokenFile, resolveContained, type Clock } from '../../src/peer/index.js';
import { makeParents } from '../../src/peer/contained-path.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-peer-unit-'));
const crc32 = (b: Buffer) => zcrc32(b) >>> 0;
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function decodeFrame(bytes: Buffer, limits = FULL_LIMITS): { msg: Record<string, unknown>; payload: Buffer | null } {
  const prefix = decodePeerPrefix(bytes.subarray(0, PEER_PREFIX_BYTES), limits);
  if (bytes.length !== PEER_PREFIX_BYTES + prefix.headerLength + prefix.payloadLength) throw new PeerFormatError('length');
  const header = bytes.subarray(PEER_PREFIX_BYTES, PEER_PREFIX_BYTES + prefix.headerLength);
  const payload = prefix.hasPayload ? bytes.subarray(PEER_PREFIX_BYTES + prefix.headerLength) : null;
  const { msg, payloadCrc } = decodePeerMessage(prefix, header, payload);
  // the payload's own crc32 comes along, and a frame encoded with it given is the same frame
  expect(payloadCrc).toBe(payload ? crc32(payload) : null);
  if (payload) {
    const again = encodePeerFrame(msg, payload, limits, payloadCrc!);
    expect(Buffer.concat([again.head, again.payload!]).equals(bytes)).toBe(true);
  }
  return { msg, payload };
}

function frameBytes(msg: Record<string, unknown>, payload: Buffer | null): Buffer {
  const f = encodePeerFrame(msg, payload);
  return f.payload ? Buffer.concat([f.head, f.payload]) : f.head;
}

describe('frames', () => {
  it('gives the crc32 of each unit of a payload of whole units, and checks the frame with them as without; a damaged unit is refused', () => {
    const payload = Buffer.from(Array.from({ length: 5 * 4096 }, (_, i) => (i * 131) & 0xff));
    const bytes = frameBytes({ type: 'blocks', n: 5 }, payload);
    const prefix = decodePeerPrefix(bytes.subarray(0, PEER_PREFIX_BYTES));
    const header = bytes.subarray(PEER_PREFIX_BYTES, PEER_PREFIX_BYTES + prefix.headerLength);
    const body = Buffer.from(bytes.subarray(PEER_PREFIX_BYTES + prefix.headerLength));
    const got = decodePeerMessage(prefix, header, body, 4096);
    expect(got.msg).toEqual({ type: 'blocks', n: 5 });
    expect(got.payloadCrc).toBe(crc32(payload));
    expect([...got.unitCrcs!]).toEqual(Array.from({ length: 5 }, (_, i) => crc32(payload.subarray(i * 4096, (i + 1) * 4096))));
    // not whole units (or no unit asked for): the payload's crc32 alone
    expect(decodePeerMessage(prefix, header, body, 3000).unitCrcs).toBeNull();
    expect(decodePeerMessage(prefix, header, body).unitCrcs).toBeNull();
    body[3 * 4096 + 7] ^= 1;
    expect(() => decodePeerMessage(prefix, header, body, 4096)).toThrow(PeerFormatError);
  });

  it('round-trip a header with no payload, an empty payload and a binary one, and tell them apart', () => {
    const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff));
    for (const p of [null, Buffer.alloc(0), payload]) {
      const back = decodeFrame(frameBytes({ type: 'data', n: 1, nested: { a: [1, 'x'] } }, p));
      expect(back.msg).toEqual({ type: 'data', n: 1, nested: { a: [1, 'x'] } });
      if (p === null) expect(back.payload).toBeNull();
      else expect(back.payload?.equals(p)).toBe(true);
    }
  });

  it('lays out the prefix as specified: header length, payload length, flags, reserved, crc32 of the body, crc32 of the prefix', () => {
    const b = frameBytes({ a: 1 }, Buffer.from('xyz'));
    expect(b.readUInt32LE(0)).toBe(Buffer.byteLength('{"a":1}'));
    expect(b.readUInt32LE(4)).toBe(3);
    expect(b.readUInt16LE(8)).toBe(1);
    expect(b.readUInt16LE(10)).toBe(0);
    expect(b.subarray(PEER_PREFIX_BYTES).toString()).toBe('{"a":1}xyz');
  });

  it('catches every single flipped bit of a frame', () => {
    const good = frameBytes({ type: 'data', seq: 12 }, Buffer.from('some payload bytes'));
    let caught = 0;
    for (let bit = 0; bit < good.length * 8; bit++) {
      const bad = Buffer.from(good);
      bad[bit >> 3] ^= 1 << (bit & 7);
      try {
        decodeFrame(bad);
      } catch (err) {
        expect(err).toBeInstanceOf(PeerFormatError);
        caught++;
      }
    }
    expect(caught).toBe(good.length * 8);
  });

  it('refuses out-of-range lengths from the prefix alone, before the bytes they announce', () => {
    const prefixWith = (headerLength: number, payloadLength: number, flags: number) => {
      const f = Buffer.from(frameBytes({ a: 1 }, null).subarray(0, PEER_PREFIX_BYTES));
      f.writeUInt32LE(headerLength, 0);
      f.writeUInt32LE(payloadLength, 4);
      f.writeUInt16LE(flags, 8);
      f.writeUInt32LE(crc32(f.subarray(0, 16)), 16);
      return f;
    };
    expect(() => decodePeerPrefix(prefixWith(MAX_HEADER_BYTES + 1, 0, 0))).toThrow(/header of 1048577 bytes is out of range/);
    expect(() => decodePeerPrefix(prefixWith(0xffffffff, 0, 0))).toThrow(/out of range/);
    expect(() => decodePeerPrefix(prefixWith(1, 0, 0))).toThrow(/out of range/);
    expect(() => decodePeerPrefix(prefixWith(10, MAX_PAYLOAD_BYTES + 1, 1))).toThrow(/payload of 67108865 bytes exceeds/);
    expect(() => decodePeerPrefix(prefixWith(10, 5, 0))).toThrow(/payload length without a payload/);
    expect(() => decodePeerPrefix(prefixWith(10, 0, 2))).toThrow(/unknown flags/);
    expect(decodePeerPrefix(prefixWith(MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, 1))).toMatchObject({ headerLength: MAX_HEADER_BYTES, payloadLength: MAX_PAYLOAD_BYTES });
    // before authentication: small headers, no payload at all
    expect(() => decodePeerPrefix(prefixWith(5000, 0, 0), PRE_AUTH_LIMITS)).toThrow(/out of range \(2 to 4096\)/);
    expect(() => decodePeerPrefix(prefixWith(10, 0, 1), PRE_AUTH_LIMITS)).toThrow(/payload before authentication/);
  });

  it('refuses headers that are not a JSON object, and refuses to encode oversize frames', () => {
    for (const text of ['not json', '[1,2]', 'null', '42', '"str"', '{"a":', '\u0000\u0001']) {
      const json = Buffer.from(text);
      const prefix = { headerLength: json.length, payloadLength: 0, hasPayload: false, crc: crc32(json) };
      expect(() => decodePeerMessage(prefix, json, null), text).toThrow(PeerFormatError);
    }
    expect(() => encodePeerFrame({ big: 'x'.repeat(MAX_HEADER_BYTES) }, null)).toThrow(/exceeds the limit/);
    expect(() => encodePeerFrame({ a: 1 }, Buffer.alloc(MAX_PAYLOAD_BYTES + 1))).toThrow(/exceeds the limit/);
  });
});

describe('preambles', () => {
  it('round-trip, and refuse a bad magic, version 0, reversed versions and a non-zero reserved field', () => {
    const nonce = Buffer.alloc(32, 7);
    const p = encodePeerPreamble(nonce, 1, 3);
    expect(p.length).toBe(PEER_PREAMBLE_BYTES);
    expect(p.subarray(0, 8).toString()).toBe('IMGSPEER');
    expect(decodePeerPreamble(p)).toEqual({ minVersion: 1, maxVersion: 3, nonce });
    const damaged = (at: number, v: number) => {
      const b = Buffer.from(p);
      b[at] = v;
      return b;
    };
    expect(() => decodePeerPreamble(damaged(0, 0x58))).toThrow(/bad magic/);
    expect(() => decodePeerPreamble(encodePeerPreamble(nonce, 0, 1))).toThrow(/damaged/);
    expect(() => decodePeerPreamble(encodePeerPreamble(nonce, 3, 2))).toThrow(/damaged/);
    expect(() => decodePeerPreamble(damaged(13, 1))).toThrow(/damaged/);
    expect(() => decodePeerPreamble(p.subarray(0, 47))).toThrow(PeerFormatError);
  });

  it('agree on the highest version both sides speak, or on none', () => {
    expect(commonVersion({ minVersion: 1, maxVersion: 1 })).toBe(1);
    expect(commonVersion({ minVersion: 1, maxVersion: 9 })).toBe(1);
    expect(commonVersion({ minVersion: 2, maxVersion: 9 })).toBeNull();
    expect(commonVersion({ minVersion: 1, maxVersion: 5 }, 3, 7)).toBe(5);
    expect(commonVersion({ minVersion: 8, maxVersion: 9 }, 3, 7)).toBeNull();
  });
});

describe('peer URLs, listen addresses and names', () => {
  it('parses host, port and name, IPv6 in brackets, percent-encoding, nested names', () => {
    expect(parsePeerUrl('peer://backup1:7420/vm1.l0')).toEqual({ host: 'backup1', port: 7420, name: 'vm1.l0' });
    expect(parsePeerUrl('peer://10.0.0.5:1/site-a/vm1.l0')).toEqual({ host: '10.0.0.5', port: 1, name: 'site-a/vm1.l0' });
    expect(parsePeerUrl('peer://[::1]:65535/a')).toEqual({ host: '::1', port: 65535, name: 'a' });
    expect(parsePeerUrl('peer://[fe80::1%eth0]:7420/a')).toMatchObject({ host: 'fe80::1%eth0' });
    expect(parsePeerUrl('peer://h:7/with%20space')).toMatchObject({ name: 'with space' });
    expect(parsePeerUrl('peer://h:7', { requireName: false })).toEqual({ host: 'h', port: 7, name: '' });
    for (const u of [{ host: '::1', port: 9, name: 'a b/c%d' }, { host: 'h', port: 1, name: 'x' }]) expect(parsePeerUrl(formatPeerUrl(u))).toEqual(u);
  });

  it('refuses anything else with a one-line message', () => {
    const bad = [
      'backup1:7420/x',
      'peer://backup1/x',
      'peer://backup1:/x',
      'peer://:7420/x',
      'peer://backup1:0/x',
      'peer://backup1:65536/x',
      'peer://backup1:7420',
      'peer://backup1:7420/',
      'peer://::1:7420/x',
      'peer://[::1/x',
      'peer://ho st:1/x',
      'peer://h:1/../x',
      'peer://h:1/a/../../x',
      'peer://h:1/%2e%2e/x',
      'peer://h:1//etc/passwd',
      'peer://h:1/a%00b',
      'peer://h:1/a%0ab',
      'peer://h:1/-rf',
      'peer://h:1/.hidden',
      'peer://h:1/a//b',
      'peer://h:1/a/',
      'peer://h:1/%zz',
      `peer://h:1/${'x'.repeat(256)}`,
    ];
    for (const u of bad) {
      let err: unknown = null;
      try {
        parsePeerUrl(u);
      } catch (e) {
        err = e;
      }
      expect(err, u).toBeInstanceOf(InvalidInputError);
      expect((err as Error).message, u).not.toContain('\n');
      expect((err as Error).message, u).not.toMatch(/[\x00-\x08\x0a-\x1f]/);
    }
  });

  it('escapes a URL or name in its error as every error line does (escapeControls: \\n, \\x1b, C1), cut to 120 characters', () => {
    expect(() => parsePeerUrl('bogus\n\x1b[31m\u0085')).toThrow('invalid peer URL "bogus\\n\\x1b[31m\\x85"');
    expect(() => checkPeerName('a\tb')).toThrow('invalid peer name "a\\tb"');
    expect(() => parsePeerUrl(`x${'\n'.repeat(200)}`)).toThrow(`invalid peer URL "x${'\\n'.repeat(59)}\\..."`);
  });

  it('checks names: components, length in bytes, reserved leading characters', () => {
    for (const ok of ['a', 'vm1.l0', 'site-a/vm1/2026-11-23.l1', 'é'.repeat(100), 'a-b_c:d@e']) expect(() => checkPeerName(ok), ok).not.toThrow();
    for (const bad of ['', '/a', 'a/../b', '..', '.', './a', 'a/.', '.a', 'a/.b', '-a', 'a/-b', 'a\0', 'a\x7f', 'a\tb', 'x'.repeat(201), 'é'.repeat(128), `${'a/'.repeat(127)}a/b`]) {
      expect(() => checkPeerName(bad), JSON.stringify(bad)).toThrow(InvalidInputError);
    }
  });

  it('parses listen addresses', () => {
    expect(parsePeerListen('0.0.0.0:7420')).toEqual({ host: '0.0.0.0', port: 7420 });
    expect(parsePeerListen('[::]:0')).toEqual({ host: '::', port: 0 });
    for (const bad of ['7420', ':7420', 'host', '::1:7420', 'h:99999', 'h:x']) expect(() => parsePeerListen(bad), bad).toThrow(InvalidInputError);
  });

  it('parses pinned fingerprints with or without colons, any case', () => {
    const hex = 'ab'.repeat(32);
    expect(parseFingerprint(`sha256:${hex}`)).toBe(hex);
    expect(parseFingerprint(`sha256:${hex.toUpperCase().match(/../g)!.join(':')}`)).toBe(hex);
    for (const bad of [hex, `sha1:${hex}`, `sha256:${hex.slice(2)}`, `sha256:${hex}00`, `sha256:${'zz'.repeat(32)}`]) expect(() => parseFingerprint(bad), bad).toThrow(InvalidInputError);
  });
});

describe('token files', () => {
  const tok = (name: string, contents: string, mode = 0o600) => {
    const f = path.join(root, name);
    fs.writeFileSync(f, contents);
    fs.chmodSync(f, mode);
    return f;
  };

  it('reads the token without its trailing newline, the same for both ways of writing it', () => {
    const a = readTokenFile(tok('t-a', '0123456789abcdef0123\n'));
    const b = readTokenFile(tok('t-b', '0123456789abcdef0123'));
    expect(a.equals(b)).toBe(true);
    expect(a.toString()).toBe('0123456789abcdef0123');
  });

  it('refuses a token file group or others may read, naming the mode and the fix', () => {
    for (const mode of [0o644, 0o640, 0o604, 0o660, 0o602]) {
      const f = tok(`t-mode-${mode.toString(8)}`, '0123456789abcdef0123\n', mode);
      expect(() => readTokenFile(f)).toThrow(InvalidInputError);
      expect(() => readTokenFile(f)).toThrow(new RegExp(`mode 0${mode.toString(8)}`));
      try {
        readTokenFile(f);
      } catch (err) {
        expect((err as InvalidInputError).hint).toBe(`run: chmod 600 ${f}`);
      }
    }
    expect(() => readTokenFile(tok('t-400', '0123456789abcdef0123', 0o400))).not.toThrow();
  });

  it('refuses a missing, empty, blank or short token, a directory and a symbolic link', () => {
    expect(() => readTokenFile(path.join(root, 'nope'))).toThrow(NotFoundError);
    expect(() => readTokenFile(tok('t-empty', ''))).toThrow(/empty/);
    expect(() => readTokenFile(tok('t-blank', '  \n\n'))).toThrow(/empty/);
    expect(() => readTokenFile(tok('t-short', 'short\n'))).toThrow(/too short \(5 bytes, at least 16\)/);
    const d = path.join(root, 't-dir');
    fs.mkdirSync(d, { mode: 0o700 });
    expect(() => readTokenFile(d)).toThrow(/not a regular file/);
    const link = path.join(root, 't-link');
    fs.symlinkSync(tok('t-target', '0123456789abcdef0123'), link);
    expect(() => readTokenFile(link)).toThrow(/symbolic link/);
  });
});

describe('rate limiter', () => {
  function fakeClock(): Clock & { slept: number } {
    let t = 0;
    const c = {
      slept: 0,
      now: () => t,
      sleep: async (ms: number) => {
        t += ms;
        c.slept += ms;
      },
    };
    return c;
  }

  it('keeps the average at the rate whatever the frame sizes, allowing one second of burst', async () => {
    for (const size of [1000, 65536, 1 << 20, 5 << 20]) {
      const clock = fakeClock();
      const rate = 1 << 20;
      const limiter = new RateLimiter(rate, clock);
      const total = 20 << 20;
      for (let sent = 0; sent < total; sent += size) await limiter.take(size);
      const seconds = clock.now() / 1000;
      // 20 MiB at 1 MiB/s with a full bucket to start: 19 s, within a frame's worth
      expect(seconds, `frames of ${size}`).toBeGreaterThanOrEqual(19 - size / rate - 0.01);
      expect(seconds, `frames of ${size}`).toBeLessThanOrEqual(20 + size / rate);
    }
  });

  it('never waits without a limit, and refills while idle', async () => {
    const clock = fakeClock();
    const none = new RateLimiter(0, clock);
    for (let i = 0; i < 100; i++) await none.take(64 << 20);
    expect(clock.slept).toBe(0);
    const limited = new RateLimiter(1000, clock);
    await limited.take(1000);
    expect(clock.slept).toBe(0);
    await clock.sleep(2000); // idle: the bucket refills, but only to one second's worth
    const before = clock.slept;
    await limited.take(1000);
    expect(clock.slept).toBe(before);
    await limited.take(500);
    expect(clock.slept - before).toBe(500);
  });
});

describe('name containment', () => {
  const dir = path.join(root, 'contain');
  const daemonRoot = path.join(dir, 'root');
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(path.join(daemonRoot, 'sub'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'x');
  fs.writeFileSync(path.join(daemonRoot, 'file'), 'x');
  fs.symlinkSync(outside, path.join(daemonRoot, 'escape'));
  fs.symlinkSync(path.join(outside, 'secret'), path.join(daemonRoot, 'secret-link'));
  fs.symlinkSync(path.join(daemonRoot, 'sub'), path.join(daemonRoot, 'inner-link'));
  fs.symlinkSync(path.join(outside, 'nothing', 'here'), path.join(daemonRoot, 'dangling'));
  const real = fs.realpathSync(daemonRoot);

  it('resolves names inside the directory, through links that stay inside', () => {
    expect(resolveContained(real, 'new')).toBe(path.join(real, 'new'));
    expect(resolveContained(real, 'sub/new/deeper')).toBe(path.join(real, 'sub/new/deeper'));
    expect(resolveContained(real, 'inner-link/x')).toBe(path.join(real, 'sub/x'));
    expect(resolveContained(real, 'file')).toBe(path.join(real, 'file'));
  });

  it('refuses links out of the directory, links to nowhere, and files used as directories', () => {
    for (const name of ['escape/x', 'escape', 'secret-link', 'dangling', 'dangling/x']) expect(() => resolveContained(real, name), name).toThrow(/outside the daemon's directory/);
    expect(() => resolveContained(real, 'file/x')).toThrow(/not a directory/);
    for (const name of ['../outside/secret', '/etc/passwd', 'a/../../x']) expect(() => resolveContained(real, name), name).toThrow(InvalidInputError);
  });

  it('creates missing directories inside only', () => {
    const target = resolveContained(real, 'made/by/daemon/stream');
    makeParents(real, target, 'made/by/daemon/stream');
    expect(fs.statSync(path.join(real, 'made/by/daemon')).isDirectory()).toBe(true);
    expect(() => makeParents(real, path.join(outside, 'x', 'y'), 'x')).toThrow(/outside/);
    expect(fs.existsSync(path.join(outside, 'x'))).toBe(false);
  });
});

describe('errors from the daemon', () => {
  it('keep a long message whole (a window with two paths and times ran past 400 characters), printable and bounded', async () => {
    const { errorFromWire } = await import('../../src/peer/wire-error.js');
    const long = `2026-12-03T10:15:02.250Z is outside the recovery window of ${'/backup/'.repeat(40)}vm1.cdp: 2026-12-03T09:00:00.000Z to 2026-12-03T10:00:00.000Z`;
    expect(long.length).toBeGreaterThan(400);
    const e = errorFromWire({ code: 'invalid-input', message: long, hint: 'list the recovery points' }, 'host:7420');
    expect(e.message).toBe(`peer host:7420: ${long}`);
    expect(e.exitCode).toBe(4);
    expect(errorFromWire({ code: 'invalid-input', message: 'x\u001b[31m'.repeat(5000) }, 'h:1').message.length).toBeLessThan(4100);
  });
});
