// A protection destination refuses bad input with one line and its exit code, changing
// nothing, and names its damage (interval files, the base, protect.json) in status,
// --verify and restores alike.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import { protectStatus } from '../../src/journal/protect-status.js';
import { cliJson, cliOk, stderrLines, writeImage } from '../support/cli.js';
import { endOf, MODEL_BLOCKS, MODEL_BLOCK_SIZE, modelImages, modelSource } from '../support/protect-model.js';
import { setupOk } from '../support/in-process.js';
import { Volume } from '../../src/volume/volume.js';
import { PLANE_ACTIVE } from '../../src/volume/index.js';
import { iso, protectDestFixture } from '../support/protect-dest.js';

const { root, env, at, cli, drive, driveOk, exportAsOf } = protectDestFixture('imgstream-protect-bad-');

describe('protection destination: bad input and damage', () => {
  it('refuses bad input with one line and its exit code, changing nothing', async () => {
    const dest = at('bad.cdp');
    const seed = 15;
    driveOk(dest, seed, 10, 3_600_000);
    const window = `${iso(endOf(seed, 0))} to ${iso(endOf(seed, 10))}`;
    const expectError = (args: string[], code: number, text: string) => {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(stderrLines(r), args.join(' ')).toEqual([expect.stringContaining(text)]);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    };
    // a time outside the window, and something that is neither a time nor a snapshot
    expectError(['volume', 'export', dest, '--as-of', '2026-12-03T09:59:59.999Z', '--to', at('x.raw')], 4, `is outside the recovery window of ${dest}: ${window}`);
    expectError(['restore', '--to', at('x.vol'), '--as-of', '2026-12-04', '--from', dest], 4, `outside the recovery window of ${dest}: ${window}`);
    // (a name: not-found, as a snapshot that is not there is everywhere; a mistyped time: invalid)
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'june7', '--from', dest], 3, 'neither a time nor a snapshot');
    expectError(['volume', 'export', dest, '--as-of', '2026-12-03T25:00', '--to', at('x.raw')], 4, 'neither a time nor a snapshot');
    expect(stderrLines(cli(['restore', '--to', at('x.vol'), '--as-of', 'june7', '--from', dest]))[0]).toMatch(/\(give a time in the window .+ to .+, or latest for its end; a time is YYYY-MM-DD for the end of that day or YYYY-MM-DDTHH:MM\[:SS\], in local time, or followed by Z or \+HH:MM for another zone, as in 2026-12-03T10:15:02\.250Z\)$/);
    // into a directory that does not exist: named, like every other restore
    expectError(['restore', '--to', at('nodir/x.vol'), '--as-of', iso(endOf(seed, 5)), '--from', dest], 3, `${at('nodir/x.vol')}: no such directory ${at('nodir')}`);
    expect(fs.existsSync(at('x.raw')) || fs.existsSync(at('x.vol')) || fs.existsSync(at('nodir'))).toBe(false);
    // restore onto an existing path
    writeImage(at('plain.raw'), MODEL_BLOCKS, MODEL_BLOCK_SIZE, 3);
    await setupOk(['volume', 'create', at('plain.vol'), '--size', String(MODEL_BLOCKS * MODEL_BLOCK_SIZE)], { env });
    expectError(['restore', '--to', at('plain.vol'), '--as-of', iso(endOf(seed, 5)), '--from', dest], 6, 'already exists');
    // a plain volume and a mirror are no protection destinations, for restore, export, status and a shipper
    cliOk(['mirror', 'update', at('plain.vol'), '--to', at('copy.mirror')], { env });
    for (const [file, what] of [[at('plain.vol'), 'is an imgstream volume'], [at('copy.mirror'), 'is a mirror destination volume']]) {
      expectError(['volume', 'export', file, '--as-of', iso(endOf(seed, 5)), '--to', at('x.raw')], 5, `${file}: ${what}, not a protection destination`);
      expectError(['protect', 'status', file], 5, `${file}: ${what}, not a protection destination`);
      if (file.endsWith('.vol')) expectError(['protect', 'status', file], 5, `(a destination is a directory, which imgstream protect creates; to protect this volume: imgstream serve nbd ${file} --journal, then imgstream protect ${file} --to DIR)`);
      expectError(['restore', '--to', at('x.vol'), '--as-of', iso(endOf(seed, 5)), '--from', file], 5, `${file}: ${what}, not a protection destination`);
      await expect(new LocalProtectDestination(file).open(modelSource(seed), 1000)).rejects.toThrow(`${file}: ${what}, not a protection destination`);
    }
    // a protection destination is no volume to restore, import or snapshot into
    cliOk(['dump', at('plain.vol'), '--level', '0', '--to', at('plain.l0')], { env });
    expectError(['restore', '--from', at('plain.l0'), '--to', dest], 5, `${dest}: is a protection destination, not a volume`);
    expectError(['snapshot', 'create', dest, 'x'], 5, `${dest}: is a protection destination, not a volume`);
    // nor is its base volume, which the destination alone writes: refused, the destination as it was (its checksums still match)
    const baseVol = path.join(dest, 'base.vol');
    const baseBefore = fs.readFileSync(baseVol);
    const baseIs = `${baseVol}: is the base volume of the protection destination ${dest}, written only by imgstream protect`;
    expectError(['volume', 'import', baseVol, '--from', at('plain.raw')], 4, baseIs);
    expectError(['snapshot', 'create', baseVol, 'x'], 4, baseIs);
    expectError(['restore', '--from', at('plain.l0'), '--to', baseVol], 4, baseIs);
    expectError(['mirror', 'update', at('plain.vol'), '--to', baseVol], 4, `${baseVol}: holds a volume that is not a mirror`);
    expect(fs.readFileSync(baseVol).equals(baseBefore)).toBe(true);
    expect(cliJson(['volume', 'info', baseVol], { env }).protectionBase).toBe(true);
    // protect names its source as every command does: missing, a directory, a destination, not a volume
    expectError(['protect', at('missing.vol'), '--to', at('never.cdp')], 3, `${at('missing.vol')}: no such volume`);
    fs.mkdirSync(at('empty-dir'));
    expectError(['protect', at('empty-dir'), '--to', at('never.cdp')], 5, `${at('empty-dir')}: is a directory, not a volume`);
    expectError(['protect', dest, '--to', at('never.cdp')], 5, `${dest}: is a protection destination, not a volume`);
    expectError(['protect', at('plain.l0'), '--to', at('never.cdp')], 5, `${at('plain.l0')}: not an imgstream volume`);
    expect(fs.existsSync(at('never.cdp'))).toBe(false);
    // one shipper at a time: the second is refused as busy
    const holder = new LocalProtectDestination(dest);
    await holder.open(modelSource(seed), 3_600_000);
    const second = drive(dest, seed, 12, 3_600_000);
    await holder.close();
    expect(second.status).toBe(7);
    expect(second.stderr).toContain('protection destination is in use by imgstream process');
    // another volume's destination is refused by a shipper
    await expect(new LocalProtectDestination(dest).open(modelSource(99), 1000)).rejects.toThrow(/protects volume 0000000f/);
    // a directory without protect.json
    fs.mkdirSync(at('empty.cdp'));
    expectError(['protect', 'status', at('empty.cdp')], 3, 'not a protection destination (no protect.json)');
    const noState = at('nostate.cdp');
    fs.cpSync(dest, noState, { recursive: true });
    fs.rmSync(path.join(noState, 'protect.json'));
    // it lost its state file, not its data: damage (9), for export, status and --verify alike, never "not a destination"
    expectError(['volume', 'export', noState, '--as-of', iso(endOf(seed, 5)), '--to', at('x.raw')], 9, `${noState}: protect.json is missing, but the directory holds a protection destination's base.vol`);
    expectError(['protect', 'status', noState, '--verify'], 9, `${noState}: protect.json is missing`);
    // a shipper does not start over on top of it: refused, nothing changed
    const before = fs.readdirSync(path.join(noState, 'intervals')).length;
    const restart = drive(noState, seed, 12, 3_600_000);
    expect(restart.status).toBe(9);
    expect(restart.stderr).toContain(`${noState}: protect.json is missing, but the directory holds a protection destination's base.vol`);
    expect(fs.readdirSync(path.join(noState, 'intervals')).length).toBe(before);
    expect(fs.existsSync(path.join(noState, 'protect.json'))).toBe(false);
    // a corrupt interval file (one data byte) and a truncated one: named, exit 9; earlier points still restore
    const ivl = (d: string, seq: number) => path.join(d, 'intervals', `${String(seq).padStart(10, '0')}.ivl`);
    const bad = at('corrupt.cdp');
    fs.cpSync(dest, bad, { recursive: true });
    const fd = fs.openSync(ivl(bad, 6), 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 700);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, 700);
    fs.closeSync(fd);
    const size = fs.statSync(ivl(bad, 8)).size;
    fs.truncateSync(ivl(bad, 8), size - 10);
    const model = modelImages(seed, 10);
    expect(exportAsOf(bad, iso(endOf(seed, 5))).equals(model[5])).toBe(true);
    // interval 6's damaged block is only read when no later interval holds that LBN: ask at 6
    expectError(['volume', 'export', bad, '--as-of', iso(endOf(seed, 6)), '--to', at('x.raw')], 9, `${ivl(bad, 6)}: damaged interval file (block`);
    expectError(['restore', '--to', at('x.vol'), '--as-of', iso(endOf(seed, 9)), '--from', bad], 9, `${ivl(bad, 8)}: damaged interval file (no trailer`);
    const st = cliJson(['protect', 'status', bad], { env });
    expect(st.damaged).toEqual([expect.stringContaining(`${ivl(bad, 8)}: damaged interval file (no trailer`)]);
    expect(st.recoveryPoints).toBe(11);
    // status reads headers only; --verify reads every block: interval 6's damaged data block
    // too, named with its LBN, on its point as well (exit 9, one line, the status in details)
    const verified = cli(['protect', 'status', bad, '--verify', '--json']);
    expect(verified.code, verified.stderr).toBe(9);
    expect(stderrLines(verified)).toEqual([expect.stringContaining(`${bad}: --verify found 2 damaged files: ${ivl(bad, 6)}: damaged interval file (block `)]);
    const vst = JSON.parse(verified.stdout).error.details;
    expect(vst.damaged).toEqual([expect.stringMatching(/0000000006\.ivl: damaged interval file \(block \d+ checksum mismatch\)$/), expect.stringContaining(`${ivl(bad, 8)}: damaged interval file (no trailer`)]);
    expect(vst.points.filter((p: { damaged?: string }) => p.damaged).map((p: { seq: number }) => p.seq)).toEqual([6, 8]);
    expect(vst.verified).toMatchObject({ intervals: 8, folded: 0, base: { ok: true, problems: [] } });
    const text = cli(['protect', 'status', bad, '--verify']);
    expect(text.code).toBe(9);
    expect(text.stdout).toContain(`DAMAGED: ${ivl(bad, 6)}: damaged interval file (block `);
    expect(text.stdout).toMatch(/verified: 8 intervals read whole \(\d+ blocks of data, .+\), base volume checks clean/);
    // the intact destination: every block read, exit 0; its block count is every data block held
    const clean = cliJson(['protect', 'status', dest, '--verify'], { env });
    expect(clean.damaged).toEqual([]);
    const dataBlocks = protectStatus(dest).points.reduce((n, p) => n + p.blocks, 0);
    expect(clean.verified).toMatchObject({ intervals: 10, folded: 0, base: { ok: true, problems: [] } });
    expect(clean.verified.blocks).toBeGreaterThan(0);
    expect(clean.verified.blocks).toBeLessThanOrEqual(dataBlocks); // blocks that read as zeros carry no data
    // more damage --verify and restores must name (each on a copy of the intact destination):
    const copyOf = (name: string) => {
      const d = at(name);
      fs.cpSync(dest, d, { recursive: true });
      return d;
    };
    const editState = (d: string, edit: (st: Record<string, unknown>) => void) => {
      const st = JSON.parse(fs.readFileSync(path.join(d, 'protect.json'), 'utf8'));
      edit(st);
      fs.writeFileSync(path.join(d, 'protect.json'), JSON.stringify(st));
    };
    // an interval a fold under way still has to apply (outside the window now): no point can be rebuilt
    const folding = copyOf('folding.cdp');
    editState(folding, (st) => (st.fold = { to: 4, end: endOf(seed, 4) }));
    const fb = fs.readFileSync(ivl(folding, 2));
    fb[fb.length - 1000] ^= 0xff; // in the index
    fs.writeFileSync(ivl(folding, 2), fb);
    const fv = cli(['protect', 'status', folding, '--verify']);
    expect(fv.code, fv.stderr).toBe(9);
    expect(stderrLines(fv)).toEqual([expect.stringMatching(new RegExp(`0000000002\\.ivl: damaged interval file .*no recovery point can be rebuilt now; protect's next transfer sends a full resync, from which they rebuild again`))]);
    // a later damaged interval leaves the points before it: the hint names the last one
    const later = copyOf('later.cdp');
    fs.truncateSync(ivl(later, 9), 100);
    expect(stderrLines(cli(['protect', 'status', later, '--verify']))).toEqual([expect.stringContaining(`recovery points up to ${iso(endOf(seed, 8))} can still be rebuilt`)]);
    // an interval file copied over another's name: named, never taken for that interval's points
    const misplaced = copyOf('misplaced.cdp');
    fs.copyFileSync(ivl(misplaced, 7), ivl(misplaced, 6));
    expect(cliJson(['protect', 'status', misplaced], { env }).damaged).toEqual([`${ivl(misplaced, 6)}: damaged interval file (it holds interval 7, not 6)`]);
    expectError(['volume', 'export', misplaced, '--as-of', 'latest', '--to', at('x.raw')], 9, `${ivl(misplaced, 6)}: damaged interval file (it holds interval 7, not 6)`);
    // a missing interval file is damage (9) for a restore too; a directory in its place is named, not an internal error
    const missing = copyOf('missing.cdp');
    fs.rmSync(ivl(missing, 5));
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'latest', '--from', missing], 9, `${ivl(missing, 5)}: missing interval file (interval 5 of 10)`);
    fs.mkdirSync(ivl(missing, 5));
    expectError(['protect', 'status', missing, '--verify'], 9, `${ivl(missing, 5)}: damaged interval file (not a file)`);
    // a seeded destination without its base: damage, never "create a volume"
    const noBase = copyOf('nobase.cdp');
    fs.rmSync(path.join(noBase, 'base.vol'));
    expect(cliJson(['protect', 'status', noBase], { env }).damaged).toEqual([`${path.join(noBase, 'base.vol')}: missing: the destination's base volume is gone`]);
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'latest', '--from', noBase], 9, `${path.join(noBase, 'base.vol')}: missing: the destination's base volume is gone`);
    expectError(['protect', 'status', noBase, '--verify'], 9, 'no recovery point can be rebuilt');
    // not seeded yet: nothing to verify (exit 0), nothing to restore (3, saying so)
    const unseeded = copyOf('unseeded.cdp');
    fs.rmSync(path.join(unseeded, 'base.vol'));
    fs.rmSync(path.join(unseeded, 'intervals'), { recursive: true });
    editState(unseeded, (st) => Object.assign(st, { seeded: false, intervalSeq: 0, baseSeq: 0 }));
    const uv = cli(['protect', 'status', unseeded, '--verify']);
    expect(uv.code, uv.stderr).toBe(0);
    expect(uv.stdout).toContain('verified: nothing to read (not seeded yet)');
    expectError(['volume', 'export', unseeded, '--as-of', 'latest', '--to', at('x.raw')], 3, `${unseeded}: holds no recovery point yet (the first transfer has not completed)`);
    // a base whose active plane lost a block: its structure check names it
    const badBase = at('bad-base.cdp');
    fs.cpSync(dest, badBase, { recursive: true });
    const baseFile = path.join(badBase, 'base.vol');
    const view = Volume.openView(baseFile);
    const planeAt = view.layout.planeBlock(PLANE_ACTIVE, 0) * view.blockSize;
    view.close();
    const vol = fs.readFileSync(baseFile);
    vol.fill(0, planeAt, planeAt + MODEL_BLOCK_SIZE);
    fs.writeFileSync(baseFile, vol);
    const based = cli(['protect', 'status', badBase, '--verify']);
    expect(based.code).toBe(9);
    expect(stderrLines(based)).toEqual([expect.stringContaining(`${baseFile}: the base volume's check found`)]);
    // a base whose logical map points outside it: a restore names base.vol (damage, 9)
    const badMap = at('bad-map.cdp');
    fs.cpSync(dest, badMap, { recursive: true });
    const mapFile = path.join(badMap, 'base.vol');
    const mv = Volume.openView(mapFile);
    const rootAt = mv.layout.vbnOffset(mv.rootRecord.mapRoot);
    const outside = mv.nblocks + 1000;
    mv.close();
    const mapBytes = fs.readFileSync(mapFile);
    for (let slot = 0; slot < MODEL_BLOCK_SIZE / 8; slot++) if (mapBytes.readUInt32LE(rootAt + slot * 8) !== 0) mapBytes.writeUInt32LE(outside, rootAt + slot * 8);
    fs.writeFileSync(mapFile, mapBytes);
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'latest', '--from', badMap], 9, `${mapFile} (the destination's base volume): logical map node at VBN `);
    expectError(['volume', 'export', badMap, '--as-of', 'latest', '--to', at('x.raw')], 9, `${mapFile}: logical map node at VBN `);
    expect(fs.existsSync(at('x.raw')) || fs.existsSync(at('x.vol'))).toBe(false);
    expect(fs.readdirSync(root).filter((n) => n.includes('restoring') || n.includes('imgstream-'))).toEqual([]);
  }, 60_000);
});
