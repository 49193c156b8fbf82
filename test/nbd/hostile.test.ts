// Clients that misbehave, spoken by hand on raw sockets (no client library would send
// these): unknown options and flags, malformed option data, requests larger than the
// maximum payload, reads and writes past the end, unknown commands and command flags,
// a wrong request magic, a WRITE cut off in the middle of its payload, a client that
// does not read its replies. Each gets the answer the protocol prescribes, and the
// server keeps serving: after each, another client reads and writes correctly. The
// byte layouts are written out here rather than taken from src/format, so a mistake
// there cannot hide itself.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { cli, RawClient, startServer, type RunningServer } from './support.js';

const BS = 4096;
const BLOCKS = 2048; // an 8 MiB disk
const SIZE = BS * BLOCKS;
const MAX = 32 << 20;
const root = tempDir('imgstream-nbd-hostile-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const NBDMAGIC = Buffer.from('NBDMAGIC');
const IHAVEOPT = Buffer.from('IHAVEOPT');
const REPLY_MAGIC = Buffer.from('0003e889045565a9', 'hex');
const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, SET_META_CONTEXT: 10 };
const REP = { ACK: 1, SERVER: 2, INFO: 3, ERR_UNSUP: 2 ** 31 + 1, ERR_INVALID: 2 ** 31 + 3, ERR_UNKNOWN: 2 ** 31 + 6 };
const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 };
const E = { OK: 0, EPERM: 1, EINVAL: 22, ENOSPC: 28 };

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([IHAVEOPT, u32(opt), u32(data.length), data]);
}

function infoData(name: string, requests: number[] = []): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
  return b;
}

