// Tape faults a user met, through the built CLI. A dump to a tape on a full disk (a tape
// directory on a small tmpfs: needs root, as CI's containers and this project's machines
// run tests; a tape device that is /dev/full) ends like one to a full file system: exit
// 10, one line naming the tape and "no space left", its snapshot deleted, no partial tape
// file left. A tape set whose next tape belongs to another set, or is the same tape again
// under another name, is refused before any data is read (exit 4). A set whose last tape
// ends in the middle of a dump is refused before anything is read or restored (exit 3),
// naming the tape that goes on and the missing next one: a restore used to apply the dumps
// before it first; so is a tape device of the set that cannot be opened (any source of a
// restore, before the first stream is applied). A dump with --new-tape refused after it
// made a tape directory leaves no directory.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, runCli, sha256File, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { expectOneLineError, refused } from '../support/stream-cli.js';
import { snapshotNamesSync } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const root = tempDir('imgstream-tape-faults-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const at = (f: string) => path.join(root, f);
const vols = [at('a.vol'), at('b.vol')];
const small = at('small');

function mountSmall(): boolean {
  fs.mkdirSync(small, { recursive: true });
  return spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1M', 'tmpfs', small]).status === 0;
}
const canMount = process.getuid?.() === 0 && mountSmall();

afterAll(() => {
  if (canMount) spawnSync('umount', [small]);
  fs.rmSync(root, { recursive: true, force: true });
});

beforeAll(async () => {
  // 4 MiB of incompressible blocks each: more than the small file system holds
  for (const [i, vol] of vols.entries()) {
    await setupOk(['volume', 'create', vol, '--size', '4M', '-q'], { env });
    writeImage(at(`img${i}`), 1024, BS, 70 + i, 0);
    await setupOk(['volume', 'import', vol, '--from', at(`img${i}`), '-q'], { env });
  }
}, 60_000);

/** The snapshot names `snapshot list` prints, read here (oracle.ts). */
const snapshots = (vol: string): string[] => snapshotNamesSync(vol, env);
/** Every name under `dir`, hidden ones (partial tape files) included; [] when it does not exist. */
const tree = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).map(String).sort() : []);

/** Runs a dump that must fail as `exit` with one line matching `pattern`, and checks it kept no snapshot. */
function failedDump(what: string, args: string[], exit: number, pattern: RegExp): string {
  const before = vols.map((v) => snapshots(v));
  const r = runCli(['dump', ...args, '--level', '0', '--compress', 'none', '--catalog', at('catalog.json')], o);
  const line = expectOneLineError(r, what, exit, pattern);
  expect(vols.map((v) => snapshots(v)), `${what}: the snapshots the dump took are deleted`).toEqual(before);
  return line;
}

describe.runIf(fs.existsSync('/dev/full'))('a tape device that is full', () => {
  it('tape:/dev/full: exit 10, one line naming the device, no snapshot kept', () => {
    failedDump('dump to tape:/dev/full', [vols[0], '--to', 'tape:/dev/full'], 10, /tape device \/dev\/full: no space left/);
  });

  it('--multiplex onto tape:/dev/full: the same', () => {
    failedDump('multiplexed dump to tape:/dev/full', [...vols, '--multiplex', '--to', 'tape:/dev/full'], 10, /\/dev\/full: no space left/);
  });
});

describe.runIf(canMount)('a tape directory on a full disk', () => {
  it('tape:DIR: exit 10, one line naming the tape, no snapshot and no partial tape file kept', () => {
    const t = path.join(small, 'single');
    fs.mkdirSync(t);
    failedDump('dump to a full tape directory', [vols[0], '--to', `tape:${t}`], 10, new RegExp(`tape ${t}: no space left`));
    expect(tree(t)).toEqual([]);
    fs.rmSync(t, { recursive: true });
  }, 60_000);

  it('--multiplex onto tape:DIR: the same', () => {
    const t = path.join(small, 'multiplex');
    fs.mkdirSync(t);
    failedDump('multiplexed dump to a full tape directory', [...vols, '--multiplex', '--to', `tape:${t}`], 10, new RegExp(`tape ${t}: no space left`));
    expect(tree(t)).toEqual([]);
    fs.rmSync(t, { recursive: true });
  }, 60_000);

  it('a spanning set whose next tape is on the full disk: nothing kept on either tape', () => {
    const first = at('span-first');
    const next = path.join(small, 'span-next');
    fs.mkdirSync(first);
    fs.mkdirSync(next);
    failedDump('spanning dump onto a full next tape', [vols[0], '--to', `tape:${first},${next}`, '--tape-size', '2M'], 10, new RegExp(`tape ${next}: no space left`));
    expect([tree(first), tree(next)]).toEqual([[], []]);
    fs.rmSync(next, { recursive: true });
  }, 60_000);
});

