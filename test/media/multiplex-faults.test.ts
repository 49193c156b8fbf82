// Multiplexed tape dumps as users get them wrong (found by trying the CLI): a dump to
// tape:/dev/null (a drive that keeps nothing) is no base for a later level; the same
// volume given twice under another name (a symbolic link); the backup log of a tape set
// naming a source not yet on that tape as one that goes on later, not as failed;
// --volume by uuid on a pipe when two volumes (a copy and its original) share it; verify
// and catalog rebuild of such a file through a pipe (refused, naming a seekable copy); by path
// from another directory than the dump's; and a uuid typed in capitals; by its real path
// when dumped through a link; a tape directory and a link to it given as two tapes. verify of a file
// with one stream damaged names the streams that passed too; with its backup log damaged
// (the streams whole) it says so. A SIGINT after every source was read (a real signal to
// a real process, held there by IMGSTREAM_PAUSE_AT) came too late to stop the dump: it
// completes and is recorded, as a single dump or one to S3 from its trailer on, and one
// line on stderr says so (it used to exit 0 without a word). One that stops sources still
// read says how many parts of each stay behind its aborted member, and verify passes the
// file, naming the streams given up.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incompressibleImage, tempDir } from '../support/images.js';
import { inProcess, setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';
import { exportSha, expectOneLineError, sh, shellQuote } from '../support/stream-cli.js';
import { CLI_BIN, finished, sleep, spawnCli, stderrLines } from '../support/cli.js';

const BS = 4096;
const BLOCKS = 512; // 2 MiB logical disks
const root = tempDir('imgstream-mux-faults-');
const catalog = path.join(root, 'catalog.json');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: catalog };
const at = (f: string) => path.join(root, f);
const [A, B, C] = ['a', 'b', 'c'].map((n) => at(`${n}.vol`));
const shas: Record<string, string> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Random (incompressible) blocks in 60% of the disk: each stream takes a few parts. */
const image = (seed: number): Buffer => incompressibleImage(BLOCKS, BS, seed);

