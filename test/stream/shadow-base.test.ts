// A dump's top made a shadow snapshot (`snapshot shadow`, a bookmark): retention gets its
// blocks back, the allocator reuses them, and the next level still dumps, carrying what
// changed plus every reused block the top holds; the chain restores exactly into a new
// volume, and onto a volume that holds the level 0 (the base becomes a shadow snapshot
// there too): in one CP when it has room to replace the base's blocks that the source
// reused at once, else in place, the volume marked unfinished until the last CP.
// Through a server as well. A deleted base is still refused, its hint naming snapshot
// shadow. The level 1 onto the level 0 killed -9 at each step and at random moments
// leaves the previous state or the new one, exact (or, in place, one marked unfinished
// that only the rerun opens). All from the CLI.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, finished, nonZeroBlocks, runCli, sleep, spawnCli, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { inProcessJson } from '../support/in-process.js';
import { expectClean, expectOneLineError, refused } from '../support/stream-cli.js';
import { startServer } from '../nbd/support.js';

const root = tempDir('imgstream-shadow-base-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const BS = 4096;
const BLOCKS = 1024; // a 4 MiB disk
const at = (f: string) => path.join(root, f);

interface Snap {
  name: string;
  shadow: boolean;
  reusedBlocks: number;
}

async function snapshots(vol: string): Promise<Snap[]> {
  return (await inProcessJson(['snapshot', 'list', vol], { env })).snapshots as Snap[];
}

function exported(ref: string, file: string): Buffer {
  fs.rmSync(at(file), { force: true });
  cliOk(['volume', 'export', ref, '--to', at(file)], { env });
  return fs.readFileSync(at(file));
}

/**
 * A volume with room for about two and a half disks: s0 dumped at level 0 and made a
 * shadow snapshot, then two whole new disks (the first kept as s1 unless `s1` is false,
 * then the active one) so the allocator reuses s0's blocks. Returns the images.
 */
function reusedShadowBase(prefix: string, opts: { s1?: boolean } = {}): { vol: string; catalog: string; images: Buffer[] } {
  const vol = at(`${prefix}.vol`);
  const catalog = at(`${prefix}.catalog.json`);
  cliOk(['volume', 'create', vol, '--size', String(BLOCKS * BS), '--volume-size', String(Math.floor(BLOCKS * 2.5) * BS)], { env });
  const images = [1, 2, 3].map((seed) => writeImage(at(`${prefix}-${seed}.raw`), BLOCKS, BS, seed * 31 + prefix.length, 0.1));
  cliOk(['volume', 'import', vol, '--from', at(`${prefix}-1.raw`)], { env });
  cliOk(['snapshot', 'create', vol, 's0'], { env });
  cliOk(['dump', vol, '--level', '0', '--snapshot', 's0', '--to', at(`${prefix}.l0`), '--catalog', catalog], { env });
  const shadow = cliJson(['snapshot', 'shadow', vol, 's0', '--json'], { env });
  expect(shadow).toMatchObject({ name: 's0', shadow: true, reusedBlocks: 0 });
  cliOk(['volume', 'import', vol, '--from', at(`${prefix}-2.raw`)], { env });
  if (opts.s1 !== false) cliOk(['snapshot', 'create', vol, 's1'], { env });
  cliOk(['volume', 'import', vol, '--from', at(`${prefix}-3.raw`)], { env });
  return { vol, catalog, images };
}

async function expectChainRestored(r: string, images: Buffer[], top: string, s1 = true): Promise<void> {
  if (s1) expect(exported(`${r}@s1`, 'check-s1.raw').equals(images[1]), 's1').toBe(true);
  expect(exported(`${r}@${top}`, 'check-top.raw').equals(images[2]), top).toBe(true);
  expect(exported(r, 'check-active.raw').equals(images[2]), 'active').toBe(true);
  const s0 = (await snapshots(r)).find((s) => s.name === 's0')!;
  expect(s0.shadow, 's0 is a shadow snapshot on the restored volume too').toBe(true);
  await expectClean(r, { env });
}

/**
 * reusedShadowBase(prefix), a level 1 at a new s2, the level 0 restored; then the level 1
 * restored onto a copy of that at `target`, timed (for the random kills).
 */
function levelOneOntoLevelZero(prefix: string, opts: { s1?: boolean } = {}) {
  const { vol, catalog, images } = reusedShadowBase(prefix, opts);
  cliOk(['snapshot', 'create', vol, 's2'], { env });
  cliOk(['dump', vol, '--level', '1', '--snapshot', 's2', '--to', at(`${prefix}.l1`), '--catalog', catalog], { env });
  cliOk(['restore', '--from', at(`${prefix}.l0`), '--to', at(`${prefix}-l0.vol`)], { env });
  const l0State = fs.readFileSync(at(`${prefix}-l0.vol`));
  const target = at(`${prefix}-target.vol`);
  const work = performance.now();
  fs.writeFileSync(target, l0State);
  const first = cliJson(['restore', '--from', at(`${prefix}.l1`), '--to', target, '--json'], { env });
  return { images, l0State, target, first, workMs: performance.now() - work };
}

interface KillRun {
  what: string;
  env: Record<string, string>;
  delayMs?: number;
}

/** Puts `state` back as `target`, then restores `stream` onto it, killed -9 as `run` says (at a crash point, or after delayMs); one that ends by itself must succeed. */
async function killedRestore(target: string, state: Buffer, stream: string, run: KillRun): Promise<void> {
  fs.writeFileSync(target, state);
  const child = spawnCli(['restore', '--from', stream, '--to', target, '-q'], { env: { ...env, ...run.env } });
  const done = finished(child);
  if (run.delayMs !== undefined) {
    await sleep(run.delayMs);
    child.kill('SIGKILL');
  }
  const r = await done;
  if (r.signal !== 'SIGKILL') expect(r.code, `${run.what}: ${r.stderr}`).toBe(0);
}

describe('a dump base made a shadow snapshot (snapshot shadow)', () => {
  it('has its blocks reused, and the next level still dumps and restores exactly into a new volume, and onto the level 0 without room to stage (in place)', async () => {
    const { vol, catalog, images } = reusedShadowBase('local');
    const s0 = (await snapshots(vol)).find((s) => s.name === 's0')!;
    expect(s0.reusedBlocks, 'the allocator took blocks of s0').toBeGreaterThan(0);
    cliOk(['snapshot', 'create', vol, 's2'], { env });
    const l1 = cliJson(['dump', vol, '--level', '1', '--snapshot', 's2', '--to', at('local.l1'), '--catalog', catalog, '--json'], { env });
    expect(l1).toMatchObject({ level: 1, base: 's0', top: 's2' });
    // what changed since s0 is two whole disks (s1 and s2), none of it left out for reusing s0's VBNs
    expect(l1.blocks).toBeGreaterThanOrEqual(nonZeroBlocks(images[1], BS) + nonZeroBlocks(images[2], BS));

    // the chain into a new volume
    cliOk(['restore', '--from', at('local.l0'), '--from', at('local.l1'), '--to', at('local-new.vol')], { env });
    await expectChainRestored(at('local-new.vol'), images, 's2');
    expect((await snapshots(at('local-new.vol'))).find((s) => s.name === 's0')!.reusedBlocks).toBeGreaterThan(0);

    // onto a volume that holds the level 0 (the same size as the source): the blocks the
    // source reused are held there by s0, which is also its active disk; replacing them in
    // one CP takes a free block each for its journal, which a volume as full as its source
    // lacks: they are written in place, the CP before marking the restore unfinished
    cliOk(['restore', '--from', at('local.l0'), '--to', at('local-step.vol')], { env });
    fs.copyFileSync(at('local-step.vol'), at('local-step2.vol'));
    const step = cliJson(['restore', '--from', at('local.l1'), '--to', at('local-step.vol'), '--json'], { env });
    expect(step.streams[0]).toMatchObject({ separateDropCp: true });
    expect(step.streams[0].activeInPlace, 'blocks of the active disk rewritten in place').toBeGreaterThan(0);
    // and said so in the line
    expect(cliOk(['restore', '--from', at('local.l1'), '--to', at('local-step2.vol')], { env }).stdout).toMatch(new RegExp(`; ${step.streams[0].activeInPlace} blocks of the active disk rewritten in place \\(no room to stage them\\)$`, 'm'));
    await expectChainRestored(at('local-step.vol'), images, 's2');
    expect(cliJson(['volume', 'info', at('local-step.vol'), '--json'], { env }).restoreUnfinished).toBe(false);

    // a level 2 on top, whose base (s2) is regular, after retention deleted s1, onto the chain's restore
    cliOk(['snapshot', 'delete', vol, 's1'], { env });
    writeImage(at('local-4.raw'), BLOCKS, BS, 404, 0.1);
    cliOk(['volume', 'import', vol, '--from', at('local-4.raw')], { env });
    cliOk(['snapshot', 'create', vol, 's3'], { env });
    cliOk(['dump', vol, '--level', '2', '--snapshot', 's3', '--to', at('local.l2'), '--catalog', catalog], { env });
    cliOk(['restore', '--from', at('local.l2'), '--to', at('local-new.vol')], { env });
    expect(exported(`${at('local-new.vol')}@s3`, 'check-s3.raw').equals(fs.readFileSync(at('local-4.raw')))).toBe(true);
    expect((await snapshots(at('local-new.vol'))).map((s) => s.name)).toEqual(['s0', 's2', 's3']);
    await expectClean(at('local-new.vol'), { env });
  });

  it('the level 1 onto the level 0 killed -9 at each step of its CP and at random moments: the previous state (s0 regular) or the new one, exact and clean; the rerun works', async () => {
    // (no s1: the volume restored from the level 0 has room to replace s0's reused blocks at once)
    const { images, l0State, target, first, workMs } = levelOneOntoLevelZero('kill', { s1: false });
    expect(first.streams[0], 's0\'s reused blocks replaced in the CP\'s journal').toMatchObject({ separateDropCp: false });
    expect(first.streams[0].stagedBlocks).toBeGreaterThan(0);
    await expectChainRestored(target, images, 's2', false);
    const tally = { old: 0, new: 0 };
    const runs: KillRun[] = [
      ...['journal', 'root', 'apply', 'clean-root'].map((step) => ({ what: `crash at ${step}`, env: { IMGSTREAM_CRASH_AT: step } })),
      ...[0.3, 0.55, 0.85].map((f) => ({ what: `kill ${Math.round(f * workMs)} ms in`, env: {}, delayMs: Math.round(f * workMs) })),
    ];
    for (const run of runs) {
      await killedRestore(target, l0State, at('kill.l1'), run);
      const names = (await snapshots(target)).map((x) => x.name);
      if (names.length === 1) {
        expect((await snapshots(target))[0], run.what).toMatchObject({ name: 's0', shadow: false, reusedBlocks: 0 });
        expect(exported(`${target}@s0`, 'kill-s0.raw').equals(images[0]), `${run.what}: s0 as the level 0 left it`).toBe(true);
        await expectClean(target, { env });
        tally.old++;
      } else {
        expect(names, run.what).toEqual(['s0', 's2']);
        await expectChainRestored(target, images, 's2', false);
        tally.new++;
      }
      if (run.env.IMGSTREAM_CRASH_AT) expect([run.what, names.length === 1 ? 'old' : 'new']).toEqual([run.what, run.env.IMGSTREAM_CRASH_AT === 'journal' ? 'old' : 'new']);
      const again = cliJson(['restore', '--from', at('kill.l1'), '--to', target, '--json'], { env });
      expect(again.streams.length + again.held.length, `${run.what}: the rerun`).toBe(1);
      await expectChainRestored(target, images, 's2', false);
    }
    expect(tally.old, 'kills that left the previous state').toBeGreaterThan(0);
    expect(tally.new, 'kills that left the new state').toBeGreaterThan(0);
  });

  it('the level 1 onto the level 0 without room, rewriting the active disk in place, killed -9 at its steps and at random moments: the previous state, the new one, or one marked unfinished that only the rerun opens', async () => {
    const { images, l0State, target, first, workMs } = levelOneOntoLevelZero('inplace');
    expect(first.streams[0].activeInPlace, 'the in-place path').toBeGreaterThan(0);
    await expectChainRestored(target, images, 's2');
    const tally = { old: 0, unfinished: 0, new: 0 };
    const runs: Array<KillRun & { want?: keyof typeof tally }> = [
      { what: 'crash at the drop CP\'s journal', env: { IMGSTREAM_CRASH_AT: 'journal' }, want: 'old' },
      { what: 'crash at the drop CP\'s root', env: { IMGSTREAM_CRASH_AT: 'root' }, want: 'unfinished' },
      { what: 'crash half way through the writes in place', env: { IMGSTREAM_CRASH_AT: 'restore-in-place' }, want: 'unfinished' },
      ...[0.35, 0.6, 0.85].map((f) => ({ what: `kill ${Math.round(f * workMs)} ms in`, env: {}, delayMs: Math.round(f * workMs) })),
    ];
    for (const run of runs) {
      await killedRestore(target, l0State, at('inplace.l1'), run);
      const info = (await inProcessJson(['volume', 'info', target], { env })) as { restoreUnfinished: boolean };
      const snaps = await snapshots(target);
      let state: keyof typeof tally;
      if (info.restoreUnfinished) {
        state = 'unfinished';
        // its snapshots listed; the disk, snapshots and all, opened by nothing but a restore
        expect(snaps.map((x) => [x.name, x.shadow]), run.what).toEqual([['s0', true]]);
        // (every command the first time, an export after: each is a process)
        const commands = [['volume', 'export', target, '--to', at('inplace-x.raw')], ['dump', target, '--level', '0', '--to', at('inplace-x.l0'), '--catalog', at('inplace-x.json')], ['snapshot', 'create', target, 'x'], ['serve', 'nbd', target, '--socket', at('inplace.sock')], ['protect', target, '--to', at('inplace.cdp')]];
        for (const args of tally.unfinished === 0 ? commands : commands.slice(0, 1)) {
          expectOneLineError(await refused(args, { env }), `${run.what}: ${args[0]} ${args[1]}`, 7, /a restore into it stopped while it rewrote the active disk in place \(its regular snapshots are whole, its disk is part old, part new\); run that restore again to finish it \(imgstream restore --to \S+, with the same --from or --as-of\).*volume export \S+@SNAPSHOT exports a regular snapshot$/);
        }
        // (protect too: it said the volume had no write journal, exit 3, and with one made the destination first)
        expect(fs.existsSync(at('inplace-x.raw')) || fs.existsSync(at('inplace-x.l0')) || fs.existsSync(at('inplace.cdp'))).toBe(false);
        // a check reads its root records and snapshots, passes over the active disk (its map
        // may hold new data already) and says it waits for the rerun
        const checked = (await inProcessJson(['volume', 'check', target], { env })) as { ok: boolean; restoreUnfinished: boolean; trees: Array<{ name: string; skipped?: string }> };
        expect(checked, `${run.what}: volume check`).toMatchObject({ ok: true, restoreUnfinished: true, problems: [] });
        expect(checked.trees[0], `${run.what}: volume check`).toMatchObject({ name: 'active', skipped: expect.stringMatching(/rewrote the active disk in place/) });
        if (tally.unfinished === 0) expect(cliOk(['volume', 'check', target], { env }).stdout).toMatch(/: snapshots clean, but a restore into it is unfinished: .*run that restore again to finish it\n$/);
        // a snapshot's export is let through (only the active disk is mixed): s0, a shadow one
        // with blocks reused now, is refused as on any volume, for that
        expectOneLineError(await refused(['volume', 'export', `${target}@s0`, '--to', at('inplace-x.raw')], { env }), `${run.what}: export of s0`, 4, /shadow snapshot "s0" had \d+ blocks reused and no longer holds a consistent image/);
      } else if (snaps.length === 1) {
        state = 'old';
        expect(snaps[0], run.what).toMatchObject({ name: 's0', shadow: false, reusedBlocks: 0 });
        expect(exported(target, 'inplace-s0.raw').equals(images[0]), `${run.what}: the level 0's disk`).toBe(true);
        await expectClean(target, { env });
      } else {
        state = 'new';
        await expectChainRestored(target, images, 's2');
      }
      tally[state]++;
      if (run.want) expect([run.what, state]).toEqual([run.what, run.want]);
      const again = cliJson(['restore', '--from', at('inplace.l1'), '--to', target, '--json'], { env });
      expect(again.streams.length + again.held.length, `${run.what}: the rerun`).toBe(1);
      await expectChainRestored(target, images, 's2');
      expect(((await inProcessJson(['volume', 'info', target], { env })) as { restoreUnfinished: boolean }).restoreUnfinished).toBe(false);
    }
    expect(tally.unfinished, 'kills that left the restore unfinished').toBeGreaterThan(0);
  });

  it('a restore --as-of killed while it rewrote the active disk in place is finished by the same restore --as-of', async () => {
    const { images, l0State, target } = levelOneOntoLevelZero('asof');
    fs.writeFileSync(target, l0State);
    const restoreAsOf = ['restore', '--to', target, '--as-of', 's2', '--catalog', at('asof.catalog.json')];
    // what a restore killed between writing its note and renaming it into place leaves (of a
    // process gone), removed when the note is written and when it is cleared; a live writer's stays
    const note = path.join(path.dirname(target), `.${path.basename(target)}.restore-unfinished-stream`);
    const leftBy = (pid: number) => `${note}.${pid}.tmp`;
    const gone = [spawnSync('true').pid!, spawnSync('true').pid!];
    fs.writeFileSync(leftBy(gone[0]), '{"stream"');
    fs.writeFileSync(leftBy(process.pid), '{"stream"');
    const r = runCli([...restoreAsOf, '-q'], { env: { ...env, IMGSTREAM_CRASH_AT: 'restore-in-place' } });
    expect(r.signal, 'killed half way through its writes in place').toBe('SIGKILL');
    expect(fs.existsSync(note), 'the note the killed restore wrote').toBe(true);
    expect(fs.existsSync(leftBy(gone[0])), 'a dead restore\'s temporary note, when the note is written').toBe(false);
    fs.writeFileSync(leftBy(gone[1]), '{"stream"');
    expect(((await inProcessJson(['volume', 'info', target], { env })) as { restoreUnfinished: boolean }).restoreUnfinished).toBe(true);
    // as of s0, which it holds: not "nothing to restore" while it waits for the level 1
    expectOneLineError(await refused(['restore', '--to', target, '--as-of', 's0', '--catalog', at('asof.catalog.json')], { env }), 'as of s0', 4, /stopped while it rewrote the active disk in place, and the chain as of s0 brings nothing it lacks: finishing that restore needs the stream it stopped in, file \S+asof\.l1 \(dump [0-9a-f]{8}, top snapshot "s2", base "s0"\)/);
    // the catalog's chain is found from the unfinished volume's snapshots: the level 1 goes on from s0
    const again = cliJson([...restoreAsOf, '--json'], { env });
    expect(again.streams.map((x: { top: string }) => x.top)).toEqual(['s2']);
    expect(((await inProcessJson(['volume', 'info', target], { env })) as { restoreUnfinished: boolean }).restoreUnfinished).toBe(false);
    await expectChainRestored(target, images, 's2');
    expect(fs.existsSync(note), 'the note, once the restore is finished').toBe(false);
    expect(fs.existsSync(leftBy(gone[1])), 'a dead restore\'s temporary note, when the note is cleared').toBe(false);
    expect(fs.existsSync(leftBy(process.pid)), 'a live writer\'s').toBe(true);
  });

  it('an unfinished restore keeps the regular snapshots whole: one older than the base exports exactly from it, and the rerun finishes', async () => {
    // k, then s0 (k with 300 blocks changed), dumped at level 0 and made a shadow one; two
    // new disks, which reuse s0's own blocks (those k does not hold too)
    const vol = at('keep.vol');
    const catalog = at('keep.catalog.json');
    cliOk(['volume', 'create', vol, '--size', String(BLOCKS * BS), '--volume-size', String(Math.floor(BLOCKS * 3.375) * BS)], { env });
    const k = writeImage(at('keep-k.raw'), BLOCKS, BS, 501, 0);
    const s0 = Buffer.from(k);
    for (let i = 0; i < 300; i++) s0.writeUInt32LE(0xa5a5 + i, ((i * 7) % BLOCKS) * BS + 8);
    fs.writeFileSync(at('keep-s0.raw'), s0);
    cliOk(['volume', 'import', vol, '--from', at('keep-k.raw')], { env });
    cliOk(['snapshot', 'create', vol, 'k'], { env });
    cliOk(['volume', 'import', vol, '--from', at('keep-s0.raw')], { env });
    cliOk(['snapshot', 'create', vol, 's0'], { env });
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's0', '--to', at('keep.l0'), '--catalog', catalog], { env });
    cliOk(['snapshot', 'shadow', vol, 's0'], { env });
    const images = [s0, writeImage(at('keep-1.raw'), BLOCKS, BS, 502, 0), writeImage(at('keep-2.raw'), BLOCKS, BS, 503, 0)];
    cliOk(['volume', 'import', vol, '--from', at('keep-1.raw')], { env });
    cliOk(['snapshot', 'create', vol, 's1'], { env });
    cliOk(['volume', 'import', vol, '--from', at('keep-2.raw')], { env });
    cliOk(['snapshot', 'create', vol, 's2'], { env });
    expect((await snapshots(vol)).find((x) => x.name === 's0')!.reusedBlocks, 's0\'s own blocks reused').toBeGreaterThan(0);
    cliOk(['dump', vol, '--level', '1', '--snapshot', 's2', '--to', at('keep.l1'), '--catalog', catalog], { env });
    const target = at('keep-target.vol');
    cliOk(['restore', '--from', at('keep.l0'), '--to', target], { env });
    const r = runCli(['restore', '--from', at('keep.l1'), '--to', target, '-q'], { env: { ...env, IMGSTREAM_CRASH_AT: 'restore-in-place' } });
    expect(r.signal, 'killed half way through its writes in place').toBe('SIGKILL');
    expect(((await inProcessJson(['volume', 'info', target], { env })) as { restoreUnfinished: boolean }).restoreUnfinished).toBe(true);
    expect(exported(`${target}@k`, 'keep-k.out').equals(k), 'k, regular, exports exactly from the unfinished volume').toBe(true);
    // and a check walks k's tree, found whole
    const checked = (await inProcessJson(['volume', 'check', target], { env })) as { ok: boolean; trees: Array<{ name: string; skipped?: string; dataBlocks: number; problems: string[] }> };
    expect(checked.ok).toBe(true);
    expect(checked.trees.find((t) => t.name === 'k')).toMatchObject({ problems: [] });
    expect(checked.trees.find((t) => t.name === 'k')!.skipped).toBeUndefined();
    expect(checked.trees.find((t) => t.name === 'k')!.dataBlocks).toBeGreaterThan(0);
    // the level 0 again brings nothing the volume lacks: refused, naming the stream the restore stopped in
    expectOneLineError(await refused(['restore', '--from', at('keep.l0'), '--to', target], { env }), 'the level 0 onto the unfinished volume', 4, /a restore into it stopped while it rewrote the active disk in place, and file \S+keep\.l0 brings nothing it lacks: finishing that restore needs the stream it stopped in, file \S+keep\.l1 \(dump [0-9a-f]{8}, top snapshot "s2", base "s0"\)/);
    expect(((await inProcessJson(['volume', 'info', target], { env })) as { restoreUnfinished: boolean }).restoreUnfinished).toBe(true);
    cliOk(['restore', '--from', at('keep.l1'), '--to', target], { env });
    expect(fs.readdirSync(root).filter((f) => f.startsWith('.keep-target.vol.')), 'the note of the stream and the stage file, gone').toEqual([]);
    expect(exported(`${target}@k`, 'keep-k.out').equals(k)).toBe(true);
    await expectChainRestored(target, images, 's2');
  });

  it('through a server: snapshot shadow and the level 1 go through its control socket', async () => {
    const { vol, catalog, images } = reusedShadowBase('served');
    const server = await startServer(vol, ['--socket', at('served.sock')], locks);
    try {
      // s1, made a shadow one through the server, is no base of anything: it stays as it is
      expect(cliJson(['snapshot', 'shadow', vol, 's1', '--json'], { env })).toMatchObject({ name: 's1', shadow: true });
      expect(cliOk(['snapshot', 'shadow', vol, 's1'], { env }).stdout).toMatch(/^snapshot s1 is a shadow snapshot already$/m);
      const l1 = cliJson(['dump', vol, '--level', '1', '--to', at('served.l1'), '--catalog', catalog, '--json'], { env });
      expect(l1).toMatchObject({ level: 1, base: 's0' });
      cliOk(['restore', '--from', at('served.l0'), '--from', at('served.l1'), '--to', at('served-new.vol')], { env });
      expect(exported(at('served-new.vol'), 'served-active.raw').equals(images[2])).toBe(true);
      expect(exported(`${at('served-new.vol')}@s1`, 'served-s1.raw').equals(images[1])).toBe(true);
      await expectClean(at('served-new.vol'), { env });
    } finally {
      await server.stop();
    }
  });

  it('refuses a master snapshot, a mirror update\'s own and a missing one, changing nothing; a deleted base is still refused, its hint naming snapshot shadow', async () => {
    const vol = at('refuse.vol');
    const catalog = at('refuse.catalog.json');
    cliOk(['volume', 'create', vol, '--size', String(64 * BS)], { env });
    writeImage(at('refuse.raw'), 64, BS, 9, 0.1);
    cliOk(['volume', 'import', vol, '--from', at('refuse.raw')], { env });
    cliOk(['snapshot', 'create', vol, 'm1', '--master'], { env });
    cliOk(['snapshot', 'create', vol, 'base'], { env });
    cliOk(['mirror', 'update', vol, '--to', at('refuse-mirror.vol'), '--state', at('refuse-mirror.json')], { env });
    const list = await snapshots(vol);
    const mirrors = list.filter((s) => s.name.startsWith('mirror.'));
    expect(mirrors).toHaveLength(1);
    expectOneLineError(await refused(['snapshot', 'shadow', vol, 'm1'], { env }), 'a master snapshot', 4, /"m1" is a master snapshot: replicas synchronise to it/);
    expectOneLineError(await refused(['snapshot', 'shadow', vol, mirrors[0].name], { env }), 'a mirror update\'s snapshot', 4, /is a mirror update's own/);
    expectOneLineError(await refused(['snapshot', 'shadow', vol, 'nope'], { env }), 'a missing snapshot', 3, /no snapshot named "nope"/);
    expect(await snapshots(vol)).toEqual(list);

    cliOk(['dump', vol, '--level', '0', '--snapshot', 'base', '--to', at('refuse.l0'), '--catalog', catalog], { env });
    cliOk(['snapshot', 'delete', vol, 'base'], { env });
    cliOk(['snapshot', 'create', vol, 'next'], { env });
    const r = await refused(['dump', vol, '--level', '1', '--snapshot', 'next', '--to', at('refuse.l1'), '--catalog', catalog], { env });
    expectOneLineError(r, 'a deleted base', 3, /snapshot "base" .* no longer exists \(take a lower level instead: --level 0; .*imgstream snapshot shadow /);
    expect(fs.existsSync(at('refuse.l1'))).toBe(false);
  });
});
