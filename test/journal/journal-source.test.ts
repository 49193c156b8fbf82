// The write journal of `serve nbd --journal`, with a real client (libnbd's Python
// binding, test/support/nbd-writer.py) doing random writes, zeroes and trims: the journal
// holds every acknowledged change in order with its time; after kill -9 the volume holds
// every write acknowledged before the last successful flush (and the journal's replay
// brings back later ones whole); a torn last record is cut off; damage is refused.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { rng } from '../support/images.js';
import { applyOp, modelAt, runWriter, type LoggedOp } from '../support/nbd-writer.js';
import { cli, run, startServer } from '../nbd/support.js';
import { JournalReader } from '../../src/journal/journal-reader.js';
import { listSegments } from '../../src/journal/journal-files.js';
import { RecordKind } from '../../src/journal/record.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import type { JournalStatus } from '../../src/journal/journal-status.js';

const BS = 4096;
const SIZE = 8 << 20;
const missing = journalTestMissing();
const { locks, at } = journalTestDir('imgstream-journal-');
/** A check run in this process, not as a process of its own (exports, status, lists: tested as processes elsewhere). */
const check = (args: string[]) => inProcessOk(args, { env: { IMGSTREAM_LOCK_DIR: locks } });

async function exportRaw(vol: string, out: string): Promise<Buffer> {
  await check(['volume', 'export', vol, '--to', out, '--force']);
  return fs.readFileSync(out);
}

/** Replays the journal's change records onto a zero disk. */
function replayJournal(dir: string): { disk: Buffer; times: number[]; kinds: RecordKind[] } {
  const disk = Buffer.alloc(SIZE);
  const segs = listSegments(dir);
  const r = new JournalReader(dir, segs[0].firstSeq);
  const times: number[] = [];
  const kinds: RecordKind[] = [];
  for (let rec = r.next(); rec !== null; rec = r.next()) {
    times.push(rec.time);
    kinds.push(rec.kind);
    if (rec.kind === RecordKind.Data) rec.payload.copy(disk, rec.lbn * BS);
    else if (rec.kind === RecordKind.Zero) disk.fill(0, rec.lbn * BS, (rec.lbn + rec.count) * BS);
  }
  r.close();
  return { disk, times, kinds };
}

