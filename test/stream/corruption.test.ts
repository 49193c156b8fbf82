// Damaged streams through the built CLI. A level 0 and a level 1 stream of a small volume,
// each with zstd and without compression, get a byte flipped (XOR with a random non-zero
// value) or are cut short at pseudo-random points (fixed seed), plus a few chosen spots
// (preamble, header, trailer frame, last byte). Each time: `verify` exits 9 with one
// stderr line naming the stream and the problem; `restore` of a damaged level 0 into a
// new path fails with one line and leaves no file there; `restore` of a damaged level 1
// onto a volume restored from the good level 0 fails with one line and leaves that volume
// at its last CP: nothing it uses is touched (root records, snapshot table, the planes of
// its snapshots, the blocks they hold), and when the damage is in the preamble or header
// not a byte of the file changes. At the end those volumes check clean, still export
// like the source, and take the good level 1. One case in four runs as a real process,
// the others through the executable's main() in this process (test/support/bundled-cli.ts),
// which must then leave no file open.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliAsync, sha256, sha256File, type CliResult } from '../support/cli.js';
import { mutate, randomImage, rng, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { changesOutsideFreeSpace, dirEntries, dump, exportShas, expectClean, expectOneLineError, ok, pool, refused, snapshotNames } from '../support/stream-cli.js';

const BS = 4096;
const BLOCKS = 768; // 3 MiB logical disk: a level 0 of a few DATA records
const CASES_PER_STREAM = 13; // the 10 chosen spots and 3 random ones
const WORKERS = 2;
const root = tempDir('imgstream-corrupt-cli-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'no-catalog-given.json') };
const o = { env, timeoutMs: 60_000 };
const src = path.join(root, 'src.vol');
const streams = {
  'l0.zstd': path.join(root, 'src.l0.zstd'),
  'l1.zstd': path.join(root, 'src.l1.zstd'),
  'l0.none': path.join(root, 'src.l0.none'),
  'l1.none': path.join(root, 'src.l1.none'),
};
type Kind = keyof typeof streams;
const sourceSha: Record<string, string> = {};
/** A volume restored from the good level 0 (snapshot s1), one per worker. */
const bases: string[] = [];
const baseBytes: Buffer[] = [];
/** Where damaged level 0 streams are restored to: must stay empty. */
const newDirs: string[] = [];

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) / 1024}K`, '--max-snapshots', '8'], { env });
  const img = randomImage(BLOCKS, BS, 9101);
  const raw = path.join(root, 'img.raw');
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
  mutate(img, BS, 80, 9102);
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
  for (const codec of ['zstd', 'none'] as const) {
    const cat = path.join(root, `catalog.${codec}.json`);
    dump(src, 0, 's1', streams[`l0.${codec}`], cat, ['--compress', codec], o);
    const l1 = dump(src, 1, 's2', streams[`l1.${codec}`], cat, ['--compress', codec], o);
    expect(l1.expression).toBe('s2 - s1');
    expect(l1.blocks).toBeGreaterThan(20);
  }
  Object.assign(sourceSha, await exportShas(src, ['s1', 's2'], o));
  const base0 = path.join(root, 'base-0.vol');
  ok(['restore', '--from', streams['l0.zstd'], '--to', base0, '-q'], o);
  for (let w = 0; w < WORKERS; w++) {
    const b = path.join(root, `base-${w}.vol`);
    if (w > 0) fs.copyFileSync(base0, b);
    bases.push(b);
    baseBytes.push(fs.readFileSync(b));
    const d = path.join(root, `new-${w}`);
    fs.mkdirSync(d);
    newDirs.push(d);
  }
}, 120_000);

interface Damage {
  kind: Kind;
  what: string;
  /** Byte offset of the flip, or the length kept. */
  at: number;
  xor?: number;
  file: string;
}

/** Offset of the first record after the header (what precedes it is preamble and header). */
function bodyStart(bytes: Buffer): number {
  return 16 + 16 + bytes.readUInt32LE(16 + 4);
}

function damages(kind: Kind, seed: number): Damage[] {
  const good = fs.readFileSync(streams[kind]);
  const len = good.length;
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
  const xor = () => int(1, 256);
  const spots: Array<Omit<Damage, 'file' | 'kind'>> = [
    // the magic or the preamble length: a flip in the version (8-9) or the feature bits
    // (12-15) reads as a newer writer's stream, exit 5 (test/cli/format-versions.test.ts)
    { what: 'flip in the preamble', at: [0, 1, 2, 3, 4, 5, 6, 7, 10, 11][int(0, 10)], xor: xor() },
    { what: 'flip in the header frame', at: int(16, 32), xor: xor() },
    { what: 'flip in the header', at: int(32, bodyStart(good)), xor: xor() },
    { what: 'flip of the trailer frame type', at: len - 112, xor: xor() },
    { what: 'flip in the trailer', at: int(len - 96, len), xor: xor() },
    { what: 'flip of the last byte', at: len - 1, xor: xor() },
    { what: 'truncated to nothing', at: 0 },
    { what: 'truncated in the preamble', at: int(1, 16) },
    { what: 'truncated before the trailer', at: len - 112 },
    { what: 'truncated by one byte', at: len - 1 },
  ];
  while (spots.length < CASES_PER_STREAM) {
    if (r() < 0.7) {
      const at = int(0, len);
      const x = xor();
      spots.push({ what: 'flip', at, xor: x });
    } else spots.push({ what: 'truncated', at: int(1, len) });
  }
  return spots.map((s, i) => {
    const file = path.join(root, `damaged.${kind}.${i}`);
    const bytes = Buffer.from(s.xor === undefined ? good.subarray(0, s.at) : good);
    if (s.xor !== undefined) bytes[s.at] ^= s.xor;
    fs.writeFileSync(file, bytes);
    return { ...s, kind, file };
  });
}

/**
 * Runs a command that must refuse a damaged stream: one case in four as a real process,
 * the others through the executable's main() in this process (refused() in stream-cli.ts: the same
 * code, without a process's start-up cost), where it must also leave no file open.
 */
function refusal(args: string[], d: Damage): Promise<CliResult> {
  return caseIndex(d) % 4 === 0 ? runCliAsync(args, o) : refused(args, o);
}

const PROBLEM = /checksum|incomplete|damaged|not an imgstream|unsupported|decompress|trailer|header|record|features|unexpected bytes/i;

async function expectVerifyRefuses(d: Damage): Promise<void> {
  const label = `${d.kind} ${d.what} at ${d.at}${d.xor ? ` xor 0x${d.xor.toString(16)}` : ''}: verify`;
  const v = await refusal(['verify', d.file], d);
  const line = expectOneLineError(v, label, 9, PROBLEM);
  expect(line, label).toContain(d.file);
}

/** A damaged level 0 into a new path: refused, nothing left there. */
async function expectNewRestoreRefused(d: Damage, w: number): Promise<void> {
  const label = `${d.kind} ${d.what} at ${d.at}: restore into a new path`;
  const to = path.join(newDirs[w], 'restored.vol');
  const r = await refusal(['restore', '--from', d.file, '--to', to], d);
  expectOneLineError(r, label, 9, PROBLEM);
  expect(fs.existsSync(to), label).toBe(false);
  expect(dirEntries(newDirs[w]), label).toEqual([]);
}

/** A damaged level 1 onto a volume at s1: refused, the volume still at its last CP. */
/** Damaged level 1 restores after which the volume file differed (in free space only), of all tried. */
const fileChanged = { changed: 0, of: 0 };

async function expectRestoreOntoRefused(d: Damage, w: number): Promise<void> {
  const label = `${d.kind} ${d.what} at ${d.at}${d.xor ? ` xor 0x${d.xor.toString(16)}` : ''}: restore onto a volume`;
  const before = sha256File(bases[w]);
  const r = await refusal(['restore', '--from', d.file, '--to', bases[w]], d);
  expectOneLineError(r, label, 9, PROBLEM);
  const { violations } = changesOutsideFreeSpace(baseBytes[w], bases[w]);
  expect(violations, label).toEqual([]);
  // nothing of the stream was applied before the damage: not a byte may change
  const after = sha256File(bases[w]);
  if (d.at < bodyStart(fs.readFileSync(streams[d.kind]))) expect(after, label).toBe(before);
  fileChanged.of++;
  if (after !== before) fileChanged.changed++;
}

const cases: Damage[] = [];
const caseIndex = (d: Damage) => cases.indexOf(d);

describe('damaged streams', () => {

  it(`are made at ${CASES_PER_STREAM} points per stream`, () => {
    (Object.keys(streams) as Kind[]).forEach((k, i) => cases.push(...damages(k, 0xc0ffee + i)));
    expect(cases).toHaveLength(4 * CASES_PER_STREAM);
    // every damaged file really differs from its stream
    for (const d of cases) expect(sha256(fs.readFileSync(d.file))).not.toBe(sha256File(streams[d.kind]));
  });

  it('verify refuses every damaged stream (exit 9, one line naming the problem)', async () => {
    await pool(3, cases, (d) => expectVerifyRefuses(d));
  }, 300_000);

  it('restore refuses every damaged level 0 and leaves no volume at the new path', async () => {
    const l0 = cases.filter((d) => d.kind.startsWith('l0'));
    await pool(WORKERS, Array.from({ length: WORKERS }, (_, w) => w), async (w) => {
      for (let i = w; i < l0.length; i += WORKERS) await expectNewRestoreRefused(l0[i], w);
    });
  }, 300_000);

  it('restore refuses every damaged level 1 and leaves the volume at its last CP', async () => {
    const l1 = cases.filter((d) => d.kind.startsWith('l1'));
    await pool(WORKERS, Array.from({ length: WORKERS }, (_, w) => w), async (w) => {
      for (let i = w; i < l1.length; i += WORKERS) await expectRestoreOntoRefused(l1[i], w);
    });
    // restore writes incoming blocks to free VBNs (and planes to free slots) as it reads,
    // before the trailer is checked: so the file changes, never what the last CP uses
    console.log(`damaged level 1 restores that changed the volume file (in free space): ${fileChanged.changed} of ${fileChanged.of}`);
    // the volumes are as restored from the level 0, and the good level 1 still applies
    for (const b of bases) {
      expect(await snapshotNames(b, o)).toEqual(['s1']);
      expect(await exportShas(b, ['s1', null], o)).toEqual({ s1: sourceSha.s1, active: sourceSha.s1 });
      await expectClean(b, o);
    }
    ok(['restore', '--from', streams['l1.none'], '--to', bases[0], '-q'], o);
    ok(['restore', '--from', streams['l1.zstd'], '--to', bases[1], '-q'], o);
    for (const b of bases) {
      expect(await snapshotNames(b, o)).toEqual(['s1', 's2']);
      expect(await exportShas(b, ['s1', 's2', null], o)).toEqual({ s1: sourceSha.s1, s2: sourceSha.s2, active: sourceSha.s2 });
      await expectClean(b, o);
    }
  }, 300_000);

  it('a stream with bytes after its trailer is refused', async () => {
    const extra: Array<[Kind, Buffer]> = [
      ['l0.zstd', Buffer.from([0])],
      ['l0.none', fs.readFileSync(streams['l1.none'])], // two streams in one file
      ['l1.zstd', randomImage(1, 4096, 5)],
      ['l1.none', fs.readFileSync(streams['l1.none'])], // the same stream twice
    ];
    const vol = path.join(root, 'appended.vol');
    ok(['restore', '--from', streams['l0.none'], '--to', vol, '-q'], o);
    const volBefore = fs.readFileSync(vol);
    for (const [kind, tail] of extra) {
      const f = path.join(root, `appended.${kind}`);
      fs.writeFileSync(f, Buffer.concat([fs.readFileSync(streams[kind]), tail]));
      const line = expectOneLineError(await runCliAsync(['verify', f], o), `${kind} + ${tail.length} bytes: verify`, 9, /after the trailer/);
      expect(line).toContain(f);
      if (kind.startsWith('l0')) {
        const to = path.join(root, `appended-new-${kind}.vol`);
        expectOneLineError(await runCliAsync(['restore', '--from', f, '--to', to], o), `${kind} + ${tail.length} bytes: restore`, 9, /after the trailer/);
        expect(fs.existsSync(to)).toBe(false);
      } else {
        expectOneLineError(await runCliAsync(['restore', '--from', f, '--to', vol], o), `${kind} + ${tail.length} bytes: restore onto`, 9, /after the trailer/);
        expect(await snapshotNames(vol, o)).toEqual(['s1']);
        expect(changesOutsideFreeSpace(volBefore, vol).violations).toEqual([]);
      }
    }
    expect(await exportShas(vol, [null], o)).toEqual({ active: sourceSha.s1 });
    await expectClean(vol, o);
  }, 120_000);

  // BUG: the reader never checks the flags byte of the TRAILER frame. The spec says the
  // trailer is never compressed, and the stream's SHA-256 (chain) stops before the trailer
  // frame, so setting its OPTIONAL or ZSTD bit (byte len-111) goes unnoticed: verify says
  // "ok" and restore applies a stream whose bytes are not the ones dump wrote.
  it('a flipped flags byte in the trailer frame is refused', async () => {
    for (const kind of ['l1.zstd', 'l0.none'] as Kind[]) {
      for (const x of [1, 2, 3]) {
        const bytes = fs.readFileSync(streams[kind]);
        bytes[bytes.length - 111] ^= x;
        const f = path.join(root, `trailer-flags.${kind}.${x}`);
        fs.writeFileSync(f, bytes);
        expectOneLineError(await runCliAsync(['verify', f], o), `${kind} trailer flags ^ ${x}: verify`, 9, PROBLEM);
      }
    }
  }, 60_000);
});