async function volumeWith(vol: string, seed: number, snap: string): Promise<void> {
  await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`, '-q'], { env });
  fs.writeFileSync(`${vol}.raw`, image(seed));
  await setupOk(['volume', 'import', vol, '--from', `${vol}.raw`, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, snap, '-q'], { env });
}

const snapshots = async (vol: string): Promise<string[]> =>
  (JSON.parse((await inProcess(['snapshot', 'list', vol, '--json'], { env })).stdout) as { snapshots: Array<{ name: string }> }).snapshots.map((s) => s.name);
const recorded = async (): Promise<number> => (fs.existsSync(catalog) ? (JSON.parse((await inProcess(['catalog', 'list', '--json'], { env })).stdout) as { dumps: unknown[] }).dumps.length : 0);

beforeAll(async () => {
  await volumeWith(A, 1, 's1');
  await volumeWith(B, 2, 's1');
  await volumeWith(C, 3, 's1');
  for (const v of [A, B, C]) shas[v] = await exportSha(v, { env }); // the active disk: s1's
});

describe('a multiplexed dump', () => {
  it('to tape:/dev/null (a drive that keeps nothing), or a single dump there, records nothing and deletes its snapshot: no later level builds on it', async () => {
    const before = await recorded();
    const mux = await runBundled(['dump', A, B, '--level', '0', '--to', 'tape:/dev/null', '--multiplex'], { env });
    expect(mux.code, mux.stderr).toBe(0);
    expect(mux.stdout.match(/not recorded in the catalog \(tape:\/dev\/null keeps nothing: no later level builds on it\), its snapshot deleted/g)).toHaveLength(2);
    const single = await runBundled(['dump', C, '--level', '0', '--to', 'tape:/dev/null'], { env });
    expect(single.code, single.stderr).toBe(0);
    expect(single.stdout).toMatch(/not recorded in the catalog/);
    expect(await recorded()).toBe(before);
    for (const v of [A, B, C]) expect(await snapshots(v)).toEqual(['s1']);
    // so a level 1 has no base: refused, naming why (not a level 1 of nothing on a lost tape)
    const l1 = await runBundled(['dump', A, '--level', '1', '--to', at('a.l1')], { env });
    expectOneLineError(l1, 'a level 1 after the only level 0 went to tape:/dev/null', 3, /no dump of this volume below level 1/);
  });

  it('refuses one volume given twice under another name (a symbolic link), before anything is written', async () => {
    fs.symlinkSync(A, at('alink.vol'));
    const r = await runBundled(['dump', A, at('alink.vol'), '--level', '0', '--to', `tape:${at('twice')}`, '--new-tape', '--multiplex'], { env });
    expectOneLineError(r, 'a volume and a link to it', 2, /volumes \S+a\.vol and \S+alink\.vol are the same volume/);
    expect(fs.existsSync(at('twice'))).toBe(false);
    expect(await snapshots(A)).toEqual(['s1']);
  });

  it("spanning tapes: a source not yet on a tape is logged there as going on later (not failed), and every stream restores exactly", async () => {
    const tapes = ['t1', 't2', 't3', 't4'].map(at);
    for (const t of tapes) fs.mkdirSync(t);
    const r = await runBundled(['dump', A, B, C, '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes.join(',')}`, '--tape-size', '1200K', '--multiplex', '--catalog', at('span.json')], { env });
    expect(r.code, r.stderr).toBe(0);
    const statuses: string[][] = [];
    for (const t of tapes) {
      if (fs.readdirSync(t).length === 0) continue;
      const log = JSON.parse((await runBundled(['tape', 'log', `tape:${t}#1`, '--json'], { env })).stdout) as { log: { header: { sources: Array<{ status: string; parts: number }> } } };
      statuses.push(log.log.header.sources.map((s) => s.status));
    }
    expect(statuses.length).toBeGreaterThanOrEqual(3);
    // the first tape cannot hold the three: one of them is later there, none is failed anywhere
    expect(statuses[0]).toContain('later');
    expect(statuses.flat()).not.toContain('failed');
    // each ended there, or on an earlier tape (multiplex-log.test.ts)
    expect(statuses[statuses.length - 1].every((s) => s === 'complete' || s === 'earlier')).toBe(true);
    expect(statuses[statuses.length - 1]).toContain('complete');
    for (const v of [A, B, C]) {
      const dst = at(`span-${path.basename(v)}`);
      const rr = await runBundled(['restore', '--to', dst, '--as-of', 's1', '--volume', v, '--catalog', at('span.json'), '-q'], { env });
      expect(rr.code, rr.stderr).toBe(0);
      expect(await exportSha(dst, { env })).toBe(shas[v]);
    }
  });
});

describe('a multiplexed dump interrupted after every source was read', () => {
  it('completes and is recorded (exit 0), one line on stderr saying the SIGINT came too late to stop it', async () => {
    const tape = at('late');
    const cat = at('late.json');
    const paused = at('late.paused');
    // node itself, not a shell's background job (which would ignore SIGINT)
    const child = spawnCli(['dump', A, B, '--level', '0', '--snapshot', 's1', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '--catalog', cat], { env: { ...env, IMGSTREAM_PAUSE_AT: `multiplex-sources-read:${paused}` } });
    const done = finished(child, 60_000);
    for (let waited = 0; !fs.existsSync(paused); waited += 20) {
      if (waited > 30_000 || child.exitCode !== null) throw new Error('the dump did not reach the pause after its sources were read');
      await sleep(20);
    }
    child.kill('SIGINT');
    await sleep(200); // the signal handled, the dump goes on: the tape file closed and published
    fs.rmSync(paused);
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(stderrLines(r), r.stderr).toEqual(['SIGINT came too late to stop the multiplexed dump (every stream was complete): it was finished and recorded']);
    expect(r.stdout).toMatch(/multiplexed onto tape \S+late file 1/);
    expect(fs.readdirSync(tape)).toEqual(['file0001.tar']);
    expect((JSON.parse(fs.readFileSync(cat, 'utf8')) as { dumps: unknown[] }).dumps).toHaveLength(2);
  });
});