function request(type: number, cookie: number, offset: number | bigint, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(BigInt(cookie), 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

async function greet(c: RawClient, clientFlags = 3): Promise<number> {
  const g = await c.read(18);
  expect(g.subarray(0, 8).equals(NBDMAGIC)).toBe(true);
  expect(g.subarray(8, 16).equals(IHAVEOPT)).toBe(true);
  const flags = g.readUInt16BE(16);
  expect(flags & 1, 'FIXED_NEWSTYLE').toBe(1);
  c.write(u32(clientFlags));
  return flags;
}

async function optionReply(c: RawClient): Promise<{ option: number; type: number; data: Buffer }> {
  const h = await c.read(20);
  expect(h.subarray(0, 8).equals(REPLY_MAGIC), 'option reply magic').toBe(true);
  const len = h.readUInt32BE(16);
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await c.read(len) };
}

/** GO on the default export; returns the transmission flags. */
async function go(c: RawClient): Promise<{ size: number; flags: number }> {
  c.write(option(OPT.GO, infoData('', [3])));
  let size = -1;
  let flags = -1;
  for (;;) {
    const r = await optionReply(c);
    expect(r.option).toBe(OPT.GO);
    if (r.type === REP.ACK) break;
    expect(r.type).toBe(REP.INFO);
    if (r.data.readUInt16BE(0) === 0) {
      size = Number(r.data.readBigUInt64BE(2));
      flags = r.data.readUInt16BE(10);
    }
  }
  return { size, flags };
}

async function reply(c: RawClient, cookie: number, dataLength = 0): Promise<{ error: number; data: Buffer }> {
  const h = await c.read(16);
  expect(h.readUInt32BE(0), 'simple reply magic').toBe(0x67446698);
  expect(Number(h.readBigUInt64BE(8)), 'cookie').toBe(cookie);
  const error = h.readUInt32BE(4);
  return { error, data: error === 0 && dataLength > 0 ? await c.read(dataLength) : Buffer.alloc(0) };
}

async function connected(server: RunningServer): Promise<RawClient> {
  const c = await RawClient.connect(server.info);
  await greet(c);
  await go(c);
  return c;
}

describe('hostile NBD clients', () => {
  const image = randomImage(BLOCKS, BS, 11, 0.2);
  const model = Buffer.from(image);
  const vol = at('h.vol');
  let server: RunningServer;

  beforeAll(async () => {
    fs.writeFileSync(at('image.raw'), image);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE), '--volume-size', '64M'], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'snap'], { env });
    server = await startServer(vol, ['--socket', at('h.sock'), '--export-name', 'disk'], locks);
  });

  /** Another client, well behaved: reads what the model says, writes, reads it back. */
  async function stillServes(): Promise<void> {
    const c = await connected(server);
    const off = 12345;
    c.write(request(CMD.READ, 1, off, 70000));
    expect((await reply(c, 1, 70000)).data.equals(model.subarray(off, off + 70000))).toBe(true);
    const data = Buffer.alloc(5000, 0x5e);
    c.write(Buffer.concat([request(CMD.WRITE, 2, 777777, data.length), data]));
    expect((await reply(c, 2)).error).toBe(E.OK);
    data.copy(model, 777777);
    c.write(request(CMD.READ, 3, 777000, 6000));
    expect((await reply(c, 3, 6000)).data.equals(model.subarray(777000, 783000))).toBe(true);
    c.write(request(CMD.DISC, 4, 0, 0));
    await c.closed;
  }

  it('unknown and unsupported options get NBD_REP_ERR_UNSUP, and haggling goes on', async () => {
    const c = await RawClient.connect(server.info);
    await greet(c);
    for (const [opt, data] of [
      [0x1234, Buffer.from('whatever this is')],
      [OPT.STARTTLS, Buffer.alloc(0)],
      [11, Buffer.alloc(0)], // EXTENDED_HEADERS
      [0xffffffff, Buffer.alloc(60000, 1)],
    ] as Array<[number, Buffer]>) {
      c.write(option(opt, data));
      const r = await optionReply(c);
      expect(r.option).toBe(opt);
      expect(r.type, `reply type ${r.type} to option ${opt}`).toBe(REP.ERR_UNSUP);
    }
    // SET_META_CONTEXT before STRUCTURED_REPLY: invalid
    c.write(option(OPT.SET_META_CONTEXT, Buffer.alloc(8)));
    expect((await optionReply(c)).type).toBe(REP.ERR_INVALID);
    // LIST: one export, by its name
    c.write(option(OPT.LIST));
    const s = await optionReply(c);
    expect(s.type).toBe(REP.SERVER);
    expect(s.data.subarray(4, 4 + s.data.readUInt32BE(0)).toString()).toBe('disk');
    expect((await optionReply(c)).type).toBe(REP.ACK);
    // LIST with data, INFO with lengths that do not add up, an unknown name
    c.write(option(OPT.LIST, Buffer.from('x')));
    expect((await optionReply(c)).type).toBe(REP.ERR_INVALID);
    c.write(option(OPT.INFO, Buffer.from([0, 0, 0, 50, 1, 2])));
    expect((await optionReply(c)).type).toBe(REP.ERR_INVALID);
    c.write(option(OPT.GO, infoData('nosuch')));
    expect((await optionReply(c)).type).toBe(REP.ERR_UNKNOWN);
    // INFO by name, with name, description and block sizes asked for
    c.write(option(OPT.INFO, infoData('disk', [1, 2, 3])));
    const infos = new Map<number, Buffer>();
    for (;;) {
      const r = await optionReply(c);
      if (r.type === REP.ACK) break;
      expect(r.type).toBe(REP.INFO);
      infos.set(r.data.readUInt16BE(0), r.data);
    }
    expect(Number(infos.get(0)!.readBigUInt64BE(2))).toBe(SIZE);
    const flags = infos.get(0)!.readUInt16BE(10);
    expect(flags & 1, 'HAS_FLAGS').toBe(1);
    expect(flags & 2, 'not READ_ONLY').toBe(0);
    expect(flags & (1 << 2), 'SEND_FLUSH').toBeTruthy();
    expect(flags & (1 << 3), 'SEND_FUA').toBeTruthy();
    expect(flags & (1 << 7), 'no DF: structured replies are not negotiated').toBe(0);
    expect(infos.get(1)!.subarray(2).toString()).toBe('disk');
    expect(infos.get(2)!.subarray(2).toString()).toMatch(/h\.vol/);
    const bsInfo = infos.get(3)!;
    expect([bsInfo.readUInt32BE(2), bsInfo.readUInt32BE(6), bsInfo.readUInt32BE(10)]).toEqual([1, BS, MAX]);
    // and then the export works
    expect((await go(c)).size).toBe(SIZE);
    c.write(request(CMD.READ, 9, 0, 4096));
    expect((await reply(c, 9, 4096)).data.equals(model.subarray(0, 4096))).toBe(true);
    c.close();
    await stillServes();
  });

  it('ABORT is acknowledged and closes; unknown client flags close; EXPORT_NAME works with and without zeroes', async () => {
    const a = await RawClient.connect(server.info);
    await greet(a);
    a.write(option(OPT.ABORT));
    expect((await optionReply(a)).type).toBe(REP.ACK);
    await a.closed;

    const f = await RawClient.connect(server.info);
    await greet(f, 0x80);
    await f.closed;

    for (const noZeroes of [false, true]) {
      const e = await RawClient.connect(server.info);
      await greet(e, noZeroes ? 3 : 1);
      e.write(option(OPT.EXPORT_NAME, Buffer.from('disk')));
      const r = await e.read(noZeroes ? 10 : 134);
      expect(Number(r.readBigUInt64BE(0))).toBe(SIZE);
      if (!noZeroes) expect(r.subarray(10).equals(Buffer.alloc(124))).toBe(true);
      e.write(request(CMD.READ, 5, 4096, 100));
      expect((await reply(e, 5, 100)).data.equals(model.subarray(4096, 4196))).toBe(true);
      e.close();
    }
    const bad = await RawClient.connect(server.info);
    await greet(bad);
    bad.write(option(OPT.EXPORT_NAME, Buffer.from('nosuch')));
    await bad.closed; // the protocol allows no error reply here
    await stillServes();
  });

  it('oversize requests, requests past the end, unknown commands and flags get errors and the session goes on', async () => {
    const c = await connected(server);
    const cases: Array<[string, Buffer, number]> = [
      ['READ above the maximum payload', request(CMD.READ, 10, 0, MAX + 1), E.EINVAL],
      ['READ past the end', request(CMD.READ, 11, SIZE - 100, 101), E.EINVAL],
      ['READ at an offset of 2^63', request(CMD.READ, 12, 1n << 63n, 1), E.EINVAL],
      ['TRIM past the end', request(CMD.TRIM, 13, SIZE, 1), E.EINVAL],
      ['WRITE_ZEROES past the end', request(CMD.WRITE_ZEROES, 14, SIZE - 1, 2), E.ENOSPC],
      ['READ with the DF flag (no structured replies)', request(CMD.READ, 15, 0, 512, 1 << 2), E.EINVAL],
      ['WRITE_ZEROES with an unknown flag', request(CMD.WRITE_ZEROES, 16, 0, 512, 1 << 9), E.EINVAL],
      ['FLUSH with an offset', request(CMD.FLUSH, 17, 4096, 0), E.EINVAL],
      ['CACHE (not offered)', request(CMD.CACHE, 18, 0, 4096), E.EINVAL],
      ['BLOCK_STATUS (not offered)', request(CMD.BLOCK_STATUS, 19, 0, 4096), E.EINVAL],
      ['an unknown command', request(99, 20, 0, 0), E.EINVAL],
    ];
    for (const [, req] of cases) c.write(req);
    for (const [what, req, error] of cases) expect((await reply(c, Number(req.readBigUInt64BE(8)))).error, what).toBe(error);
    // WRITEs that are refused still have their payload read and dropped
    const big = Buffer.alloc(MAX + 4096, 0x77);
    c.write(Buffer.concat([request(CMD.WRITE, 21, 0, big.length), big]));
    c.write(Buffer.concat([request(CMD.WRITE, 22, SIZE - 10, 20), Buffer.alloc(20, 0x78)]));
    c.write(request(CMD.READ, 23, 0, 8192));
    expect((await reply(c, 21)).error, 'WRITE above the maximum payload').toBe(E.EINVAL);
    expect((await reply(c, 22)).error, 'WRITE past the end').toBe(E.ENOSPC);
    expect((await reply(c, 23, 8192)).data.equals(model.subarray(0, 8192)), 'nothing was written').toBe(true);
    // TRIM and WRITE_ZEROES longer than the maximum payload are fine: they carry no data
    c.write(request(CMD.WRITE_ZEROES, 24, 0, SIZE));
    expect((await reply(c, 24)).error).toBe(E.OK);
    c.write(request(CMD.READ, 25, SIZE - MAX / 4, MAX / 4));
    expect((await reply(c, 25, MAX / 4)).data.equals(Buffer.alloc(MAX / 4))).toBe(true);
    // one WRITE of the whole disk brings it back (with FUA: answered after a CP)
    c.write(Buffer.concat([request(CMD.WRITE, 26, 0, SIZE, 1), image]));
    expect((await reply(c, 26)).error).toBe(E.OK);
    image.copy(model);
    c.write(request(CMD.DISC, 27, 0, 0));
    await c.closed;
    await stillServes();
  });

  it('a WRITE declaring far more than the maximum (4 GiB) ends that session at once, not after reading it', async () => {
    const c = await connected(server);
    c.write(request(CMD.WRITE, 35, 0, 0xffffffff));
    c.write(Buffer.alloc(1 << 20, 0x55)); // the start of what it claims to send
    await c.closed;
    await stillServes();
    const d = await connected(server);
    d.write(request(CMD.READ, 36, 0, 8192));
    expect((await reply(d, 36, 8192)).data.equals(model.subarray(0, 8192)), 'nothing was written').toBe(true);
    d.close();
  });

  it('a wrong request magic ends that session only', async () => {
    const c = await connected(server);
    const r = request(CMD.READ, 30, 0, 4096);
    r.writeUInt32BE(0xdeadbeef, 0);
    c.write(r);
    await c.closed;
    await stillServes();
  });

  it('a client that disconnects in the middle of a WRITE costs only its connection', async () => {
    const c = await connected(server);
    const off = 2 * 1024 * 1024 + 100;
    const payload = Buffer.alloc(1 << 20, 0xe1);
    // a whole small write first, answered, then half of a large one
    c.write(Buffer.concat([request(CMD.WRITE, 40, 5000, 10), Buffer.alloc(10, 0xe0)]));
    expect((await reply(c, 40)).error).toBe(E.OK);
    model.fill(0xe0, 5000, 5010);
    c.write(Buffer.concat([request(CMD.WRITE, 41, off, payload.length), payload.subarray(0, 300000)]));
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    await c.closed;
    // nothing of the cut-off write landed
    const d = await connected(server);
    d.write(request(CMD.READ, 42, off - 4096, payload.length + 8192));
    expect((await reply(d, 42, payload.length + 8192)).data.equals(model.subarray(off - 4096, off + payload.length + 4096))).toBe(true);
    d.close();
    // and a cut-off request header
    const h = await connected(server);
    h.write(request(CMD.READ, 43, 0, 4096).subarray(0, 13));
    h.close();
    await stillServes();
  });

  it('a client that sends many reads without reading the replies gets them all, and server memory stays bounded', async () => {
    const c = await connected(server);
    const n = 200;
    const len = 1 << 20;
    const offsetOf = (cookie: number) => ((cookie - 100) * 4099) % (SIZE - len);
    const reqs: Buffer[] = [];
    for (let i = 0; i < n; i++) reqs.push(request(CMD.READ, 100 + i, offsetOf(100 + i), len));
    c.write(Buffer.concat(reqs)); // 200 MiB of replies asked for at once
    await new Promise((r) => setTimeout(r, 500));
    // the server stopped reading: its memory holds a few replies, not 200 MiB of them
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
    expect(rss(), 'server memory while the client reads nothing').toBeLessThan(180 << 20);
    // replies may come in any order (reads overlap); the cookie says which is which
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) {
      const h = await c.read(16);
      expect(h.readUInt32BE(0)).toBe(0x67446698);
      expect(h.readUInt32BE(4)).toBe(E.OK);
      const cookie = Number(h.readBigUInt64BE(8));
      expect(cookie >= 100 && cookie < 100 + n && !seen.has(cookie), `cookie ${cookie}`).toBe(true);
      seen.add(cookie);
      const off = offsetOf(cookie);
      expect((await c.read(len)).equals(model.subarray(off, off + len)), `read ${cookie}`).toBe(true);
    }
    c.write(request(CMD.DISC, 1, 0, 0));
    await c.closed;
    await stillServes();
  });

  it('a write waits for the reads queued before it, and reads after it see it', async () => {
    const len = 4 << 20;
    const off = 1 << 20;
    const a = await connected(server);
    const b = await connected(server);
    for (let round = 0; round < 8; round++) {
      // written just now, not flushed: blocks this CP already owns are rewritten in place,
      // so only the queue keeps the reads before the second write from seeing it
      const before = Buffer.alloc(len, round);
      for (let i = 0; i < len; i += 4096) before.writeUInt32BE(i + 1, i);
      a.write(Buffer.concat([request(CMD.WRITE, 199, off, len), before]));
      expect((await reply(a, 199)).error).toBe(E.OK);
      // On one connection the order is the byte stream's: four reads, then a write of the
      // same range in the same packet. The write must wait for all four.
      const data = Buffer.alloc(len, 0xc0 + round);
      a.write(Buffer.concat([...[0, 1, 2, 3].map((i) => request(CMD.READ, 200 + i, off, len)), request(CMD.WRITE, 205, off, len), data]));
      const seen = new Map<number, Buffer>();
      for (let i = 0; i < 5; i++) {
        const h = await a.read(16);
        expect(h.readUInt32BE(4)).toBe(E.OK);
        const cookie = Number(h.readBigUInt64BE(8));
        if (cookie !== 205) seen.set(cookie, await a.read(len));
      }
      for (const [cookie, got] of seen) expect(got.equals(before), `round ${round}: read ${cookie} was queued before the write`).toBe(true);
      // Across connections the server's arrival order decides (a loaded machine may take the
      // write's last byte first): the second write waits for its last byte, which is sent
      // right after four reads from the other connection. Each read must see the range
      // whole, before or after the write, never torn, and once one read sees the write,
      // every read queued after it does too.
      const next = Buffer.alloc(len, 0x80 + round);
      a.write(Buffer.concat([request(CMD.WRITE, 201, off, len), next.subarray(0, len - 1)]));
      await new Promise((r) => setTimeout(r, 50));
      b.write(Buffer.concat([0, 1, 2, 3].map((i) => request(CMD.READ, 210 + i, off, len))));
      a.write(next.subarray(len - 1));
      const order = new Map<number, 'before' | 'after'>();
      for (let i = 0; i < 4; i++) {
        const h = await b.read(16);
        expect(h.readUInt32BE(4)).toBe(E.OK);
        const cookie = Number(h.readBigUInt64BE(8));
        const got = await b.read(len);
        const which = got.equals(data) ? 'before' : got.equals(next) ? 'after' : null;
        expect(which, `round ${round}: read ${cookie} saw a torn range`).not.toBeNull();
        order.set(cookie, which!);
      }
      const sequence = [210, 211, 212, 213].map((c) => order.get(c));
      const firstAfter = sequence.indexOf('after');
      if (firstAfter >= 0) expect(sequence.slice(firstAfter).every((w) => w === 'after'), `round ${round}: reads saw ${sequence.join(', ')}`).toBe(true);
      expect((await reply(a, 201)).error).toBe(E.OK);
      a.write(request(CMD.READ, 202, off, len));
      expect((await reply(a, 202, len)).data.equals(next), 'a read queued after the write sees it').toBe(true);
      next.copy(model, off);
    }
    a.close();
    b.close();
    await stillServes();
  });

  it('a second server on the same volume is refused while the first runs', async () => {
    const second = await startServer(vol, ['--socket', at('second.sock'), '--snapshot', 'snap'], locks).catch((e: Error) => e);
    expect(second).toBeInstanceOf(Error);
    expect((second as Error).message).toMatch(/volume is being served by imgstream process \d+/);
    const writable = await startServer(vol, ['--socket', at('second.sock')], locks).catch((e: Error) => e);
    expect(writable).toBeInstanceOf(Error);
    expect((writable as Error).message).toMatch(/volume is being served by imgstream process \d+/);
    await stillServes();
  });

  it('after all that, the volume holds exactly what was acknowledged and checks clean', async () => {
    const r = await server.stop();
    // the dropped 4 GiB WRITE is logged, and nothing else
    expect(r.stderr, 'no internal errors were reported').toBe('imgstream: a client sent a WRITE of 4294967295 bytes, over twice the 33554432-byte maximum: connection dropped\n');
    await cli(['volume', 'export', vol, '--to', at('final.raw')], locks);
    expect(fs.readFileSync(at('final.raw')).equals(model)).toBe(true);
    expect((await cli(['volume', 'check', vol], locks)).stdout).toMatch(/clean/);
  });

  it('a snapshot export answers WRITE, TRIM and WRITE_ZEROES with EPERM', async () => {
    const snap = await startServer(vol, ['--socket', at('snap.sock'), '--snapshot', 'snap'], locks);
    try {
      const c = await RawClient.connect(snap.info);
      await greet(c);
      const { flags } = await go(c);
      expect(flags & 2, 'READ_ONLY').toBe(2);
      c.write(Buffer.concat([request(CMD.WRITE, 1, 0, 4096), Buffer.alloc(4096, 1)]));
      c.write(request(CMD.TRIM, 2, 0, 4096));
      c.write(request(CMD.WRITE_ZEROES, 3, 0, 4096));
      c.write(request(CMD.FLUSH, 4, 0, 0));
      c.write(request(CMD.READ, 5, 0, 4096));
      expect((await reply(c, 1)).error).toBe(E.EPERM);
      expect((await reply(c, 2)).error).toBe(E.EPERM);
      expect((await reply(c, 3)).error).toBe(E.EPERM);
      expect((await reply(c, 4)).error).toBe(E.OK);
      expect((await reply(c, 5, 4096)).data.equals(image.subarray(0, 4096))).toBe(true);
      c.close();
    } finally {
      await snap.stop();
    }
    expect((await cli(['volume', 'check', vol], locks)).stdout).toMatch(/clean/);
  });
});

