// Structured replies and metadata contexts negotiated by hand on raw sockets, in every
// order a client may try (and the orders it must not), old clients that never ask for
// structured replies, and the bounds on negotiation: its deadline and option lengths.
// Byte layouts are written out here, not taken from src/format.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { missingBinaries, ok, RawClient, startServer, type RunningServer } from './support.js';

// nbdsh runs the first python3 on PATH: the system's, which has libnbd's module, goes first
const NBDSH_PATH = `/usr/bin:${process.env.PATH ?? ''}`;
const noNbdsh = missingBinaries(['nbdsh']).length > 0 || spawnSync('nbdsh', ['-c', 'pass'], { env: { ...process.env, PATH: NBDSH_PATH } }).status !== 0;

const SIZE = 1 << 22; // 4 MiB: data in the first 64 KiB and at 1 MiB, holes elsewhere
const root = tempDir('imgstream-nbd-structured-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const IHAVEOPT = Buffer.from('IHAVEOPT');
const OPT = { EXPORT_NAME: 1, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 };
const REP = { ACK: 1, INFO: 3, META_CONTEXT: 4, ERR_INVALID: 2 ** 31 + 3, ERR_UNKNOWN: 2 ** 31 + 6 };
const CMD = { READ: 0, DISC: 2, BLOCK_STATUS: 7 };
const FLAG = { DF: 4, REQ_ONE: 8 };
const CHUNK = { NONE: 0, DATA: 1, HOLE: 2, BLOCK_STATUS: 5, ERROR: 2 ** 15 + 1 };
const EINVAL = 22;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
const option = (opt: number, data: Buffer = Buffer.alloc(0)) => Buffer.concat([IHAVEOPT, u32(opt), u32(data.length), data]);
const str = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
const metaData = (name: string, queries: string[]) => Buffer.concat([str(name), u32(queries.length), ...queries.map(str)]);
const goData = (name: string) => Buffer.concat([str(name), Buffer.from([0, 0])]);

function request(type: number, cookie: number, offset: number, length: number, flags = 0): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(BigInt(cookie), 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

async function optionReply(c: RawClient): Promise<{ option: number; type: number; data: Buffer }> {
  const h = await c.read(20);
  expect(h.subarray(0, 8).toString('hex')).toBe('0003e889045565a9');
  return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await c.read(h.readUInt32BE(16)) };
}

/** Replies up to ACK (or an error); META_CONTEXT replies as [id, name]. */
async function replies(c: RawClient): Promise<{ type: number; contexts: Array<[number, string]>; infoFlags: number; message: string }> {
  const contexts: Array<[number, string]> = [];
  let infoFlags = -1;
  for (;;) {
    const r = await optionReply(c);
    if (r.type === REP.META_CONTEXT) contexts.push([r.data.readUInt32BE(0), r.data.subarray(4).toString()]);
    else if (r.type === REP.INFO) {
      if (r.data.readUInt16BE(0) === 0) infoFlags = r.data.readUInt16BE(10);
    } else return { type: r.type, contexts, infoFlags, message: r.data.toString() };
  }
}

async function client(server: RunningServer): Promise<RawClient> {
  const c = await RawClient.connect(server.info);
  await c.read(18);
  c.write(u32(3));
  return c;
}

interface Chunk {
  flags: number;
  type: number;
  cookie: number;
  payload: Buffer;
}

async function chunk(c: RawClient): Promise<Chunk> {
  const h = await c.read(20);
  expect(h.readUInt32BE(0), 'structured reply magic').toBe(0x668e33ef);
  return { flags: h.readUInt16BE(4), type: h.readUInt16BE(6), cookie: Number(h.readBigUInt64BE(8)), payload: await c.read(h.readUInt32BE(16)) };
}

/** Chunks of one reply, up to the one flagged DONE. */
async function structuredReply(c: RawClient): Promise<Chunk[]> {
  const out: Chunk[] = [];
  for (;;) {
    const ch = await chunk(c);
    out.push(ch);
    if (ch.flags & 1) return out;
  }
}

/** READ data rebuilt from OFFSET_DATA and OFFSET_HOLE chunks. */
function assemble(chunks: Chunk[], offset: number, length: number): { data: Buffer; holes: number } {
  const data = Buffer.alloc(length, 0xee);
  let covered = 0;
  let holes = 0;
  for (const ch of chunks) {
    if (ch.type === CHUNK.NONE) continue;
    const at = Number(ch.payload.readBigUInt64BE(0)) - offset;
    if (ch.type === CHUNK.DATA) {
      ch.payload.copy(data, at, 8);
      covered += ch.payload.length - 8;
    } else {
      expect(ch.type).toBe(CHUNK.HOLE);
      const n = ch.payload.readUInt32BE(8);
      data.fill(0, at, at + n);
      covered += n;
      holes++;
    }
  }
  expect(covered, 'chunks cover the read exactly').toBe(length);
  return { data, holes };
}

describe('structured replies and metadata contexts, negotiated by hand', () => {
  const vol = at('s.vol');
  const model = Buffer.alloc(SIZE);
  let server: RunningServer;

  beforeAll(async () => {
    for (let i = 0; i < 65536; i++) model[i] = (i * 7 + 1) & 0xff || 1;
    model.fill(0x5a, 1 << 20, (1 << 20) + 8192);
    fs.writeFileSync(at('image.raw'), model);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'snap'], { env });
    server = await startServer(vol, ['--socket', at('s.sock'), '--export-name', 'disk'], locks);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('STRUCTURED_REPLY then SET_META_CONTEXT then GO: DF offered, holes cost no data, DF reads are one chunk, block status from the map', async () => {
    const c = await client(server);
    c.write(option(OPT.STRUCTURED_REPLY));
    expect((await optionReply(c)).type).toBe(REP.ACK);
    c.write(option(OPT.STRUCTURED_REPLY)); // twice is fine
    expect((await optionReply(c)).type).toBe(REP.ACK);
    c.write(option(OPT.SET_META_CONTEXT, metaData('disk', ['base:allocation', 'other:thing', 'imgstream:image:active - snap'])));
    const set = await replies(c);
    expect(set.type).toBe(REP.ACK);
    expect(set.contexts.map(([, n]) => n)).toEqual(['base:allocation', 'imgstream:image:active - snap']);
    const ids = new Map(set.contexts.map(([id, n]) => [id, n]));
    c.write(option(OPT.GO, goData('disk')));
    const go = await replies(c);
    expect(go.type).toBe(REP.ACK);
    expect(go.infoFlags & (1 << 7), 'SEND_DF').toBeTruthy();

    // a read across data and a hole: an OFFSET_DATA and an OFFSET_HOLE chunk, nothing sent for the hole
    c.write(request(CMD.READ, 1, 61440, 65536));
    const chunks = await structuredReply(c);
    expect(chunks.every((ch) => ch.cookie === 1)).toBe(true);
    const r1 = assemble(chunks, 61440, 65536);
    expect(r1.holes).toBe(1);
    expect(r1.data.equals(model.subarray(61440, 61440 + 65536))).toBe(true);
    expect(chunks.reduce((a, ch) => a + ch.payload.length, 0)).toBeLessThan(8192);
    // the same read with DF: one OFFSET_DATA chunk, the hole as zeros
    c.write(request(CMD.READ, 2, 61440, 65536, FLAG.DF));
    const df = await structuredReply(c);
    expect(df.map((ch) => ch.type)).toEqual([CHUNK.DATA]);
    expect(assemble(df, 61440, 65536).data.equals(model.subarray(61440, 61440 + 65536))).toBe(true);

    // block status: one chunk per context, extents from the map
    c.write(request(CMD.BLOCK_STATUS, 3, 0, SIZE));
    const bs = await structuredReply(c);
    expect(bs.map((ch) => ch.type)).toEqual([CHUNK.BLOCK_STATUS, CHUNK.BLOCK_STATUS]);
    const extents = (ch: Chunk) => {
      const out: Array<[number, number]> = [];
      for (let i = 4; i < ch.payload.length; i += 8) out.push([ch.payload.readUInt32BE(i), ch.payload.readUInt32BE(i + 4)]);
      return out;
    };
    const byName = new Map(bs.map((ch) => [ids.get(ch.payload.readUInt32BE(0)), extents(ch)]));
    expect(byName.get('base:allocation')).toEqual([[65536, 0], [(1 << 20) - 65536, 3], [8192, 0], [SIZE - (1 << 20) - 8192, 3]]);
    expect(byName.get('imgstream:image:active - snap')).toEqual([[65536, 0], [(1 << 20) - 65536, 2], [8192, 0], [SIZE - (1 << 20) - 8192, 2]]);
    // REQ_ONE: one extent each, never longer than asked; unaligned ranges are described exactly
    c.write(request(CMD.BLOCK_STATUS, 4, 100, 1000, FLAG.REQ_ONE));
    for (const ch of await structuredReply(c)) expect(extents(ch)).toEqual([[1000, 0]]);
    // past the end: an error chunk
    c.write(request(CMD.BLOCK_STATUS, 5, SIZE - 4096, 8192));
    const err = await structuredReply(c);
    expect(err.map((ch) => ch.type)).toEqual([CHUNK.ERROR]);
    expect(err[0].payload.readUInt32BE(0)).toBe(EINVAL);
    c.write(request(CMD.DISC, 6, 0, 0));
    await c.closed;
  });

  it('SET_META_CONTEXT before STRUCTURED_REPLY is refused; contexts set for another export do not count; a bad expression is refused with its reason', async () => {
    const c = await client(server);
    c.write(option(OPT.SET_META_CONTEXT, metaData('disk', ['base:allocation'])));
    const early = await optionReply(c);
    expect(early.type).toBe(REP.ERR_INVALID);
    expect(early.data.toString()).toMatch(/structured replies/);
    c.write(option(OPT.LIST_META_CONTEXT, metaData('disk', []))); // listing is allowed
    const list = await replies(c);
    expect(list.type).toBe(REP.ACK);
    expect(list.contexts.map(([, n]) => n)).toEqual(expect.arrayContaining(['base:allocation', 'imgstream:image:active - snap']));
    c.write(option(OPT.STRUCTURED_REPLY));
    expect((await optionReply(c)).type).toBe(REP.ACK);
    c.write(option(OPT.SET_META_CONTEXT, metaData('disk', ['imgstream:image:active - nosuch'])));
    const bad = await optionReply(c);
    expect(bad.type).toBe(REP.ERR_INVALID);
    expect(bad.data.toString()).toMatch(/unknown plane "nosuch"/);
    // with the hint `image` gives: a name glued to "-" is read as one name
    c.write(option(OPT.SET_META_CONTEXT, metaData('disk', ['imgstream:image:active-snap'])));
    const glued = await optionReply(c);
    expect(glued.type).toBe(REP.ERR_INVALID);
    expect(glued.data.toString()).toMatch(/unknown plane "active-snap".*did you mean "active - snap"\? .*put spaces around "-"/);
    c.write(option(OPT.SET_META_CONTEXT, metaData('nosuch', ['base:allocation'])));
    expect((await optionReply(c)).type).toBe(REP.ERR_UNKNOWN);
    c.write(option(OPT.SET_META_CONTEXT, Buffer.from([0, 0, 0, 0, 0, 0, 0, 9])));
    expect((await optionReply(c)).type).toBe(REP.ERR_INVALID);
    // the last SET failed: nothing is selected, so block status is refused
    c.write(option(OPT.GO, goData('')));
    expect((await replies(c)).type).toBe(REP.ACK);
    c.write(request(CMD.BLOCK_STATUS, 1, 0, 4096));
    const refused = await structuredReply(c);
    expect(refused[0].type).toBe(CHUNK.ERROR);
    expect(refused[0].payload.readUInt32BE(0)).toBe(EINVAL);
    c.close();
  });

  it('old clients: without STRUCTURED_REPLY every reply is simple, DF is not offered and refused, and EXPORT_NAME works after STRUCTURED_REPLY too', async () => {
    const c = await client(server);
    c.write(option(OPT.GO, goData('disk')));
    const go = await replies(c);
    expect(go.infoFlags & (1 << 7), 'no DF').toBe(0);
    c.write(request(CMD.READ, 7, 61440, 8192));
    const h = await c.read(16);
    expect(h.readUInt32BE(0)).toBe(0x67446698);
    expect(h.readUInt32BE(4)).toBe(0);
    expect((await c.read(8192)).equals(model.subarray(61440, 61440 + 8192))).toBe(true);
    c.write(request(CMD.READ, 8, 0, 4096, FLAG.DF));
    const df = await c.read(16);
    expect(df.readUInt32BE(4)).toBe(EINVAL);
    c.write(request(CMD.BLOCK_STATUS, 9, 0, 4096));
    expect((await c.read(16)).readUInt32BE(4)).toBe(EINVAL);
    c.close();

    // STRUCTURED_REPLY with data is invalid and leaves simple replies; EXPORT_NAME then uses them
    const d = await client(server);
    d.write(option(OPT.STRUCTURED_REPLY, Buffer.from('x')));
    expect((await optionReply(d)).type).toBe(REP.ERR_INVALID);
    d.write(option(OPT.EXPORT_NAME, Buffer.from('disk')));
    const reply = await d.read(10); // NO_ZEROES was set
    expect(Number(reply.readBigUInt64BE(0))).toBe(SIZE);
    expect(reply.readUInt16BE(8) & (1 << 7)).toBe(0);
    d.write(request(CMD.READ, 1, 0, 4096));
    expect((await d.read(16)).readUInt32BE(0)).toBe(0x67446698);
    d.close();

    // STRUCTURED_REPLY then EXPORT_NAME: structured replies, DF offered
    const e = await client(server);
    e.write(option(OPT.STRUCTURED_REPLY));
    expect((await optionReply(e)).type).toBe(REP.ACK);
    e.write(option(OPT.EXPORT_NAME, Buffer.from('')));
    const er = await e.read(10);
    expect(er.readUInt16BE(8) & (1 << 7)).toBeTruthy();
    e.write(request(CMD.READ, 2, 2 << 20, 4096));
    const hole = await structuredReply(e);
    expect(hole.map((ch) => ch.type)).toEqual([CHUNK.HOLE]);
    e.close();
  });

  it.skipIf(noNbdsh)('libnbd (nbdsh) with structured replies refused and accepted: simple packets, DF, block status, listed contexts', async () => {
    const script = `
import nbd
uri = ${JSON.stringify(server.info.uri)}
# an old client: no structured replies
h = nbd.NBD()
h.set_request_structured_replies(False)
h.add_meta_context("base:allocation")
h.connect_uri(uri)
assert not h.get_structured_replies_negotiated()
assert not h.can_df()
assert not h.can_meta_context("base:allocation")
buf = h.pread(8192, 61440)
print("simple", buf.hex()[:16], len(buf))
try:
    h.block_status(4096, 0, lambda *a: 0)
    print("block status: answered")
except nbd.Error as e:
    print("block status: refused")
h.shutdown()
# a modern one: structured replies, DF, two contexts
h = nbd.NBD()
h.add_meta_context("base:allocation")
h.add_meta_context("imgstream:image:active - snap")
h.connect_uri(uri)
assert h.get_structured_replies_negotiated()
assert h.can_df()
assert h.can_meta_context("base:allocation") and h.can_meta_context("imgstream:image:active - snap")
kinds = {nbd.READ_DATA: "data", nbd.READ_HOLE: "hole"}
for flags in (0, nbd.CMD_FLAG_DF):
    got = []
    h.pread_structured(65536, 61440, lambda buf, off, status, err: got.append(kinds[status]) or 0, flags)
    print("chunks", "df" if flags else "plain", got)
seen = {}
def cb(ctx, offset, entries, err):
    seen[ctx] = list(entries)
    return 0
h.block_status(${SIZE}, 0, cb)
for k in sorted(seen): print("map", k, seen[k])
h.shutdown()
# option mode: list the contexts, then go
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_uri(uri)
names = []
h.opt_list_meta_context(lambda name: names.append(name) or 0)
print("listed", sorted(names))
h.opt_go()
print("size", h.get_size())
h.shutdown()
`;
    const out = (await ok('nbdsh', ['-c', script], { env: { PATH: NBDSH_PATH } })).stdout;
    expect(out).toContain(`simple ${model.subarray(61440, 61448).toString('hex')} 8192`);
    expect(out).toContain('block status: refused');
    expect(out).toContain("chunks plain ['data', 'hole']");
    expect(out).toContain("chunks df ['data']");
    expect(out).toContain(`map base:allocation [65536, 0, ${(1 << 20) - 65536}, 3, 8192, 0, ${SIZE - (1 << 20) - 8192}, 3]`);
    expect(out).toContain(`map imgstream:image:active - snap [65536, 0, ${(1 << 20) - 65536}, 2, 8192, 0, ${SIZE - (1 << 20) - 8192}, 2]`);
    expect(out).toMatch(/listed \[.*'base:allocation'.*'imgstream:image:active - snap'.*\]/);
    expect(out).toContain(`size ${SIZE}`);
  });

  it('negotiation is bounded: a 4 GiB option closes at once, a client that never finishes is dropped at the deadline', async () => {
    await server.stop(); // the volume is served again with a short deadline (the tests above keep the default)
    server = await startServer(vol, ['--socket', at('s.sock'), '--export-name', 'disk', '--handshake-timeout', '1'], locks);
    const c = await client(server);
    c.write(Buffer.concat([IHAVEOPT, u32(OPT.GO), u32(0xffffffff)]));
    const t0 = Date.now();
    await c.closed;
    expect(Date.now() - t0).toBeLessThan(900);

    // an option declared short enough, trickled one byte at a time: dropped after --handshake-timeout 1
    const d = await client(server);
    d.write(Buffer.concat([IHAVEOPT, u32(OPT.GO), u32(60000)]));
    const t1 = Date.now();
    const trickle = setInterval(() => d.write(Buffer.from([0])), 100);
    await d.closed;
    clearInterval(trickle);
    const took = Date.now() - t1;
    expect(took).toBeGreaterThan(700);
    expect(took).toBeLessThan(3000);

    // a client that connects and sends nothing
    const e = await RawClient.connect(server.info);
    const t2 = Date.now();
    await e.closed;
    expect(Date.now() - t2).toBeLessThan(3000);

    // the server serves on
    const f = await client(server);
    f.write(option(OPT.GO, goData('')));
    expect((await replies(f)).type).toBe(REP.ACK);
    f.write(request(CMD.READ, 1, 0, 4096));
    expect((await f.read(16)).readUInt32BE(4)).toBe(0);
    expect((await f.read(4096)).equals(model.subarray(0, 4096))).toBe(true);
    f.close();
  });
});
