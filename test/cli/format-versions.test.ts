// Everything imgstream reads that carries a format version, written by a newer imgstream
// (its version number raised in place): refused with exit 5 (not-a-volume), as the exit
// code table says for a volume or catalog of another version, in one line naming the
// version found and the version read, never as damage (exit 9) and never dropped or
// rewritten. Image streams from a file, a pipe and a tape (restore and verify), a volume,
// a tape file's label, a multiplexed tape file's backup log, the mirror state, a mirror's
// resume file, a write journal's segment.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, hashTree, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { expectOneLineError, refused } from '../support/stream-cli.js';
import { setupOk, volumeWithSnapshot } from '../support/in-process.js';
import { crc32 } from '../../src/format/crc32.js';
import { encodeRecord, RecordKind } from '../../src/journal/record.js';

const root = tempDir('imgstream-format-versions-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const o = { env, timeoutMs: 60_000 };
const at = (f: string) => path.join(root, f);
const vol = at('v.vol');
const NEWER = /of format version 2, which this imgstream does not read \(it reads version 1\)/;

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await volumeWithSnapshot(vol, at('v.raw'), env);
  cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--compress', 'none', '--to', at('v.l0'), '-q'], o);
}, 60_000);

/** Replaces the one occurrence of `from` in `buf` by `to` (same length). */
function patch(buf: Buffer, from: string, to: string): Buffer {
  const i = buf.indexOf(from);
  expect(i, `"${from}" in the bytes`).toBeGreaterThanOrEqual(0);
  expect(buf.indexOf(from, i + 1), `"${from}" once`).toBe(-1);
  const out = Buffer.from(buf);
  out.write(to, i, 'latin1');
  return out;
}

/** A stream whose preamble says format version 2. */
function newerPreamble(stream: Buffer): Buffer {
  const out = Buffer.from(stream);
  expect(out.toString('latin1', 0, 8)).toBe('IMGSTRM1');
  out.writeUInt16LE(2, 8);
  return out;
}

/** Restore (into a new volume, which must not appear) and verify of `from` refused with exit 5. */
/** A read refused as a newer format's; from stdin as a process, else in this process (refused()). */
async function refusedRead(what: string, from: string, stdinFile?: string): Promise<void> {
  const dst = at('never.vol');
  const attempt = (args: string[]) => (stdinFile === undefined ? refused(args, o) : runCli(args, { ...o, stdinFile }));
  const line = expectOneLineError(await attempt(['restore', '--from', from, '--to', dst]), `restore of ${what}`, 5, NEWER);
  expect(fs.existsSync(dst), `${what}: no volume restored`).toBe(false);
  expectOneLineError(await attempt(['verify', from]), `verify of ${what}`, 5, NEWER);
  expect(line).not.toMatch(/damaged|corrupt|checksum/);
}