describe.skipIf(missing.length > 0)(`the write journal of serve nbd --journal${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('holds every acknowledged write, zero and trim in order, time-stamped within its request', { timeout: 120_000 }, async () => {
    const vol = at('a.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('a.sock'), '--journal', '--cp-interval', '0.2'], locks);
    const w = await runWriter(server.info.uri, ['--seconds', '1.5', '--seed', '11', '--flush-every', '25']);
    expect(w.code, w.stderr).toBe(0);
    await server.stop();
    const model = Buffer.alloc(SIZE);
    for (const o of w.log) applyOp(model, o);
    const ops = w.log.filter((o) => o.op !== 'f');
    expect(ops.length).toBeGreaterThan(200);
    expect(ops.some((o) => o.op === 'z') && ops.some((o) => o.op === 't') && ops.some((o) => o.off % BS !== 0)).toBe(true);
    const { disk, times, kinds } = replayJournal(`${vol}.journal`);
    expect(disk.equals(model), 'the journal replayed onto zeros is the disk the client wrote').toBe(true);
    expect((await exportRaw(vol, at('a.raw'))).equals(model)).toBe(true);
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1]);
    const changeTimes = times.filter((_, i) => kinds[i] === RecordKind.Data || kinds[i] === RecordKind.Zero);
    expect(changeTimes[0]).toBeGreaterThanOrEqual(ops[0].t0);
    expect(changeTimes[changeTimes.length - 1]).toBeLessThanOrEqual(ops[ops.length - 1].t1);
    expect(kinds.filter((k) => k === RecordKind.Cp).length, 'a CP marker after each CP').toBeGreaterThan(1);
  });

  it('after kill -9 at random moments keeps every write acknowledged before the last flush, and nothing torn', async () => {
    const vol = at('k.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const random = rng(1404);
    let disk: Buffer = Buffer.alloc(SIZE);
    let beyondFlush = 0;
    // 4 rounds here; test/journal/protect-kill.test.ts kills the server 10 more times under protection
    for (let round = 0; round < 4; round++) {
      const server = await startServer(vol, ['--socket', at('k.sock'), '--journal', '--cp-interval', round % 2 ? '0' : '0.1'], locks);
      const writer = runWriter(server.info.uri, ['--seconds', '30', '--seed', String(100 + round), '--flush-every', '30', '--announce']);
      await new Promise((r) => setTimeout(r, 300 + Math.floor(random() * 700)));
      await server.kill9();
      const w = await writer;
      // the client logged what was acknowledged; the kill cut it off mid-request
      const log = w.log;
      const lastFlush = log.map((o) => o.op).lastIndexOf('f'); // -1: none yet (a slow start): any prefix will do
      const restarted = await startServer(vol, ['--socket', at('k.sock'), '--journal'], locks);
      await restarted.stop();
      const got = await exportRaw(vol, at('k.raw'));
      // the volume is the disk after some prefix of the requests, at least up to the last flush
      const model = Buffer.from(disk);
      for (let i = 0; i <= lastFlush; i++) applyOp(model, log[i]);
      const differs = new Set<number>();
      for (let b = 0; b < SIZE / BS; b++) if (!model.subarray(b * BS, (b + 1) * BS).equals(got.subarray(b * BS, (b + 1) * BS))) differs.add(b);
      let k = lastFlush;
      const touch = (o: LoggedOp) => {
        for (let b = Math.floor(o.off / BS); b < Math.ceil((o.off + o.len) / BS); b++) {
          if (model.subarray(b * BS, (b + 1) * BS).equals(got.subarray(b * BS, (b + 1) * BS))) differs.delete(b);
          else differs.add(b);
        }
      };
      while (differs.size > 0 && k + 1 < log.length) {
        k++;
        applyOp(model, log[k]);
        if (log[k].op !== 'f') touch(log[k]);
      }
      // the request in flight at the kill may have been applied and journaled (so replayed) without its reply reaching the client
      if (differs.size > 0 && k + 1 === log.length && w.inFlight !== null && w.inFlight.op !== 'f') {
        applyOp(model, w.inFlight);
        touch(w.inFlight);
      }
      expect(differs.size, `round ${round}: the volume is the disk after a prefix of the acknowledged requests reaching the last flush, or all of them and the one in flight (${log.length} logged, flush at ${lastFlush})`).toBe(0);
      if (k > lastFlush) beyondFlush++;
      disk = got;
      const checked = await check(['volume', 'check', vol, '--json']);
      expect(JSON.parse(checked.stdout).ok).toBe(true);
    }
    // replay brings back acknowledged writes the last CP did not hold, in some round at least
    expect(beyondFlush).toBeGreaterThan(0);
  }, 180_000);

  it('cuts a torn last record off, and refuses a damaged journal in one line while the volume still opens', { timeout: 120_000 }, async () => {
    const vol = at('t.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('t.sock'), '--journal'], locks);
    const w = await runWriter(server.info.uri, ['--count', '200', '--seed', '5', '--aligned']);
    expect(w.code, w.stderr).toBe(0);
    await server.stop();
    const before = await exportRaw(vol, at('t.raw'));
    const seg = listSegments(`${vol}.journal`).at(-1)!.path;
    const intact = fs.statSync(seg).size;
    // a DATA record whose write was cut short: its header and 100 of its 4096 bytes
    const rec = fs.readFileSync(seg).subarray(0, 48 + 4096 + 48);
    const firstData = rec.readUInt8(4) === RecordKind.Data ? 0 : null;
    expect(firstData === 0 || rec.length > 0).toBe(true);
    const h = Buffer.alloc(48);
    fs.readSync(fs.openSync(seg, 'r'), h, 0, 48, 0);
    const torn = Buffer.concat([h, Buffer.alloc(100, 7)]);
    torn.writeUInt32LE(4096, 36);
    fs.appendFileSync(seg, torn);
    const again = await startServer(vol, ['--socket', at('t.sock'), '--journal'], locks);
    const j = (again.info as unknown as { journal: { tornBytes: number; replayed: number } }).journal;
    expect(j.tornBytes).toBe(148);
    await again.stop();
    expect(fs.statSync(seg).size).toBeGreaterThan(intact); // cut to the last record, then the new OPEN and CP markers
    expect((await exportRaw(vol, at('t.raw'))).equals(before)).toBe(true);

    // a byte flipped in the middle: damage, not a torn tail
    const buf = fs.readFileSync(seg);
    buf[Math.floor(buf.length / 2)] ^= 0xff;
    fs.writeFileSync(seg, buf);
    const r = await run(process.execPath, [path.join(process.cwd(), 'dist/commands/_cli/bin.js'), 'serve', 'nbd', vol, '--socket', at('t.sock'), '--journal'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(r.code).toBe(9);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/journal.*damaged|checksum|damaged record/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    fs.writeFileSync(seg, buf); // unchanged by the refusal
    expect((await exportRaw(vol, at('t.raw'))).equals(before), 'the volume still opens at its last CP').toBe(true);
  });

  it('refuses a journal cut short before the volume\'s last CP (it would have replayed older writes over flushed ones), in the middle of a record or between two', { timeout: 120_000 }, async () => {
    const vol = at('cut.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('cut.sock'), '--journal'], locks);
    // two writes in one CP interval, then a flush (qemu-io flushes after each write: a CP between them)
    const py = `import nbd\nh = nbd.NBD()\nh.connect_uri(${JSON.stringify(server.info.uri)})\nh.pwrite(b'\\x11' * 4096, 0)\nh.pwrite(b'\\x22' * 4096, 0)\nh.flush()\nh.shutdown()\n`;
    const wrote = await run('/usr/bin/python3', ['-c', py]);
    expect(wrote.code, wrote.stderr).toBe(0);
    await server.stop();
    const before = await exportRaw(vol, at('cut.raw'));
    expect(before.subarray(0, 4).toString('hex')).toBe('22222222');
    const seg = listSegments(`${vol}.journal`).at(-1)!.path;
    const whole = fs.readFileSync(seg);
    const data: Array<{ at: number; end: number }> = [];
    const r = new JournalReader(`${vol}.journal`, listSegments(`${vol}.journal`)[0].firstSeq);
    for (let rec = r.next(); rec !== null; rec = r.next()) if (rec.kind === RecordKind.Data) data.push({ at: rec.payloadAt - 48, end: rec.payloadAt + rec.payloadBytes });
    r.close();
    expect(data.length).toBe(2);
    const bin = path.join(process.cwd(), 'dist/commands/_cli/bin.js');
    // cut in the second write's record (it and the final CP's marker gone), then cut where it begins
    for (const size of [data[1].at + 48 + 100, data[1].at]) {
      fs.writeFileSync(seg, whole.subarray(0, size));
      const refused = await run(process.execPath, [bin, 'serve', 'nbd', vol, '--socket', at('cut.sock'), '--journal'], { env: { IMGSTREAM_LOCK_DIR: locks } });
      expect(refused.code, refused.stderr).toBe(9);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
      expect(refused.stderr).toMatch(/the journal lacks changes the volume committed/);
      expect(fs.statSync(seg).size, 'nothing cut off the refused journal').toBe(size);
      expect((await exportRaw(vol, at('cut.raw'))).equals(before), 'the flushed write stays').toBe(true);
    }
    // without --journal the volume serves at its last CP
    const plain = await startServer(vol, ['--socket', at('cut.sock')], locks);
    await plain.stop();
    expect((await exportRaw(vol, at('cut.raw'))).equals(before)).toBe(true);

    // what the check lets through: a server killed between a CP and its marker (the journal holds every change that CP committed) replays its tail
    const vol2 = at('cpk.vol');
    await setupOk(['volume', 'create', vol2, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const child = spawn(process.execPath, [bin, 'serve', 'nbd', vol2, '--socket', at('cpk.sock'), '--journal', '--cp-interval', '0'], { env: { ...process.env, IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CRASH_AT: 'root:cpk.vol' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const died = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const uri = `nbd+unix:///?socket=${at('cpk.sock')}`;
    const py2 = `import nbd\nh = nbd.NBD()\nh.connect_uri(${JSON.stringify(uri)})\nh.pwrite(b'\\x33' * 4096, 0)\nh.pwrite(b'\\x44' * 4096, 4096)\nh.flush()\n`;
    const cut2 = await run('/usr/bin/python3', ['-c', py2]);
    expect(cut2.code, 'the flush\'s CP killed the server').not.toBe(0);
    expect(await died).toBe('SIGKILL');
    const back = await startServer(vol2, ['--socket', at('cpk.sock'), '--journal'], locks);
    expect((back.info as unknown as { journal: { replayed: number } }).journal.replayed).toBe(2);
    await back.stop();
    const disk = await exportRaw(vol2, at('cpk.raw'));
    expect(disk.subarray(0, 4).toString('hex') + disk.subarray(4096, 4100).toString('hex')).toBe('3333333344444444');
  });

  it('names damage to records a destination already holds: protect exits 9 (not "another journal"), status says DAMAGED', { timeout: 120_000 }, async () => {
    const vol = at('dm.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('dm.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', '60', '--seed', '12', '--aligned'])).code).toBe(0);
    await server.stop();
    await cli(['protect', vol, '--to', at('dm.cdp'), '--once'], locks);
    // a byte flipped inside a record in the middle of the (shipped) last segment
    const segs = listSegments(`${vol}.journal`);
    const seg = segs[segs.length - 1].path;
    const buf = fs.readFileSync(seg);
    buf[Math.floor(buf.length / 2)] ^= 0xff;
    fs.writeFileSync(seg, buf);
    const bin = path.join(process.cwd(), 'dist/commands/_cli/bin.js');
    const r = await run(process.execPath, [bin, 'protect', vol, '--to', at('dm.cdp'), '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(r.code, r.stderr).toBe(9);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/a damaged record at byte \d+, with \d+ bytes after it \(the destination holds records up to \d+\)/);
    const st = JSON.parse((await check(['protect', 'status', vol, '--json'])).stdout) as JournalStatus;
    expect(st.damage).toMatch(/a damaged record at byte/);
    expect((await cli(['protect', 'status', vol], locks)).stdout).toMatch(/DAMAGED: /);
    // --verify reads destinations: given the protected volume, one line saying so (exit 4)
    const v = await run(process.execPath, [bin, 'protect', 'status', vol, '--verify'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(v.code).toBe(4);
    expect(v.stderr.trim().split('\n')).toEqual([expect.stringContaining(`${vol}: --verify reads a protection destination, and this is the protected volume`)]);
  });

  it('does not create (or seed) a new destination from a damaged journal: every transfer would stop at the damage', { timeout: 60_000 }, async () => {
    const vol = at('dn.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('dn.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', '40', '--seed', '15', '--aligned'])).code).toBe(0);
    await server.stop();
    const seg = listSegments(`${vol}.journal`).at(-1)!.path;
    const buf = fs.readFileSync(seg);
    buf[Math.floor(buf.length / 3)] ^= 0xff;
    fs.writeFileSync(seg, buf);
    const dest = at('dn-new/deeper.cdp');
    const r = await run(process.execPath, [path.join(process.cwd(), 'dist/commands/_cli/bin.js'), 'protect', vol, '--to', dest, '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(r.code, r.stderr).toBe(9);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`0001\\.seg: a damaged record at byte \\d+, with \\d+ bytes after it: every transfer would stop at that record, so ${dest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not seeded from it.* nothing was created or changed`))]);
    expect(fs.existsSync(at('dn-new')), 'nothing created').toBe(false);
    // the journal moved aside and a new one started: the same destination name takes it
    fs.renameSync(`${vol}.journal`, at('dn.journal-damaged'));
    const again = await startServer(vol, ['--socket', at('dn.sock'), '--journal'], locks);
    await again.stop();
    expect((await cli(['protect', vol, '--to', dest, '--once'], locks)).code).toBe(0);
  });

  it('stops at damage in records not shipped yet: protect exits 9 and claims no point past it', { timeout: 120_000 }, async () => {
    const vol = at('du.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    let server = await startServer(vol, ['--socket', at('du.sock'), '--journal'], locks);
    const first = await runWriter(server.info.uri, ['--count', '20', '--seed', '13', '--aligned']);
    expect(first.code).toBe(0);
    await server.stop();
    await cli(['protect', vol, '--to', at('du.cdp'), '--once'], locks);
    const seg = listSegments(`${vol}.journal`).at(-1)!.path;
    const from = fs.statSync(seg).size;
    server = await startServer(vol, ['--socket', at('du.sock'), '--journal'], locks);
    const second = await runWriter(server.info.uri, ['--count', '40', '--seed', '14', '--aligned', '--pause-ms', '30']);
    expect(second.code).toBe(0);
    await server.stop();
    // a byte flipped inside a record written after the last one shipped, with more records after it
    // (a reader that stopped there, as at a tail still being written, took the journal for a shorter one)
    const buf = fs.readFileSync(seg);
    buf[from + Math.floor((buf.length - from) / 3)] ^= 0xff;
    fs.writeFileSync(seg, buf);
    const r = await run(process.execPath, [path.join(process.cwd(), 'dist/commands/_cli/bin.js'), 'protect', vol, '--to', at('du.cdp'), '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(r.code, r.stderr).toBe(9);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/0001\.seg: a (record that fails its checksum|damaged record header|record cut short), with \d+ bytes after it at byte \d+ \(serve without --journal/)]);
    // the destination's newest point holds every write acknowledged before it: none past the damage
    const end = Date.parse((JSON.parse((await check(['protect', 'status', at('du.cdp'), '--json'])).stdout) as { window: { end: string } }).window.end);
    expect(end).toBeLessThan(second.log.at(-1)!.t1);
    await check(['volume', 'export', at('du.cdp'), '--as-of', 'latest', '--to', at('du.raw')]);
    const want = modelAt(Buffer.alloc(SIZE), [...first.log, ...second.log], end);
    if (want !== null) expect(fs.readFileSync(at('du.raw')).equals(want)).toBe(true);
    expect((await cli(['protect', 'status', vol], locks)).stdout).toMatch(/DAMAGED: /);
  });

  it('tells a copy of the volume with its journal from the original: the destination takes the first to feed it, a rename keeps it', { timeout: 60_000 }, async () => {
    const vol = at('cp.vol');
    const dest = at('cp.cdp');
    const bin = path.join(process.cwd(), 'dist/commands/_cli/bin.js');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    let server = await startServer(vol, ['--socket', at('cp.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', '20', '--seed', '21', '--aligned'])).code).toBe(0);
    await server.stop();
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    const state = () => JSON.parse(fs.readFileSync(path.join(dest, 'protect.json'), 'utf8')) as { journalTo: number; source: { journalId: string; path: string } };
    const fed = state();
    // cp -r of both: the copy's records go on from the same numbers, with other writes
    fs.copyFileSync(vol, at('cp-copy.vol'));
    fs.cpSync(`${vol}.journal`, at('cp-copy.vol.journal'), { recursive: true });
    server = await startServer(at('cp-copy.vol'), ['--socket', at('cp.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', '30', '--seed', '22', '--aligned'])).code).toBe(0);
    await server.stop();
    const before = fs.readFileSync(path.join(dest, 'protect.json'));
    const copy = await run(process.execPath, [bin, 'protect', at('cp-copy.vol'), '--to', dest, '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(copy.code, copy.stderr).toBe(4);
    expect(copy.stderr.trim().split('\n')).toEqual([expect.stringMatching(/cp\.cdp: was fed from another write journal of volume [0-9a-f]+ .*copied with the volume/)]);
    expect(fs.readFileSync(path.join(dest, 'protect.json')).equals(before), 'the destination unchanged').toBe(true);
    // a destination fed before the identity was tied to the journal's directory knew it by the id alone: it takes the original's, once
    fs.writeFileSync(path.join(dest, 'protect.json'), JSON.stringify({ ...fed, source: { ...fed.source, journalId: fs.readFileSync(`${vol}.journal/id`, 'utf8').trim() } }));
    expect((await cli(['protect', vol, '--to', dest, '--once'], locks)).code).toBe(0);
    expect(state().source.journalId).toBe(fed.source.journalId);
    expect((await run(process.execPath, [bin, 'protect', at('cp-copy.vol'), '--to', dest, '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } })).code).toBe(4);
    // the volume and its journal renamed: the same journal
    fs.renameSync(vol, at('cp-moved.vol'));
    fs.renameSync(`${vol}.journal`, at('cp-moved.vol.journal'));
    expect((await cli(['protect', at('cp-moved.vol'), '--to', dest, '--once'], locks)).code).toBe(0);
    expect(state().source.path).toBe(at('cp-moved.vol'));
  });

  it('refuses a volume whose disk changed without its journal, and a shipper fed from another journal', { timeout: 120_000 }, async () => {
    const vol = at('c.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    let server = await startServer(vol, ['--socket', at('c.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', '50', '--seed', '9', '--aligned'])).code).toBe(0);
    await server.stop();
    // the source's side: written, never shipped, then shipped up to its last record
    const status = async () => JSON.parse((await check(['protect', 'status', vol, '--json'])).stdout) as JournalStatus;
    const before = await status();
    expect(before.shipped).toBeNull();
    expect(before.unshipped.records).toBe(before.newest - before.oldest! + 1);
    expect(before.unshipped.records).toBeGreaterThanOrEqual(50);
    expect(before.unshipped.lagMs).toBeGreaterThan(0);
    expect(before.unshipped.writes).toBeGreaterThanOrEqual(50);
    expect(before.shipper).toBeNull();
    await cli(['protect', vol, '--to', at('c.cdp'), '--once'], locks);
    const after = await status();
    expect(after.shipped).toMatchObject({ destination: at('c.cdp'), journalTo: after.newest });
    expect(after.unshipped).toEqual({ records: 0, writes: 0, oldest: null, lagMs: 0, dropped: false });
    const human = (await cli(['protect', 'status', vol], locks)).stdout;
    expect(human).toContain(`shipped to ${at('c.cdp')}: records up to ${after.newest} (last interval ${after.shipped!.intervalSeq}), its window ending ${after.shipped!.end}`);
    expect(human).toMatch(/not shipped yet: 0 writes: lag 0\.0 s/);
    // a snapshot alone changes no block: the journal still holds everything
    await cli(['snapshot', 'create', vol, 'quiet'], locks);
    server = await startServer(vol, ['--socket', at('c.sock'), '--journal'], locks);
    await server.stop();
    // the records a server writes without a client's write (its open, its CPs) are no lag
    const idle = await status();
    expect(idle.unshipped.records).toBeGreaterThan(0);
    expect(idle.unshipped).toMatchObject({ writes: 0, oldest: null, lagMs: 0 });
    // a server without --journal writes blocks the journal never saw (an import tells the journal: protect-idle-snapshot)
    server = await startServer(vol, ['--socket', at('c.sock')], locks);
    expect((await runWriter(server.info.uri, ['--count', '5', '--seed', '99', '--aligned'])).code).toBe(0); // other data than before: a rewrite of the same bytes changes nothing
    await server.stop();
    const bin = path.join(process.cwd(), 'dist/commands/_cli/bin.js');
    const refused = await run(process.execPath, [bin, 'serve', 'nbd', vol, '--socket', at('c.sock'), '--journal'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(refused.code).toBe(4);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/changed without its journal/);
    const fedState = fs.readFileSync(at('c.cdp/protect.json'));
    const fedTo = (JSON.parse(fedState.toString()) as { journalTo: number }).journalTo;
    // a copy of the volume with its journal, cut short: refused, and the destination records nothing of it (not its path)
    fs.copyFileSync(vol, at('copy.vol'));
    fs.cpSync(`${vol}.journal`, at('copy.vol.journal'), { recursive: true });
    const seg = listSegments(at('copy.vol.journal'))[0].path;
    fs.truncateSync(seg, Math.floor(fs.statSync(seg).size / 3));
    for (const s of listSegments(at('copy.vol.journal')).slice(1)) fs.rmSync(s.path);
    const cut = await run(process.execPath, [bin, 'protect', at('copy.vol'), '--to', at('c.cdp'), '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(cut.code, cut.stderr).toBe(4);
    expect(fs.readFileSync(at('c.cdp/protect.json')).equals(fedState), 'the destination unchanged by a refused shipper').toBe(true);
    // started over: the journal moved aside, and written past the record the destination holds
    // (its numbers begin again at 1: only an identity tells it from the old one, whose
    // destination took its later records as the old one's and lost the rest); the old
    // destination refuses the new journal, changing nothing, and a new one takes it
    fs.renameSync(`${vol}.journal`, at('old.journal'));
    server = await startServer(vol, ['--socket', at('c.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', String(fedTo + 20), '--seed', '10', '--aligned'])).code).toBe(0);
    await server.stop();
    expect(listSegments(`${vol}.journal`).length > 0 && new JournalReader(`${vol}.journal`, fedTo).next() !== null, 'the new journal reaches past the destination\'s records').toBe(true);
    const other = await run(process.execPath, [bin, 'protect', vol, '--to', at('c.cdp'), '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(other.code, other.stderr).toBe(4);
    expect(other.stderr.trim().split('\n')).toEqual([expect.stringMatching(/c\.cdp: was fed from another write journal of volume [0-9a-f]+ \([0-9a-f]{8}, not [0-9a-f]{8}\): this journal is not the one the destination was fed from/)]);
    expect(fs.readFileSync(at('c.cdp/protect.json')).equals(fedState), 'the destination unchanged').toBe(true);
    await cli(['protect', vol, '--to', at('c2.cdp'), '--once'], locks);
    const st = JSON.parse((await check(['protect', 'status', at('c2.cdp'), '--json'])).stdout) as { window: { end: string } };
    await check(['volume', 'export', at('c2.cdp'), '--as-of', st.window.end, '--to', at('c2.raw')]);
    await check(['volume', 'export', vol, '--to', at('c-src.raw')]);
    expect(fs.readFileSync(at('c2.raw')).equals(fs.readFileSync(at('c-src.raw')))).toBe(true);
  });
});
