// The mirror engine through in-process channels: rounds of random writes, snapshot
// creations and deletions, each followed by an update and a byte-for-byte comparison of
// every snapshot at the destination; incremental updates carry only the marked blocks.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { exportImage } from '../../src/volume/export.js';
import { checkVolume } from '../../src/volume/check.js';
import { breakMirror, localDestination, MirrorState, sendMirror, type MirrorResult } from '../../src/mirror/index.js';
import { exportToBuffer, tempDir } from '../support/images.js';
import { createHash } from 'node:crypto';
import { cutAfter } from '../support/cut-channel.js';

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

async function digests(file: string): Promise<Map<string, string>> {
  const vol = Volume.open(file, { write: false });
  try {
    const out = new Map<string, string>();
    for (const s of [undefined, ...vol.snapshots().map((x) => x.name)]) {
      const b = await exportToBuffer((sink) => exportImage(vol, s, sink));
      out.set(s ?? '@active', createHash('sha256').update(b).digest('hex'));
    }
    return out;
  } finally {
    vol.close();
  }
}

/**
 * Every snapshot of the source and its active file system are at the destination, byte
 * for byte; the destination holds nothing else but the source's previous mirror snapshot
 * (it goes with the next transfer).
 */
export function expectReplica(src: Map<string, string>, dest: Map<string, string>, what: string): void {
  for (const [name, digest] of src) expect(dest.get(name), `${what}: ${name}`).toBe(digest);
  const extra = [...dest.keys()].filter((n) => !src.has(n));
  expect(extra.filter((n) => !n.startsWith('mirror.')), `${what}: extra snapshots`).toEqual([]);
  expect(extra.length, `${what}: extra snapshots`).toBeLessThanOrEqual(1);
}

async function update(src: string, dest: string, state: MirrorState, op: 'mirror.update' | 'mirror.resync' = 'mirror.update'): Promise<MirrorResult> {
  const vol = Volume.open(src, { write: true, mirror: true });
  try {
    const d = localDestination(dest);
    try {
      return await sendMirror(vol, d.channel, { destination: dest, name: path.basename(dest), op, state });
    } finally {
      d.channel.close();
      await d.settled;
    }
  } finally {
    vol.close();
  }
}

function writeRandom(file: string, r: () => number, count: number, blocks: number, bs: number): void {
  const vol = Volume.open(file, { write: true });
  try {
    const buf = Buffer.alloc(bs);
    for (let k = 0; k < count; k++) {
      const lbn = Math.floor(r() * blocks);
      if (r() < 0.1) buf.fill(0);
      else for (let i = 0; i < bs; i += 4) buf.writeUInt32LE((r() * 4294967296) >>> 0, i);
      vol.writeLogical(lbn, buf);
    }
    vol.commit();
  } finally {
    vol.close();
  }
}

describe('mirror engine', () => {
  it('keeps an exact replica through rounds of writes, snapshots and deletions', async () => {
    const bs = 4096;
    const blocks = 3000;
    const src = path.join(dir, 'src.vol');
    const dest = path.join(dir, 'dest.vol');
    const state = new MirrorState(path.join(dir, 'state.json'));
    Volume.create(src, { size: blocks * bs, blockSize: bs, maxSnapshots: 12 });
    const r = rng(7);
    writeRandom(src, r, 1500, blocks, bs);
    const first = await update(src, dest, state);
    expect(first.mode).toBe('full');
    expectReplica(await digests(src), await digests(dest), 'first');
    let userSnap = 0;
    let staged = 0;
    let deltas = 0;
    for (let round = 0; round < 8; round++) {
      const changed = 20 + Math.floor(r() * 150);
      writeRandom(src, r, changed, blocks, bs);
      const vol = Volume.open(src, { write: true });
      try {
        if (r() < 0.7) vol.createSnapshot(`user${userSnap++}`);
        const users = vol.snapshots().filter((s) => s.name.startsWith('user'));
        if (users.length > 3 || (users.length > 0 && r() < 0.3)) vol.deleteSnapshot(users[Math.floor(r() * users.length)].name);
      } finally {
        vol.close();
      }
      writeRandom(src, r, 10, blocks, bs);
      const res = await update(src, dest, state);
      staged += res.staged;
      deltas += res.mapDeltas;
      // map nodes travel as differences: the bytes sent are the data and little more
      expect(res.bytes, `round ${round}`).toBeLessThan(res.dataBytes + 12 * 4096 + 64 * 1024);
      expect(res.mode, `round ${round}`).toBe('moa');
      // only what changed travels: never the volume
      expect(res.blocks, `round ${round}`).toBeLessThan(changed * 2 + 40);
      expectReplica(await digests(src), await digests(dest), `round ${round}`);
      const dv = Volume.open(dest, { write: false });
      try {
        expect(checkVolume(dv).ok).toBe(true);
      } finally {
        dv.close();
      }
    }
    // deleted snapshots gave blocks back that were reused: those went through the journal
    expect(staged).toBeGreaterThan(0);
    expect(deltas).toBeGreaterThan(0);
  });
});