describe('image streams of a newer format version', () => {
  it('a stream file whose preamble says version 2: exit 5, naming the file and both versions', async () => {
    const f = at('v2-preamble.l0');
    fs.writeFileSync(f, newerPreamble(fs.readFileSync(at('v.l0'))));
    await refusedRead('a version 2 stream file', f);
    const line = expectOneLineError(await refused(['verify', f], o), 'verify', 5);
    expect(line).toContain(`${f}: an image stream of format version 2`);
  });

  it('a stream whose preamble asks for a feature this imgstream does not have: exit 5 naming the bits, nothing restored', async () => {
    const f = at('v1-feature.l0');
    const b = Buffer.from(fs.readFileSync(at('v.l0')));
    b.writeUInt32LE(b.readUInt32LE(12) | 0x100, 12); // a required feature bit no version has yet
    fs.writeFileSync(f, b);
    const feature = /the stream needs features 0x100, which this imgstream does not have \(a newer imgstream wrote it\)/;
    const dst = at('never-feature.vol');
    const line = expectOneLineError(await refused(['restore', '--from', f, '--to', dst], o), 'restore', 5, feature);
    expect(line).toContain(f);
    expect(fs.existsSync(dst)).toBe(false);
    expectOneLineError(await refused(['verify', f], o), 'verify', 5, feature);
  });

  it('a stream whose header says version 2 (its preamble 1): the same', async () => {
    const s = Buffer.from(fs.readFileSync(at('v.l0')));
    // the header record: frame at 16, payload after it; its crc32 made right again
    const len = s.readUInt32LE(16 + 4);
    const payload = patch(s.subarray(32, 32 + len), '"version":1', '"version":2');
    payload.copy(s, 32);
    s.writeUInt32LE(crc32(payload) >>> 0, 16 + 12);
    const f = at('v2-header.l0');
    fs.writeFileSync(f, s);
    await refusedRead('a stream whose header is version 2', f);
  });

  it('a version 2 stream on stdin: the same', async () => {
    fs.writeFileSync(at('stdin.l0'), newerPreamble(fs.readFileSync(at('v.l0'))));
    await refusedRead('a version 2 stream on stdin', '-', at('stdin.l0'));
  });

  it('on a tape: a version 2 stream in its parts, and a tape file whose label says version 2', async () => {
    const tape = at('tape');
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--compress', 'none', '--to', `tape:${tape}`, '--new-tape', '-q'], o);
    const file = path.join(tape, 'file0001.tar');
    const good = fs.readFileSync(file);
    const s = good.indexOf('IMGSTRM1');
    const streamV2 = Buffer.from(good);
    streamV2.writeUInt16LE(2, s + 8);
    fs.writeFileSync(file, streamV2);
    await refusedRead('a version 2 stream on a tape', `tape:${tape}`);
    fs.writeFileSync(file, patch(good, '"format":"imgstream-tape","version":1', '"format":"imgstream-tape","version":2'));
    await refusedRead('a tape file whose label is version 2', `tape:${tape}`);
    const line = expectOneLineError(await refused(['verify', `tape:${tape}#1`], o), 'verify tape file 1', 5);
    expect(line).toContain(`tape ${tape} file 1: a tape file of format version 2`);
  }, 60_000);
});

describe('a volume whose root records say version 2', () => {
  it('volume info and a restore onto it exit 5 naming the version, and the volume is untouched', async () => {
    const v = at('v2.vol');
    fs.copyFileSync(vol, v);
    const bytes = fs.readFileSync(v);
    for (const slot of [0, 4096]) if (bytes.toString('latin1', slot, slot + 4) !== '\0\0\0\0') bytes.writeUInt32LE(2, slot + 8);
    fs.writeFileSync(v, bytes);
    const line = expectOneLineError(await refused(['volume', 'info', v], o), 'volume info', 5, NEWER);
    expect(line).toContain(`${v}: a volume of format version 2`);
    expectOneLineError(await refused(['restore', '--from', at('v.l0'), '--to', v], o), 'restore onto it', 5, NEWER);
    expect(fs.readFileSync(v).equals(bytes), 'the volume is not changed').toBe(true);
  });

  it('a root flag this imgstream does not know (a newer one set it: it may mean the disk must not be read): every command exits 5 naming it, the volume untouched', async () => {
    const v = at('flag.vol');
    fs.copyFileSync(vol, v);
    const bytes = fs.readFileSync(v);
    for (const slot of [0, 4096]) {
      if (bytes.toString('latin1', slot, slot + 8) !== 'IMGSVOL1') continue;
      bytes.writeUInt32LE(bytes.readUInt32LE(slot + 152) | 0x40, slot + 152);
      bytes.writeUInt32LE(crc32(bytes.subarray(slot, slot + 508)), slot + 508);
    }
    fs.writeFileSync(v, bytes);
    for (const args of [['volume', 'info', v], ['volume', 'export', v, '--to', at('flag.raw')], ['snapshot', 'create', v, 'x'], ['restore', '--from', at('v.l0'), '--to', v]]) {
      expectOneLineError(await refused(args, o), args.slice(0, 2).join(' '), 5, /: a volume with flags 0x40, which this imgstream does not have \(a newer imgstream wrote it\)/);
    }
    expect(fs.readFileSync(v).equals(bytes), 'the volume is not changed').toBe(true);
    expect(fs.existsSync(at('flag.raw'))).toBe(false);
  });
});

