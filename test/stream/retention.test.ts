// Restore after snapshot retention, through the built CLI, as issue 18 found it: a
// volume with s1, s2, s3; a level 0 at s3; s1 and s2 deleted; imports that make the
// allocator reuse their blocks; s6; a level 1 at s6. The chain restores into a new volume
// and onto the level 0's volume, from a tape and picked by --as-of, dropping s1 and s2 (in the CP that installs s6, or in
// one just before it when the volume is too full to journal the staged blocks); kill -9
// of that restore, at random moments and at each CP step, leaves the volume at one of
// those CPs, never between; a snapshot taken on the destination after its base is
// refused; a stream carrying a block twice is refused
// as damaged (exit 9), naming the user's path and never the hidden temporary one.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, runCli, sleep } from '../support/cli.js';
import { randomImage, rng, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { cliEnv, dump, exportShas, expectClean, expectOneLineError, ok, snapshotNames } from '../support/stream-cli.js';
import { FRAME_BYTES, PREAMBLE_BYTES, RecordType } from '../../src/format/image-stream.js';

const BS = 4096;
const root = tempDir('imgstream-retention-cli-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 120_000 };
const p = (name: string) => path.join(root, name);
const random = rng(0x7e7a1);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const src = p('src.vol');
let sha: Record<string, string> = {};

beforeAll(async () => {
  // 2 MiB disk in a 7 MiB volume: three whole versions fill it, so after s1 and s2 go the
  // next imports must take their blocks
  await setupOk(['volume', 'create', src, '--size', '2M', '--volume-size', '7M', '--max-snapshots', '8'], { env });
  const raw = p('img.raw');
  let seed = 1;
  const version = async () => {
    fs.writeFileSync(raw, randomImage(512, BS, seed++, 0.1));
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  };
  for (const s of ['s1', 's2', 's3']) {
    await version();
    await setupOk(['snapshot', 'create', src, s, '-q'], { env });
  }
  dump(src, 0, 's3', p('l0'), env.IMGSTREAM_CATALOG, ['--compress', 'none'], o);
  dump(src, 0, 's3', `tape:${p('tape')}`, p('tape-catalog.json'), ['--new-tape'], o);
  await setupOk(['snapshot', 'delete', src, 's1', '-q'], { env });
  await setupOk(['snapshot', 'delete', src, 's2', '-q'], { env });
  await version();
  await version();
  await setupOk(['snapshot', 'create', src, 's6', '-q'], { env });
  dump(src, 1, 's6', p('l1'), env.IMGSTREAM_CATALOG, ['--compress', 'none'], o);
  dump(src, 1, 's6', `tape:${p('tape')}`, p('tape-catalog.json'), [], o);
  sha = await exportShas(src, ['s3', 's6']);
  ok(['restore', '--from', p('l0'), '--to', p('base.vol'), '-q'], o);
}, 180_000);

async function expectAtS6(vol: string): Promise<void> {
  expect(await snapshotNames(vol, o)).toEqual(['s3', 's6']);
  expect(await exportShas(vol, ['s3', 's6', null], o)).toEqual({ s3: sha.s3, s6: sha.s6, active: sha.s6 });
  await expectClean(vol, o);
}

describe('restore after the source deleted snapshots', () => {
  it('the chain restores into a new volume, dropping what the source deleted', async () => {
    const r = ok(['restore', '--from', p('l0'), '--from', p('l1'), '--to', p('new.vol')], o);
    expect(r.stdout).toMatch(/dropped s1, s2 \(deleted on the source\)/);
    await expectAtS6(p('new.vol'));
    expect(fs.readdirSync(root).filter((n) => n.includes('restor'))).toEqual([]); // no stage or temporary file left
  });

  it('the level 1 restores onto the volume its level 0 made', async () => {
    fs.copyFileSync(p('base.vol'), p('onto.vol'));
    expect(await snapshotNames(p('onto.vol'), o)).toEqual(['s1', 's2', 's3']);
    const r = ok(['restore', '--from', p('l1'), '--to', p('onto.vol'), '--json'], o);
    const json = JSON.parse(r.stdout);
    expect(json.streams[0].dropped).toEqual(['s1', 's2']);
    expect(json.streams[0].stagedBlocks).toBeGreaterThan(0); // blocks did land on s1's and s2's VBNs
    await expectAtS6(p('onto.vol'));
  });

  it('the same chain from a tape and picked from the catalog by --as-of', async () => {
    const tape = p('tape');
    expect(ok(['restore', '--from', `tape:${tape}`, '--to', p('from-tape.vol')], o).stdout).toMatch(/dropped s1, s2/);
    await expectAtS6(p('from-tape.vol'));
    expect(ok(['restore', '--as-of', 's6', '--to', p('as-of.vol'), '--catalog', env.IMGSTREAM_CATALOG], o).stdout).toMatch(/dropped s1, s2/);
    await expectAtS6(p('as-of.vol'));
  });

  it('a snapshot taken on the destination after its base is refused, naming it, and nothing changes', async () => {
    fs.copyFileSync(p('base.vol'), p('mine.vol'));
    await setupOk(['snapshot', 'create', p('mine.vol'), 'mine', '-q'], { env });
    const before = fs.readFileSync(p('mine.vol'));
    const r = runCli(['restore', '--from', p('l1'), '--to', p('mine.vol')], o);
    expectOneLineError(r, 'restore onto a volume with its own newer snapshot', 4, /"mine" taken after this stream's base snapshot "s3"/);
    expect(fs.readFileSync(p('mine.vol')).equals(before)).toBe(true);
    // deleting it is what the hint says; then the level 1 goes on
    await setupOk(['snapshot', 'delete', p('mine.vol'), 'mine', '-q'], { env });
    ok(['restore', '--from', p('l1'), '--to', p('mine.vol'), '-q'], o);
    await expectAtS6(p('mine.vol'));
  });

  it('kill -9 at random moments and at each CP step leaves the previous CP or the new one, and a rerun completes', async () => {
    const work = p('killed.vol');
    const locks = p('locks-kill');
    const outcomes: string[] = [];
    const crashes = ['journal', 'root', 'apply', 'clean-root'];
    for (let round = 0; round < 6; round++) {
      fs.copyFileSync(p('base.vol'), work);
      fs.rmSync(locks, { recursive: true, force: true });
      const crash = round < crashes.length ? crashes[round] : undefined;
      const child = spawn(process.execPath, [CLI_BIN, 'restore', '--from', p('l1'), '--to', work, '-q'], {
        env: cliEnv({ ...env, IMGSTREAM_LOCK_DIR: locks, ...(crash ? { IMGSTREAM_CRASH_AT: crash } : {}) }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const done = finished(child, 60_000);
      if (!crash) {
        await sleep(150 + Math.floor(random() * 350));
        child.kill('SIGKILL');
      }
      const r = await done;
      const names = await snapshotNames(work, o);
      outcomes.push(`${crash ?? 'random'}:${r.signal ?? r.code}:${names.join(',')}`);
      // the previous CP; the CP that dropped the deleted snapshots first when the volume had
      // no room to journal the staged blocks; or the new one
      if (names.join(',') === 's1,s2,s3' || names.join(',') === 's3') {
        expect(await exportShas(work, ['s3', null], o)).toEqual({ s3: sha.s3, active: sha.s3 });
        await expectClean(work, o);
      } else expect(names, outcomes.join(' ')).toEqual(['s3', 's6']);
      // whatever it left, the same restore run again completes it (the level 1 is already in when s6 is there)
      if (names.includes('s6')) await expectAtS6(work);
      else {
        ok(['restore', '--from', p('l1'), '--to', work, '-q'], { ...o, env: { ...env, IMGSTREAM_LOCK_DIR: locks } });
        await expectAtS6(work);
      }
    }
    // the crash points killed it; the CP steps after the root record commit the new state
    expect(outcomes.slice(0, 4).every((x) => x.includes('SIGKILL'))).toBe(true);
    expect(outcomes.filter((x) => x.endsWith(':s1,s2,s3')).length).toBeGreaterThan(0);
  }, 240_000);

  it('a stream carrying a block twice is refused as damaged, naming the user path', async () => {
    // insert a copy of the first DATA record right after it (the duplicated region the adversarial run made)
    const bytes = fs.readFileSync(p('l0'));
    let at = PREAMBLE_BYTES;
    while (bytes[at] !== RecordType.Data) at += FRAME_BYTES + bytes.readUInt32LE(at + 4);
    const end = at + FRAME_BYTES + bytes.readUInt32LE(at + 4);
    fs.writeFileSync(p('dup.l0'), Buffer.concat([bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end)]));
    const target = p('dup.vol');
    const r = runCli(['restore', '--from', p('dup.l0'), '--to', target], o);
    const line = expectOneLineError(r, 'restore of a stream with a duplicated record', 9, /twice/);
    expect(line).not.toMatch(/restoring-/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(root).filter((n) => n.startsWith('.dup.vol'))).toEqual([]);
    expectOneLineError(runCli(['verify', p('dup.l0')], o), 'verify of the same stream', 9);
  });
});