describe('a multiplexed dump stopped while sources are read', () => {
  it('says how many parts of each stopped stream stay behind its aborted member, and verify of the file passes (exit 0), naming those given up', async () => {
    // two volumes of ten parts each and a.vol of two: a.vol ends first, the others are stopped there
    const bigs = [at('big1.vol'), at('big2.vol')];
    for (const [i, v] of bigs.entries()) {
      await setupOk(['volume', 'create', v, '--size', '16M', '-q'], { env });
      fs.writeFileSync(`${v}.raw`, incompressibleImage(4096, BS, 10 + i));
      await setupOk(['volume', 'import', v, '--from', `${v}.raw`, '-q'], { env });
      await setupOk(['snapshot', 'create', v, 's1', '-q'], { env });
    }
    const tape = at('stopped');
    const cat = at('stopped.json');
    const paused = at('stopped.paused');
    const child = spawnCli(['dump', ...bigs, A, '--level', '0', '--snapshot', 's1', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '--catalog', cat], { env: { ...env, IMGSTREAM_PAUSE_AT: `multiplex-first-end:${paused}`, IMGSTREAM_TEST_SOURCE_RATE: '4M' } });
    const done = finished(child, 60_000);
    for (let waited = 0; !fs.existsSync(paused); waited += 20) {
      if (waited > 30_000 || child.exitCode !== null) throw new Error('the dump did not reach the end of its first stream');
      await sleep(20);
    }
    child.kill('SIGINT');
    await sleep(200);
    fs.rmSync(paused);
    const r = await done;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).not.toMatch(/nothing was left/);
    const log = JSON.parse((await runBundled(['tape', 'log', `tape:${tape}#1`, '--json'], { env })).stdout) as { log: { header: { sources: Array<{ status: string; error?: string }> }; entries: Array<{ source: number; kind: string }> } };
    let stayed = 0;
    for (const i of [0, 1]) {
      const parts = log.log.entries.filter((e) => e.source === i && e.kind === 'part').length;
      expect(log.log.header.sources[i].status).toBe('aborted');
      expect(r.stderr).toContain(`dump of ${bigs[i]} stopped by SIGINT: nothing recorded, ${parts} part${parts === 1 ? '' : 's'} of its stream (`);
      expect(log.log.header.sources[i].error).not.toMatch(/nothing was left/);
      stayed += parts;
    }
    expect(stayed).toBeGreaterThan(0);
    expect(log.log.header.sources[2].status).toBe('complete');
    const v = await runBundled(['verify', `tape:${tape}`], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/a\.vol.*: ok\n1 stream\(s\) verified/);
    const lines = v.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const [i, l] of lines.entries()) expect(l).toMatch(new RegExp(`${path.basename(bigs[i])} .*given up by its dump after \\d+ parts? here \\(an aborted member: .*\\): no stream, not verified$`));
  });
});