describe('a multiplexed tape file whose backup log says version 2', () => {
  it('tape log, verify and restore: exit 5 naming the tape file; the catalog copy of a newer log too', async () => {
    const tape = at('mux');
    await volumeWithSnapshot(at('w.vol'), at('w.raw'), env);
    cliOk(['dump', vol, at('w.vol'), '--level', '0', '--snapshot', 's1', '--multiplex', '--compress', 'none', '--to', `tape:${tape}`, '--new-tape', '-q'], o);
    const file = path.join(tape, 'file0001.tar');
    const good = fs.readFileSync(file);
    expect(runCli(['tape', 'log', `tape:${tape}#1`], o).code).toBe(0);
    fs.writeFileSync(file, patch(good, '"format":"imgstream-backup-log","version":1', '"format":"imgstream-backup-log","version":2'));
    const line = expectOneLineError(await refused(['tape', 'log', `tape:${tape}#1`], o), 'tape log', 5, NEWER);
    expect(line).toContain(`tape ${tape} file 1: a backup log of format version 2`);
    expectOneLineError(await refused(['verify', `tape:${tape}`], o), 'verify', 5, NEWER);
    expectOneLineError(await refused(['restore', '--from', `tape:${tape}`, '--volume', vol, '--to', at('never.vol')], o), 'restore', 5, NEWER);
    expect(fs.existsSync(at('never.vol'))).toBe(false);

    // the tape's log cut off: `tape log` reads the catalog's copy, which a newer imgstream wrote
    fs.writeFileSync(file, good.subarray(0, good.lastIndexOf('"format":"imgstream-backup-log"') - 1 - 512));
    const logs = `${env.IMGSTREAM_CATALOG}.logs`;
    const copy = path.join(logs, fs.readdirSync(logs)[0]);
    fs.writeFileSync(copy, patch(fs.readFileSync(copy), '"format":"imgstream-backup-log","version":1', '"format":"imgstream-backup-log","version":2'));
    const before = fs.readFileSync(copy);
    const fromCopy = expectOneLineError(await refused(['tape', 'log', `tape:${tape}#1`], o), 'tape log from the catalog copy', 5, NEWER);
    expect(fromCopy).toContain(`${copy}: a backup log of format version 2`);
    expect(fs.readFileSync(copy).equals(before), 'the copy is not rewritten').toBe(true);
  }, 60_000);
});

describe('mirror files of a newer format version', () => {
  const dest = at('mirror/v.mirror');
  const state = env.IMGSTREAM_MIRROR_STATE;

  beforeAll(() => {
    fs.mkdirSync(path.dirname(dest));
    cliOk(['mirror', 'update', vol, '--to', dest, '-q'], o);
  }, 60_000);

  it('the state file is written with its format and version', () => {
    expect(JSON.parse(fs.readFileSync(state, 'utf8'))).toMatchObject({ format: 'imgstream-mirror-state', version: 1 });
  });

  it('a mirror state of version 2: status and update exit 5, the state file untouched', async () => {
    const good = fs.readFileSync(state);
    const newer = patch(good, '"version": 1', '"version": 2');
    fs.writeFileSync(state, newer);
    try {
      const line = expectOneLineError(await refused(['mirror', 'status', vol], o), 'mirror status', 5, NEWER);
      expect(line).toContain(`${state}: a mirror state file of format version 2`);
      const before = hashTree(path.dirname(dest));
      expectOneLineError(await refused(['mirror', 'update', vol, '--to', dest], o), 'mirror update', 5, NEWER);
      expect(fs.readFileSync(state).equals(newer), 'the state file is not rewritten').toBe(true);
      expect(hashTree(path.dirname(dest)), 'the destination is untouched').toEqual(before);
    } finally {
      fs.writeFileSync(state, good);
    }
  }, 60_000);

  it('a resume file of version 2 beside the destination: update exits 5 and keeps it', async () => {
    const resume = path.join(path.dirname(dest), `.${path.basename(dest)}.mirror-transfer`);
    fs.writeFileSync(resume, JSON.stringify({ version: 2, transferId: 'from-a-newer-imgstream', acked: 3 }));
    const before = hashTree(path.dirname(dest));
    const line = expectOneLineError(await refused(['mirror', 'update', vol, '--to', dest], o), 'mirror update', 5, NEWER);
    expect(line).toContain(`${resume}: a mirror resume file of format version 2`);
    expect(hashTree(path.dirname(dest)), 'the resume file and the destination are kept').toEqual(before);
    fs.rmSync(resume);
    cliOk(['mirror', 'update', vol, '--to', dest, '-q'], o);
  }, 60_000);
});