describe('a full volume', () => {
  it('answers writes that do not fit with ENOSPC, keeps what fitted, and keeps serving', async () => {
    const vol = at('full.vol');
    await setupOk(['volume', 'create', vol, '--size', '16M', '--volume-size', '6M'], { env });
    const server = await startServer(vol, ['--socket', at('full.sock')], locks);
    try {
      const c = await connected(server);
      const chunk = 1 << 20;
      const errors: number[] = [];
      const written: number[] = [];
      for (let i = 0; i < 16; i++) {
        c.write(Buffer.concat([request(CMD.WRITE, i, i * chunk, chunk), Buffer.alloc(chunk, 0x10 + i)]));
        const e = (await reply(c, i)).error;
        errors.push(e);
        if (e === E.OK) written.push(i);
      }
      expect(errors.filter((e) => e !== E.OK && e !== E.ENOSPC), 'only ENOSPC').toEqual([]);
      expect(errors).toContain(E.ENOSPC);
      expect(errors.filter((e) => e === E.ENOSPC).length, 'several writes refused').toBeGreaterThan(1);
      expect(written.length).toBeGreaterThan(0);
      // the server's log says why, once, not once per refused write
      const said = () => server.stderr().split('\n').filter((l) => /WRITE refused: .*full/.test(l));
      for (let i = 0; i < 50 && said().length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(said()).toHaveLength(1);
      expect(said()[0]).toMatch(/^imgstream: WRITE refused: .*\(clients get ENOSPC until space is freed\)$/);
      c.write(request(CMD.FLUSH, 100, 0, 0));
      expect((await reply(c, 100)).error).toBe(E.OK);
      for (const i of written) {
        c.write(request(CMD.READ, 200 + i, i * chunk, chunk));
        expect((await reply(c, 200 + i, chunk)).data.equals(Buffer.alloc(chunk, 0x10 + i)), `chunk ${i}`).toBe(true);
      }
      // freeing space makes room again
      c.write(request(CMD.TRIM, 300, 0, 16 << 20));
      expect((await reply(c, 300)).error).toBe(E.OK);
      c.write(request(CMD.FLUSH, 301, 0, 0));
      expect((await reply(c, 301)).error).toBe(E.OK);
      c.write(Buffer.concat([request(CMD.WRITE, 302, 15 * chunk, chunk), Buffer.alloc(chunk, 0x77)]));
      expect((await reply(c, 302)).error).toBe(E.OK);
      // full again after a write succeeded: said again
      for (let i = 0; i < 16; i++) {
        c.write(Buffer.concat([request(CMD.WRITE, 400 + i, i * chunk, chunk), Buffer.alloc(chunk, 0x30 + i)]));
        await reply(c, 400 + i);
      }
      for (let i = 0; i < 50 && said().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(said()).toHaveLength(2);
      c.close();
    } finally {
      await server.stop();
    }
    expect((await cli(['volume', 'check', vol], locks)).stdout).toMatch(/clean/);
  });
});