describe('--volume on a multiplexed tape file', () => {
  const tape = at('copies');
  const copy = at('acopy.vol');
  let uuid = '';

  beforeAll(async () => {
    // a copy of a.vol shares its uuid; it gets data of its own in a snapshot of its own name
    fs.copyFileSync(A, copy);
    fs.writeFileSync(`${copy}.raw`, image(4));
    await setupOk(['volume', 'import', copy, '--from', `${copy}.raw`, '-q'], { env });
    await setupOk(['snapshot', 'create', copy, 'own', '-q'], { env });
    shas[copy] = await exportSha(copy, { env });
    uuid = (JSON.parse((await inProcess(['volume', 'info', A, '--json'], { env })).stdout) as { uuid: string }).uuid;
    // dumped with relative paths, from the test's directory
    const r = await sh(`cd ${shellQuote(root)} && node ${shellQuote(CLI_BIN)} dump a.vol acopy.vol --level 0 --to tape:copies --new-tape --multiplex --catalog copies.json -q`, { env });
    expect(r.code, r.stderr).toBe(0);
  });

  it('through a pipe, a uuid the two share is refused as ambiguous (not whichever label comes first); the path picks each', async () => {
    const pipe = (volume: string, dst: string) => sh(`cat ${shellQuote(path.join(tape, 'file0001.tar'))} | node ${shellQuote(CLI_BIN)} restore --from tape:/dev/stdin --volume ${shellQuote(volume)} --to ${shellQuote(dst)}`, { env });
    const amb = await pipe(uuid.slice(0, 8), at('pipe-amb.vol'));
    expectOneLineError(amb, 'a shared uuid through a pipe', 2, /matches the dumps of 2 volumes: .*a\.vol.*acopy\.vol.*ambiguous|matches the dumps of 2 volumes: .*acopy\.vol.*a\.vol.*ambiguous/);
    expect(fs.existsSync(at('pipe-amb.vol'))).toBe(false);
    for (const v of [A, copy]) {
      const dst = at(`pipe-${path.basename(v)}`);
      const r = await pipe(v, dst);
      expect(r.code, r.stderr).toBe(0);
      expect(await exportSha(dst, { env })).toBe(shas[v]);
    }
  });

  it('through a pipe, verify and catalog rebuild (every stream) are refused in one line naming a seekable copy (exit 2), never as damage', async () => {
    const piped = (args: string) => sh(`cat ${shellQuote(path.join(tape, 'file0001.tar'))} | node ${shellQuote(CLI_BIN)} ${args}`, { env });
    const rebuilt = at('pipe-rebuilt.json');
    for (const [what, args] of [['verify', 'verify tape:/dev/stdin'], ['catalog rebuild', `catalog rebuild --from tape:/dev/stdin --catalog ${shellQuote(rebuilt)}`]]) {
      const r = await piped(args);
      expectOneLineError(r, `${what} of a multiplexed tape file through a pipe`, 2, /multiplexed tape file holding the dumps of 2 volumes .*only one of its streams can be followed.*copy it into a tape directory first .* and give tape:DIR/);
      expect(r.stderr).not.toMatch(/--volume|damaged|level 0/);
    }
    expect(fs.existsSync(rebuilt)).toBe(false);
  });

  it('by the absolute path from another directory than the dump ran in, and by a uuid in capitals where it names one volume', async () => {
    const other = await sh(`cd / && node ${shellQuote(CLI_BIN)} restore --from tape:${shellQuote(tape)}#1 --volume ${shellQuote(copy)} --to ${shellQuote(at('abs.vol'))} -q`, { env });
    expect(other.code, other.stderr).toBe(0);
    expect(await exportSha(at('abs.vol'), { env })).toBe(shas[copy]);
    // b.vol's uuid is its own: typed in capitals, it picks b's stream of a tape file with the three
    const t = at('upper');
    expect((await runBundled(['dump', A, B, '--level', '0', '--to', `tape:${t}`, '--new-tape', '--multiplex', '--snapshot', 's1', '--catalog', at('upper.json'), '-q'], { env })).code).toBe(0);
    const bUuid = (JSON.parse((await inProcess(['volume', 'info', B, '--json'], { env })).stdout) as { uuid: string }).uuid;
    const up = await runBundled(['restore', '--from', `tape:${t}#1`, '--volume', bUuid.slice(0, 8).toUpperCase(), '--to', at('upper.vol'), '-q'], { env });
    expect(up.code, up.stderr).toBe(0);
    expect(await exportSha(at('upper.vol'), { env })).toBe(shas[B]);
  });
});