describe('a write journal of a newer format version', () => {
  /** A record of format version 2: an OPEN marker whose magic says IJR2. */
  const newerRecord = () => {
    const r = encodeRecord({ kind: RecordKind.Open, seq: 1, time: Date.now(), lbn: 0, count: 0 }, Buffer.from('{}'));
    r.write('IJR2', 0, 'latin1');
    return r;
  };

  it('serve nbd --journal refuses a segment of version 2 (exit 5) and leaves it as it was', async () => {
    const j = at('j.vol');
    await setupOk(['volume', 'create', j, '--size', '1M'], { env });
    fs.mkdirSync(`${j}.journal`);
    const seg = path.join(`${j}.journal`, '0000000000000001.seg');
    fs.writeFileSync(seg, newerRecord());
    const before = hashTree(`${j}.journal`);
    const line = expectOneLineError(await refused(['serve', 'nbd', j, '--socket', at('j.sock'), '--journal'], o), 'serve nbd --journal', 5, NEWER);
    expect(line).toContain(`${seg} at byte 0: a journal record of format version 2`);
    expect(hashTree(`${j}.journal`), 'the journal is not cut or rewritten').toEqual(before);
  }, 60_000);

  it('records of version 2 after records of version 1 are refused, never cut off as a torn tail', async () => {
    const j = at('k.vol');
    await setupOk(['volume', 'create', j, '--size', '1M'], { env });
    fs.mkdirSync(`${j}.journal`);
    const seg = path.join(`${j}.journal`, '0000000000000001.seg');
    const v1 = encodeRecord({ kind: RecordKind.Snapshot, seq: 1, time: Date.now(), lbn: 0, count: 0 }, Buffer.from('{"name":"x"}'));
    const v2 = newerRecord();
    v2.writeDoubleLE(2, 8);
    fs.writeFileSync(seg, Buffer.concat([v1, v2]));
    const before = hashTree(`${j}.journal`);
    const line = expectOneLineError(await refused(['serve', 'nbd', j, '--socket', at('k.sock'), '--journal'], o), 'serve nbd --journal', 5, NEWER);
    expect(line).toContain(`${seg} at byte ${v1.length}: a journal record of format version 2`);
    expect(hashTree(`${j}.journal`)).toEqual(before);
  }, 60_000);

  it('a record of a kind this imgstream does not know, with its checksum, is refused as a newer one, never cut off as a torn tail', async () => {
    const j = at('n.vol');
    await setupOk(['volume', 'create', j, '--size', '1M'], { env });
    fs.mkdirSync(`${j}.journal`);
    const seg = path.join(`${j}.journal`, '0000000000000001.seg');
    const known = encodeRecord({ kind: RecordKind.Snapshot, seq: 1, time: Date.now(), lbn: 0, count: 0 }, Buffer.from('{"name":"x"}'));
    const unknown = encodeRecord({ kind: 42 as RecordKind, seq: 2, time: Date.now(), lbn: 0, count: 0 }, Buffer.from('{"what":"next year"}'));
    fs.writeFileSync(seg, Buffer.concat([known, unknown]));
    const before = hashTree(`${j}.journal`);
    const what = `${seg} at byte ${known.length}: record 2 is of kind 42, which this imgstream does not have (a newer imgstream wrote it)`;
    const newer = /a newer imgstream wrote it\) \(read it with the imgstream version that wrote it, or a newer one\)$/;
    expect(expectOneLineError(await refused(['serve', 'nbd', j, '--socket', at('n.sock'), '--journal'], o), 'serve nbd --journal', 5, newer)).toContain(what);
    expect(expectOneLineError(await refused(['protect', j, '--to', at('n.cdp'), '--once'], o), 'protect', 5, newer)).toContain(what);
    expect(hashTree(`${j}.journal`)).toEqual(before);
    // a snapshot command on the idle volume takes its snapshot, unjournaled, and says why
    const snap = cliOk(['snapshot', 'create', j, 'still'], o);
    expect(snap.stdout).toContain(`not journaled, so protection destinations will not get it: ${what}`);
    expect(hashTree(`${j}.journal`)).toEqual(before);
  }, 60_000);
});