describe('tape sets given wrong, refused before reading', () => {
  const sets: Record<string, string[]> = {};

  beforeAll(() => {
    // two dumps of two tapes each, and two multiplexed dumps of two tapes each
    for (const name of ['x', 'y']) {
      sets[name] = [1, 2].map((n) => at(`${name}${n}`));
      cliOk(['dump', vols[0], '--level', '0', '--compress', 'none', '--to', `tape:${sets[name].join(',')}`, '--tape-size', '3M', '--new-tape', '--catalog', at(`${name}.json`), '-q'], o);
      sets[`m${name}`] = [1, 2].map((n) => at(`m${name}${n}`));
      cliOk(['dump', ...vols, '--multiplex', '--level', '0', '--compress', 'none', '--to', `tape:${sets[`m${name}`].join(',')}`, '--tape-size', '6M', '--new-tape', '--catalog', at(`m${name}.json`), '-q'], o);
    }
    for (const s of Object.values(sets)) for (const t of s) expect(tree(t), t).toEqual(['file0001.tar']);
  }, 120_000);

  it('tape 1 of another dump after a tape whose dump goes on: exit 4, in verify and restore', async () => {
    const [x1] = sets.x;
    const [y1] = sets.y;
    expect(cliJson<{ ok: boolean }>(['verify', `tape:${sets.x.join(',')}`], o).ok).toBe(true);
    const wrong = new RegExp(`^imgstream: tape ${y1} \\(tape 1 of dump \\S+\\) is given after tape ${x1}, whose last tape file \\(tape 1 of dump \\S+\\) goes on on tape 2 of that dump: it is not part of this set`);
    expectOneLineError(await refused(['verify', `tape:${x1},${y1}`], o), 'verify of x1,y1', 4, wrong);
    const dst = at('never.vol');
    expectOneLineError(await refused(['restore', '--from', `tape:${x1},${y1}`, '--to', dst], o), 'restore from x1,y1', 4, wrong);
    expect(fs.existsSync(dst)).toBe(false);
    // an empty tape in its place: the same
    fs.mkdirSync(at('blank'));
    expectOneLineError(await refused(['verify', `tape:${x1},${at('blank')}`], o), 'verify of x1,blank', 4, /\(empty\) is given after tape .*: it is not part of this set/);
  }, 60_000);

  it('multiplexed sets: the same', () => {
    expect(cliJson<{ ok: boolean }>(['verify', `tape:${sets.mx.join(',')}`], o).ok).toBe(true);
    expectOneLineError(runCli(['verify', `tape:${sets.mx[0]},${sets.my[0]}`], o), 'verify of mx1,my1', 4, /goes on on tape 2 of that dump: it is not part of this set/);
  }, 60_000);

  it('the same tape again under another name, or a copy of it: exit 4', async () => {
    const [x1] = sets.x;
    fs.symlinkSync(x1, at('x1-link'));
    expectOneLineError(await refused(['verify', `tape:${x1},${at('x1-link')}`], o), 'verify of x1 and a link to it', 4, /is given twice \(as tapes 1 and 2 of the set: it is the same directory as /);
    fs.cpSync(x1, at('x1-copy'), { recursive: true });
    expectOneLineError(await refused(['verify', `tape:${x1},${at('x1-copy')}`], o), 'verify of x1 and a copy of it', 4, /begins with the same tape file: the same tape given twice, or a copy of it/);
  }, 60_000);
});

describe('a set that ends in the middle of a dump', () => {
  // a tape holding a level 1 (complete) then a level 2 that goes on on a second tape
  const vol = at('c.vol');
  const [t1, t2] = [at('c-t1'), at('c-t2')];
  const base = at('c-base.vol');
  let l2 = '';

  beforeAll(async () => {
    const img = at('c.img');
    await setupOk(['volume', 'create', vol, '--size', '4M', '--volume-size', '16M', '-q'], { env });
    writeImage(img, 1024, BS, 90, 0);
    await setupOk(['volume', 'import', vol, '--from', img, '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 'c1'], { env });
    const few = fs.readFileSync(img);
    few.fill(7, 0, 8 * BS);
    fs.writeFileSync(img, few);
    await setupOk(['volume', 'import', vol, '--from', img, '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 'c2'], { env });
    writeImage(img, 1024, BS, 91, 0);
    await setupOk(['volume', 'import', vol, '--from', img, '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 'c3'], { env });
    const cat = ['--catalog', at('c.json'), '--compress', 'none', '-q'];
    cliOk(['dump', vol, '--level', '0', '--snapshot', 'c1', '--to', at('c.l0'), ...cat], o);
    cliOk(['dump', vol, '--level', '1', '--snapshot', 'c2', '--to', `tape:${t1}`, '--new-tape', ...cat], o);
    l2 = cliJson<{ streamId: string }>(['dump', vol, '--level', '2', '--snapshot', 'c3', '--to', `tape:${t1},${t2}`, '--tape-size', '3M', '--new-tape', '--catalog', at('c.json'), '--compress', 'none'], o).streamId;
    expect(tree(t1)).toEqual(['file0001.tar', 'file0002.tar']);
    expect(tree(t2)).toEqual(['file0001.tar']);
    cliOk(['restore', '--from', at('c.l0'), '--to', base, '-q'], o);
  }, 120_000);

  const goesOn = () => new RegExp(`^imgstream: tape ${t1} file 2 \\(tape 1 of dump ${l2}\\) goes on on tape 2 of that dump, which was not given: the set ends in the middle of the dump \\(give its next tape after ${t1}`);

  it('restore refuses it before applying the complete dump before it: the volume is unchanged', async () => {
    const before = sha256File(base);
    expectOneLineError(await refused(['restore', '--from', `tape:${t1}`, '--to', base], o), 'restore from t1 alone', 3, goesOn());
    expect(sha256File(base), 'the level 1 on the tape was not applied').toBe(before);
    // a new volume does not appear either
    expectOneLineError(await refused(['restore', '--from', at('c.l0'), '--from', `tape:${t1}`, '--to', at('c-never.vol')], o), 'restore of l0 and t1 into a new volume', 3, goesOn());
    expect(fs.existsSync(at('c-never.vol'))).toBe(false);
  }, 60_000);

  it('verify refuses it too; the complete dump reads alone (#1), and the whole set reads', async () => {
    expectOneLineError(await refused(['verify', `tape:${t1}`], o), 'verify of t1 alone', 3, goesOn());
    expectOneLineError(await refused(['verify', `tape:${t1}#2`], o), 'verify of t1#2', 3, goesOn());
    expect(cliJson<{ streams: unknown[] }>(['verify', `tape:${t1}#1`], o).streams).toHaveLength(1);
    expect(cliJson<{ streams: unknown[] }>(['verify', `tape:${t1},${t2}`], o).streams).toHaveLength(2);
    const r = cliJson<{ streams: unknown[] }>(['restore', '--from', `tape:${t1},${t2}`, '--to', base], o);
    expect(r.streams).toHaveLength(2);
    expect(cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', base], o).snapshots.map((x) => x.name)).toEqual(['c1', 'c2', 'c3']);
  }, 60_000);

  it('catalog rebuild from the tape alone still records the complete dump and names the other as skipped', async () => {
    const r = cliJson<{ records: number; skipped: Array<{ stream: string; reason: string }> }>(['catalog', 'rebuild', '--from', `tape:${t1}`, '--catalog', at('c-rebuilt.json')], o);
    expect(r.skipped.map((x) => x.reason).join('; ')).toMatch(/continues on a next tape/);
  }, 60_000);
});

describe('a stream file given as a tape', () => {
  it('is refused (exit 4), the hint saying how each command takes a file: a reader without tape:, a dump with --to FILE', async () => {
    const file = at('e.l0');
    cliOk(['dump', vols[0], '--level', '0', '--to', file, '--catalog', at('e.json'), '-q'], o);
    for (const args of [['verify', `tape:${file}`], ['restore', '--from', `tape:${file}`, '--to', at('e-never.vol')], ['catalog', 'rebuild', '--from', `tape:${file}`, '--catalog', at('e-rebuilt.json')]]) {
      expectOneLineError(await refused(args, o), args[0], 4, new RegExp(`^imgstream: tape ${file}: not a directory or a tape device; give a directory \\(tape:DIR\\) or a tape device such as /dev/nst0; a stream file is read without tape: \\(verify ${file}, restore --from ${file}\\)$`));
    }
    expectOneLineError(await refused(['dump', vols[0], '--level', '0', '--to', `tape:${file}`, '--catalog', at('e.json')], o), 'dump', 4, /; for a single file use --to FILE$/);
  }, 60_000);
});

describe('a set missing a tape file', () => {
  // a level 0 on d-t1,d-t2 and a level 1 on d-t2,d-t3; then d-t2's first file (the level 0's tape 2) goes
  const [t1, t2, t3] = [at('d-t1'), at('d-t2'), at('d-t3')];
  let l1 = '';

  beforeAll(async () => {
    const vol = at('d.vol');
    const img = at('d.img');
    await setupOk(['volume', 'create', vol, '--size', '4M', '--volume-size', '16M', '-q'], { env });
    writeImage(img, 1024, BS, 95, 0);
    await setupOk(['volume', 'import', vol, '--from', img, '-q'], { env });
    const cat = ['--catalog', at('d.json'), '--compress', 'none', '--tape-size', '3M', '--new-tape', '-q'];
    cliOk(['dump', vol, '--level', '0', '--to', `tape:${t1},${t2}`, ...cat], o);
    writeImage(img, 1024, BS, 96, 0);
    await setupOk(['volume', 'import', vol, '--from', img, '-q'], { env });
    l1 = cliJson<{ streamId: string }>(['dump', vol, '--level', '1', '--to', `tape:${t2},${t3}`, ...cat.slice(0, -1)], o).streamId;
    expect([tree(t1), tree(t2), tree(t3)]).toEqual([['file0001.tar'], ['file0001.tar', 'file0002.tar'], ['file0001.tar']]);
    fs.rmSync(path.join(t2, 'file0001.tar'));
  }, 120_000);

  const missing = () => new RegExp(`^imgstream: tape ${t2}: tape file 1 is missing \\(it holds 1 of files 1 to 2\\)`);

  it('verify and catalog rebuild name the missing tape file (exit 3); rebuild records the dump that is whole', async () => {
    expectOneLineError(await refused(['verify', `tape:${t1},${t2},${t3}`], o), 'verify', 3, missing());
    const catalog = at('d-rebuilt.json');
    const r = await refused(['catalog', 'rebuild', '--from', `tape:${t1},${t2},${t3}`, '--catalog', catalog], o);
    expectOneLineError(r, 'catalog rebuild', 3, new RegExp(`${missing().source}: the 1 dump\\(s\\) whole on the media were recorded`));
    expect(r.stdout).toMatch(new RegExp(`^recorded ${l1.slice(0, 8)} level 1 .*\\(tape \\S+d-t2 file 2\\)$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^skipped tape ${t1} file 1: tape ${t2}: tape file 1 is missing`, 'm'));
    const list = cliJson<{ dumps: Array<{ id: string; level: number }> }>(['catalog', 'list', '--catalog', catalog], o);
    expect(list.dumps.map((d) => [d.id, d.level])).toEqual([[l1, 1]]);
    // the level 0's tapes alone: nothing whole to record, the missing file named all the same (3), the catalog unchanged
    const before = fs.readFileSync(catalog, 'utf8');
    expectOneLineError(await refused(['catalog', 'rebuild', '--from', `tape:${t1},${t2}`, '--catalog', catalog], o), 'catalog rebuild of t1,t2', 3, new RegExp(`^imgstream: nothing recorded: tape ${t2}: tape file 1 is missing`));
    expect(fs.readFileSync(catalog, 'utf8')).toBe(before);
  }, 60_000);
});

describe.runIf(process.getuid?.() === 0)('a tape device of the set that cannot be opened', () => {
  // a character device of a driver that is not there: opening it fails (ENXIO), as a drive
  // without a tape, in use or without permission does
  const dead = at('dead-drive');
  const base = at('d-base.vol');
  const made = spawnSync('mknod', [dead, 'c', '240', '7']).status === 0;

  it.runIf(made)('is named before anything is read or restored, from whichever source of the restore', async () => {
    cliOk(['dump', vols[0], '--level', '0', '--compress', 'none', '--to', at('d.l0'), '--catalog', at('d.json'), '-q'], o);
    cliOk(['restore', '--from', at('d.l0'), '--to', base, '-q'], o);
    await setupOk(['snapshot', 'create', vols[0], 'd2'], { env });
    cliOk(['dump', vols[0], '--level', '1', '--snapshot', 'd2', '--compress', 'none', '--to', at('d.l1'), '--catalog', at('d.json'), '-q'], o);
    const before = sha256File(base);
    // the level 1 from a file first, then a tape set whose drive cannot be opened: nothing applied
    const line = expectOneLineError(await refused(['restore', '--from', at('d.l1'), '--from', `tape:${dead}`, '--to', base], o), 'restore with a dead drive', 10, new RegExp(dead));
    expect(line).toMatch(/opening the tape device before reading the set/);
    expect(sha256File(base), 'the level 1 was not applied').toBe(before);
    // a drive that does not exist: the same, exit 3
    expectOneLineError(await refused(['restore', '--from', at('d.l1'), '--from', `tape:${at('no-drive')}`, '--to', base], o), 'restore with a missing drive', 3, /no such directory or device/);
    expect(sha256File(base)).toBe(before);
    // the drive later in a set: verify names it before reading the first tape
    expectOneLineError(await refused(['verify', `tape:${at('x1')},${dead}`], o), 'verify of a set ending on a dead drive', 10, new RegExp(dead));
  }, 60_000);
});

describe('--new-tape refused after it made a tape directory', () => {
  let full = '';
  beforeAll(() => {
    full = at('full-tape');
    cliOk(['dump', vols[1], '--level', '0', '--to', `tape:${full}`, '--new-tape', '--catalog', at('full.json'), '-q'], o);
  }, 60_000);

  it('leaves no directory it made: next tape not empty, the same tape twice, nested new directories', () => {
    const made = at('made');
    failedDump('dump continued onto a tape holding tape files', [vols[0], '--to', `tape:${made},${full}`, '--tape-size', '3M', '--new-tape'], 4, /already holds 1 tape file/);
    expect(fs.existsSync(made)).toBe(false);
    // refused before the dump writes tape 1 (it used to be refused on reaching tape 2)
    failedDump('dump onto the same new tape twice', [vols[0], '--to', `tape:${made},${made}`, '--tape-size', '3M', '--new-tape'], 4, /is given twice \(as tapes 1 and 2 of the set\)/);
    expect(fs.existsSync(made)).toBe(false);
    // only what the dump made goes: a directory that was there stays
    fs.mkdirSync(at('there'));
    failedDump('dump onto a nested new tape', [vols[0], '--to', `tape:${at('there/x/y')},${full}`, '--tape-size', '3M', '--new-tape'], 4, /already holds 1 tape file/);
    expect(tree(at('there'))).toEqual([]);
    failedDump('multiplexed dump continued onto a tape holding tape files', [...vols, '--multiplex', '--to', `tape:${made},${full}`, '--tape-size', '6M', '--new-tape'], 4, /already holds 1 tape file/);
    expect(fs.existsSync(made)).toBe(false);
    expect(tree(full)).toEqual(['file0001.tar']);
  }, 60_000);
});