async function updateWith(src: string, dest: string, state: MirrorState, opts: { cut?: number; op?: 'mirror.update' | 'mirror.resync' | 'replicate'; top?: string } = {}): Promise<MirrorResult> {
  const vol = Volume.open(src, { write: true, mirror: true });
  try {
    const d = localDestination(dest, undefined, { ackBytes: 64 << 10 });
    const ch = opts.cut !== undefined ? cutAfter(d.channel, opts.cut) : d.channel;
    try {
      return await sendMirror(vol, ch, { destination: dest, name: path.basename(dest), op: opts.op ?? 'mirror.update', state, top: opts.top });
    } finally {
      d.channel.close();
      await d.settled;
    }
  } finally {
    vol.close();
  }
}

describe('mirror faults and relationships', () => {
  const bs = 4096;
  const blocks = 4000;

  /** A source volume `NAME-src.vol` with `writes` random blocks written, its destination path and mirror state, and the random stream that wrote them. */
  function relationship(name: string, seed: number, writes: number) {
    const src = path.join(dir, `${name}-src.vol`);
    const dest = path.join(dir, `${name}-dest.vol`);
    const state = new MirrorState(path.join(dir, `${name}-state.json`));
    Volume.create(src, { size: blocks * bs, blockSize: bs, maxSnapshots: 12 });
    const r = rng(seed);
    writeRandom(src, r, writes, blocks, bs);
    return { src, dest, state, r };
  }

  it('resumes a cut transfer without resending what was acknowledged, and a failed transfer loses nothing', async () => {
    const { src, dest, state, r } = relationship('r', 11, 3000);
    // the first transfer is cut twice: no destination appears, then it resumes
    await expect(updateWith(src, dest, state, { cut: 3 })).rejects.toThrow();
    expect(fs.existsSync(dest)).toBe(false);
    await expect(updateWith(src, dest, state, { cut: 7 })).rejects.toThrow();
    expect(fs.existsSync(dest)).toBe(false);
    const done = await updateWith(src, dest, state);
    expect(done.resumedRecords).toBeGreaterThan(3);
    expect(done.blocks).toBeLessThan(done.planBlocks);
    expectReplica(await digests(src), await digests(dest), 'resumed first transfer');
    // an incremental cut part way: the destination stays at its earlier state
    writeRandom(src, r, 600, blocks, bs);
    const before = await digests(dest);
    await expect(updateWith(src, dest, state, { cut: 1 })).rejects.toThrow();
    expect(await digests(dest)).toEqual(before);
    // what arrived before the cut was kept, acknowledged or not: the transfer could resume
    const resumeFile = path.join(dir, '.r-dest.vol.mirror-transfer');
    expect((JSON.parse(fs.readFileSync(resumeFile, 'utf8')) as { acked: number }).acked).toBeGreaterThanOrEqual(1);
    // more changes meanwhile, and a snapshot taken by the user: the next update takes a
    // new snapshot, so the plane of the failed transfer is folded into this one
    writeRandom(src, r, 200, blocks, bs);
    const vol = Volume.open(src, { write: true });
    vol.createSnapshot('between');
    vol.close();
    // drop the failed transfer's resume state so a new transfer (not a resume) runs
    fs.rmSync(resumeFile);
    const s2 = new MirrorState(path.join(dir, 'r-state.json'));
    const res = await updateWith(src, dest, s2);
    expect(res.mode).toBe('moa');
    expectReplica(await digests(src), await digests(dest), 'after a failed transfer');
  });

  it('never names a new mirror snapshot as an earlier one after the user deletes the current one, or a killed transfer\'s, on the source', async () => {
    const { src, dest, state, r } = relationship('n', 23, 500);
    const tops = [(await updateWith(src, dest, state)).top];
    writeRandom(src, r, 50, blocks, bs);
    tops.push((await updateWith(src, dest, state)).top);
    // the user deletes the relationship's snapshot on the source: the destination still has it
    const vol = Volume.open(src, { write: true });
    vol.deleteSnapshot(tops[1]);
    vol.close();
    writeRandom(src, r, 50, blocks, bs);
    tops.push((await updateWith(src, dest, state)).top);
    writeRandom(src, r, 50, blocks, bs);
    tops.push((await updateWith(src, dest, state)).top);
    // a transfer killed after it took its snapshot (the destination never got it), which the user then deleted: its name does not come back either
    const killed = `${tops[3].slice(0, tops[3].lastIndexOf('.'))}.${Number(tops[3].split('.').at(-1)) + 1}`;
    const v2 = Volume.open(src, { write: true });
    v2.createSnapshot(killed);
    v2.deleteSnapshot(killed);
    v2.close();
    writeRandom(src, r, 50, blocks, bs);
    tops.push((await updateWith(src, dest, state)).top);
    expect(tops.at(-1)).not.toBe(killed);
    const numbers = tops.map((t) => Number(t.split('.').at(-1)));
    expect(new Set(tops).size, tops.join(' ')).toBe(tops.length);
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expectReplica(await digests(src), await digests(dest), 'after the deleted mirror snapshot');
  });

  it('brings a broken-off destination back with resync, moving only the differences', async () => {
    const { src, dest, state, r } = relationship('b', 5, 2500);
    await updateWith(src, dest, state);
    writeRandom(src, r, 100, blocks, bs);
    await updateWith(src, dest, state);
    // the destination is read-only until broken off
    expect(() => Volume.open(dest, { write: true })).toThrow(/mirror/);
    breakMirror(dest);
    writeRandom(dest, r, 300, blocks, bs);
    const dv = Volume.open(dest, { write: true });
    dv.createSnapshot('dest-only');
    dv.close();
    writeRandom(src, r, 150, blocks, bs);
    await expect(updateWith(src, dest, state)).rejects.toThrow(/broken off/);
    const res = await updateWith(src, dest, state, { op: 'mirror.resync' });
    expect(res.mode).toBe('common');
    expect(res.blocks).toBeLessThan(150 * 2 + 60);
    expectReplica(await digests(src), await digests(dest), 'after resync');
    // and it is a mirror again: updates go on with the marked blocks
    writeRandom(src, r, 80, blocks, bs);
    const again = await updateWith(src, dest, state);
    expectReplica(await digests(src), await digests(dest), 'after resync and update');
    expect(again.blocks).toBeLessThan(80 * 2 + 60);
  });

  it('cascades: a mirror feeds another mirror', async () => {
    const a = path.join(dir, 'c-a.vol');
    const b = path.join(dir, 'c-b.vol');
    const c = path.join(dir, 'c-c.vol');
    const state = new MirrorState(path.join(dir, 'c-state.json'));
    Volume.create(a, { size: blocks * bs, blockSize: bs, maxSnapshots: 12 });
    const r = rng(9);
    for (let round = 0; round < 4; round++) {
      writeRandom(a, r, round === 0 ? 2000 : 150, blocks, bs);
      await updateWith(a, b, state);
      const res = await updateWith(b, c, state);
      expect(res.mode).toBe(round === 0 ? 'full' : 'moa');
      if (round > 0) expect(res.blocks).toBeLessThan(150 * 2 + 60);
      const [da, dc] = [await digests(a), await digests(c)];
      expectReplica(da, dc, `cascade round ${round}`);
    }
  });

  it('replicates up to a master snapshot, from the newest common one', async () => {
    const { src, dest, state, r } = relationship('p', 3, 2000);
    let v = Volume.open(src, { write: true });
    v.createSnapshot('m1', { master: true });
    v.close();
    const first = await updateWith(src, dest, state, { op: 'replicate', top: 'm1' });
    expect(first.mode).toBe('full');
    writeRandom(src, r, 120, blocks, bs);
    v = Volume.open(src, { write: true });
    v.createSnapshot('m2', { master: true });
    v.close();
    writeRandom(src, r, 50, blocks, bs); // after the master: not part of it
    const second = await updateWith(src, dest, state, { op: 'replicate', top: 'm2' });
    expect(second.mode).toBe('common');
    expect(second.blocks).toBeLessThan(120 * 2 + 60);
    const [ds, dd] = [await digests(src), await digests(dest)];
    for (const n of ['m1', 'm2']) expect(dd.get(n)).toBe(ds.get(n));
    expect(dd.get('@active')).toBe(ds.get('m2'));
  });
});