describe('symbolic links', () => {
  it('a volume dumped through a linked directory is picked by its real path too, from a tape directory and through a pipe', async () => {
    fs.symlinkSync(root, at('rootlink'));
    const tape = at('linked');
    const r = await runBundled(['dump', path.join(at('rootlink'), 'a.vol'), B, '--level', '0', '--snapshot', 's1', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '--catalog', at('linked.json'), '-q'], { env });
    expect(r.code, r.stderr).toBe(0);
    const seek = await runBundled(['restore', '--from', `tape:${tape}#1`, '--volume', A, '--to', at('linked-a.vol'), '-q'], { env });
    expect(seek.code, seek.stderr).toBe(0);
    expect(await exportSha(at('linked-a.vol'), { env })).toBe(shas[A]);
    const pipe = await sh(`cat ${shellQuote(path.join(tape, 'file0001.tar'))} | node ${shellQuote(CLI_BIN)} restore --from tape:/dev/stdin --volume ${shellQuote(A)} --to ${shellQuote(at('linked-pipe.vol'))} -q`, { env });
    expect(pipe.code, pipe.stderr).toBe(0);
    expect(await exportSha(at('linked-pipe.vol'), { env })).toBe(shas[A]);
  });

  it('a tape directory given twice, once through a link, is refused before the dump takes its snapshot or writes', async () => {
    const d1 = at('d1');
    fs.mkdirSync(d1);
    fs.symlinkSync(d1, at('d1link'));
    const before = await snapshots(A);
    for (const multiplex of [['--multiplex'], []]) {
      const r = await runBundled(['dump', A, ...(multiplex.length ? [B] : []), '--level', '0', '--to', `tape:${d1},${at('d1link')}`, '--tape-size', '600K', ...multiplex], { env });
      expectOneLineError(r, 'a tape and a link to it', 4, /tape \S+d1link is given twice \(as tapes 1 and 2 of the set: it is the same directory as \S+d1\)/);
      expect(fs.readdirSync(d1)).toEqual([]);
      expect(await snapshots(A)).toEqual(before);
    }
  });
});

describe('verify of a multiplexed tape file', () => {
  const tape = at('verify');
  let file = '';

  beforeAll(async () => {
    const r = await runBundled(['dump', A, B, C, '--level', '0', '--snapshot', 's1', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '--catalog', at('verify.json'), '-q'], { env });
    expect(r.code, r.stderr).toBe(0);
    file = path.join(tape, 'file0001.tar');
  });

  it('with one stream damaged: the error names it and says the others verified, and each of those has its ok line', async () => {
    const log = JSON.parse((await runBundled(['tape', 'log', `tape:${tape}#1`, '--json'], { env })).stdout) as { log: { entries: Array<{ source: number; kind: string; offset: number; size: number }> } };
    const part = log.log.entries.find((e) => e.source === 1 && e.kind === 'part')!;
    const dir = at('verify-damaged');
    fs.mkdirSync(dir);
    const copy = fs.readFileSync(file);
    for (let i = 0; i < 16; i++) copy[part.offset + 512 + 1000 + i] ^= 0x5a;
    fs.writeFileSync(path.join(dir, 'file0001.tar'), copy);
    const r = await runBundled(['verify', `tape:${dir}`], { env });
    expectOneLineError(r, 'verify with b.vol damaged', 9, /b\.vol.*; the other 2 stream\(s\) verified/);
    const oks = r.stdout.split('\n').filter((l) => l.endsWith(': ok'));
    expect(oks).toHaveLength(2);
    expect(oks.some((l) => l.includes('a.vol'))).toBe(true);
    expect(oks.some((l) => l.includes('c.vol'))).toBe(true);
    const json = await runBundled(['verify', `tape:${dir}`, '--json'], { env });
    const details = (JSON.parse(json.stdout) as { error: { details: { ok: boolean; streams: unknown[]; failed: unknown[] } } }).error.details;
    expect(details.ok).toBe(false);
    expect(details.streams).toHaveLength(2);
    expect(details.failed).toHaveLength(1);
  });

  it('with its backup log damaged and every stream whole: verified (exit 0), and a line on stderr says the log is damaged', async () => {
    const copy = fs.readFileSync(file);
    const at_ = copy.lastIndexOf('imgstream-backup-log');
    expect(at_).toBeGreaterThan(0);
    copy.write('XXXXXXXX', at_ - 3, 'latin1');
    const dir = at('verify-log');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'file0001.tar'), copy);
    const r = await runBundled(['verify', `tape:${dir}`], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/3 stream\(s\) verified/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tape \S+verify-log file 1: the backup log is missing or damaged \(the streams were found by their members' headers and are whole/);
    const json = JSON.parse((await runBundled(['verify', `tape:${dir}`, '--json'], { env })).stdout) as { damage: string[] };
    expect(json.damage).toHaveLength(1);
  });
});