describe('replicas hold master snapshots', () => {
  it('snapshot delete keeps a master snapshot a known replica still needs', async () => {
    const { cliOk, runCli } = await import('../support/cli.js');
    const { setupOk } = await import('../support/in-process.js');
    const env = { IMGSTREAM_LOCK_DIR: path.join(dir, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(dir, 'h-state.json') };
    const src = path.join(dir, 'h-src.vol');
    const rep = path.join(dir, 'h-rep.vol');
    await setupOk(['volume', 'create', src, '--size', '4M'], { env });
    fs.writeFileSync(path.join(dir, 'h.img'), Buffer.alloc(1 << 20, 7));
    await setupOk(['volume', 'import', src, '--from', path.join(dir, 'h.img')], { env });
    await setupOk(['snapshot', 'create', src, 'm1', '--master'], { env });
    cliOk(['replicate', 'pull', rep, '--from', src], { env });
    // the replica's newest master is m1: it stays
    const refused = runCli(['snapshot', 'delete', src, 'm1'], { env });
    expect(refused.code).toBe(7);
    expect(refused.stderr).toMatch(/master snapshot "m1" is kept: it is the newest master of replica\(s\) .*h-rep\.vol, whose next pull starts from it/);
    await setupOk(['snapshot', 'create', src, 'm2', '--master'], { env });
    expect(runCli(['snapshot', 'delete', src, 'm1'], { env }).code).toBe(7);
    // m2 is kept too, but not as the replica's base: the message says where the replica is
    const behind = runCli(['snapshot', 'delete', src, 'm2'], { env });
    expect(behind.code).toBe(7);
    expect(behind.stderr).toMatch(/master snapshot "m2" is kept: replica\(s\) .*h-rep\.vol \(at "m1"\) have not passed it yet/);
    expect(behind.stderr).not.toMatch(/next pull starts from it/);
    cliOk(['replicate', 'pull', rep, '--from', src], { env });
    // the replica passed m1 (it has m2 now): m1 may go, m2 may not
    cliOk(['snapshot', 'delete', src, 'm1'], { env });
    expect(runCli(['snapshot', 'delete', src, 'm2'], { env }).code).toBe(7);
    cliOk(['snapshot', 'delete', src, 'm2', '--force'], { env });
  });

  it('snapshot delete keeps the newest snapshot a mirror holds (its next update builds on it), until that update or --force', async () => {
    const { cliJson, cliOk, runCli } = await import('../support/cli.js');
    const { setupOk } = await import('../support/in-process.js');
    const env = { IMGSTREAM_LOCK_DIR: path.join(dir, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(dir, 'k-state.json') };
    const src = path.join(dir, 'k-src.vol');
    const img = Buffer.alloc(1 << 20, 5);
    await setupOk(['volume', 'create', src, '--size', '4M'], { env });
    fs.writeFileSync(path.join(dir, 'k.img'), img);
    await setupOk(['volume', 'import', src, '--from', path.join(dir, 'k.img')], { env });
    const names = () => cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', src, '--json'], { env }).snapshots.map((x) => x.name);
    for (const m of ['a', 'b']) cliOk(['mirror', 'update', src, '--to', path.join(dir, `k-${m}.vol`)], { env });
    const [baseA, baseB] = names().filter((n) => n.startsWith('mirror.'));
    const refused = runCli(['snapshot', 'delete', src, baseA], { env });
    expect(refused.code, refused.stderr).toBe(7);
    expect(refused.stderr).toMatch(new RegExp(`snapshot "${baseA.replaceAll('.', '\\.')}" is kept: it is the newest one mirror .*k-a\\.vol holds, whose next update builds on it; update those mirrors first`));
    // an update of mirror a moves its base on: the old one is its own to drop, b's is still kept
    img.fill(6, 0, 4096);
    fs.writeFileSync(path.join(dir, 'k.img'), img);
    await setupOk(['volume', 'import', src, '--from', path.join(dir, 'k.img')], { env });
    expect(cliJson<{ transfers: Array<{ mode: string }> }>(['mirror', 'update', src, '--to', path.join(dir, 'k-a.vol'), '--json'], { env }).transfers[0].mode).not.toBe('full');
    expect(names()).not.toContain(baseA);
    expect(runCli(['snapshot', 'delete', src, baseB], { env }).code).toBe(7);
    // --force: deleted, and b's next update can build on nothing both hold
    cliOk(['snapshot', 'delete', src, baseB, '--force'], { env });
    expect(names()).not.toContain(baseB);
  });
});
