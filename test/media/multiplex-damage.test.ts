// Multiplexed tape files damaged after they were written, as a user meets them: a file cut
// short that lost whole streams (their volumes are named as lost, never passed over), and
// a backup log with one wrong but well-formed entry (the members' own headers are walked
// instead: the streams are whole and verify, restore and catalog rebuild take them).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incompressibleImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';
import { exportSha, expectOneLineError } from '../support/stream-cli.js';

const BS = 4096;
const BLOCKS = 512; // 2 MiB logical disks
const root = tempDir('imgstream-mux-damage-');
const catalog = path.join(root, 'catalog.json');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: catalog };
const at = (f: string) => path.join(root, f);
const [A, B, C] = ['a', 'b', 'c'].map((n) => at(`${n}.vol`));
const shas: Record<string, string> = {};
const tape = at('t1');
let file = '';

interface Entry {
  source: number;
  kind: string;
  offset: number;
  size: number;
}
interface Log {
  log: { header: { sources: Array<{ volume: { path: string } }> }; entries: Entry[] };
}
let log: Log['log'];

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function volumeWith(vol: string, seed: number): Promise<void> {
  await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`, '-q'], { env });
  fs.writeFileSync(`${vol}.raw`, incompressibleImage(BLOCKS, BS, seed));
  await setupOk(['volume', 'import', vol, '--from', `${vol}.raw`, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's1', '-q'], { env });
}

/** A tape directory holding `bytes` as its file 1. */
function tapeWith(name: string, bytes: Buffer): string {
  const dir = at(name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'file0001.tar'), bytes);
  return dir;
}

const end = (e: Entry) => e.offset + 512 + Math.ceil(e.size / 512) * 512;

beforeAll(async () => {
  await volumeWith(A, 1);
  await volumeWith(B, 2);
  await volumeWith(C, 3);
  for (const v of [A, B, C]) shas[v] = await exportSha(v, { env });
  const r = await runBundled(['dump', A, B, C, '--level', '0', '--snapshot', 's1', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '-q'], { env });
  expect(r.code, r.stderr).toBe(0);
  file = path.join(tape, 'file0001.tar');
  log = (JSON.parse((await runBundled(['tape', 'log', `tape:${tape}#1`, '--json'], { env })).stdout) as Log).log;
});

describe('a multiplexed tape file cut short just after the first stream ended', () => {
  let dir = '';
  let first = -1; // the source whose stream ended first: the only whole one
  beforeAll(() => {
    const e = log.entries.find((x) => x.kind === 'end')!;
    first = e.source;
    dir = tapeWith('cut', fs.readFileSync(file).subarray(0, end(e)));
  });

  it('fails verify (exit 9), naming each volume that lost its stream, whether or not its label is left', async () => {
    const r = await runBundled(['verify', `tape:${dir}`], { env });
    expectOneLineError(r, 'verify of a cut multiplexed tape file', 9, /2 streams failed: .*; the other 1 stream\(s\) verified/);
    for (const [i, v] of [A, B, C].entries()) {
      if (i === first) expect(r.stdout).toContain(`(${v} [`);
      else expect(r.stderr).toContain(v);
    }
  });

  it('refuses to restore a lost volume (exit 9, naming the damage), and restores the whole one', async () => {
    // cut after the first label: the two other volumes have no member left at all
    const e = log.entries[1];
    expect(e.kind).toBe('label');
    const early = tapeWith('cut-early', fs.readFileSync(file).subarray(0, end(e)));
    const lost = [A, B, C].find((_, i) => i !== e.source)!;
    const r = await runBundled(['restore', '--from', `tape:${early}#1`, '--volume', lost, '--to', at('lost.vol')], { env });
    expectOneLineError(r, 'restore of a volume the cut file lost', 9, new RegExp(`no stream of ${lost.replace(/[.]/g, '\\.')} is left in this tape file.*damaged \\(the tape file ends at byte`));
    expect(fs.existsSync(at('lost.vol'))).toBe(false);
    const whole = [A, B, C][first];
    const ok = await runBundled(['restore', '--from', `tape:${dir}#1`, '--volume', whole, '--to', at('whole.vol'), '-q'], { env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(await exportSha(at('whole.vol'), { env })).toBe(shas[whole]);
  });

  it('catalog rebuild records the whole stream and lists the two lost ones as skipped', async () => {
    const r = await runBundled(['catalog', 'rebuild', '--from', `tape:${dir}`, '--catalog', at('cut.json'), '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { records: unknown[]; skipped: Array<{ stream: string }> };
    expect(out.records).toHaveLength(1);
    expect(out.skipped).toHaveLength(2);
    for (const [i, v] of [A, B, C].entries()) if (i !== first) expect(out.skipped.some((s) => s.stream.includes(v))).toBe(true);
  });
});

describe('a multiplexed tape file whose backup log has one wrong but well-formed entry', () => {
  /** A copy of the file whose log says `to` where it says `from` in the entry of the member at `offset` (same length: the log stays well-formed). */
  function logEdited(name: string, offset: number, from: string, to: string): string {
    expect(to).toHaveLength(from.length);
    const bytes = Buffer.from(fs.readFileSync(file));
    const start = bytes.lastIndexOf('{"format":"imgstream-backup-log"');
    const line = bytes.indexOf(`"offset":${offset},`, start);
    const lineStart = bytes.lastIndexOf('\n', line) + 1;
    const field = bytes.indexOf(from, lineStart);
    expect(field).toBeGreaterThan(0);
    expect(field).toBeLessThan(line + 20);
    bytes.write(to, field, 'latin1');
    return tapeWith(name, bytes);
  }

  async function everyStreamWhole(dir: string, why: RegExp): Promise<void> {
    const v = await runBundled(['verify', `tape:${dir}`], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/3 stream\(s\) verified/);
    expect(v.stderr.trim().split('\n')).toHaveLength(1);
    expect(v.stderr).toMatch(why);
    for (const vol of [A, B, C]) {
      const dst = at(`${path.basename(dir)}-${path.basename(vol)}`);
      const r = await runBundled(['restore', '--from', `tape:${dir}#1`, '--volume', vol, '--to', dst, '-q'], { env });
      expect(r.code, r.stderr).toBe(0);
      expect(await exportSha(dst, { env })).toBe(shas[vol]);
    }
    const rb = await runBundled(['catalog', 'rebuild', '--from', `tape:${dir}`, '--catalog', at(`${path.basename(dir)}.json`), '--json'], { env });
    expect(rb.code, rb.stderr).toBe(0);
    expect((JSON.parse(rb.stdout) as { records: unknown[] }).records).toHaveLength(3);
  }

  it('a member size one byte off (the same tar blocks): the headers are walked instead, every stream verifies and restores, one line says the log is damaged', async () => {
    const e = log.entries.find((x) => x.kind === 'end' && x.size % 512 !== 511 && String(x.size + 1).length === String(x.size).length)!;
    const dir = logEdited('size-off', e.offset, `"size":${e.size},`, `"size":${e.size + 1},`);
    await everyStreamWhole(dir, /the backup log is damaged: it has no end member of stream \S+ at byte \d+ \(the streams were found by their members' headers/);
  });

  it('a member offset off by a record: found before any member is read, and the same', async () => {
    const e = log.entries.find((x) => x.kind === 'part' && x.offset >= 100000)!;
    const wrong = String(e.offset + 10240);
    const dir = logEdited('offset-off', e.offset, `"offset":${e.offset},`, `"offset":${wrong},`);
    await everyStreamWhole(dir, /the backup log is damaged: its entry of a part member of stream \S+ says byte \d+, where the member before ends at byte \d+/);
  });

  it('a time that is no time: the log is damaged, not believed', async () => {
    const e = log.entries.find((x) => x.kind === 'label')!;
    const dir = logEdited('time-off', e.offset, '"time":"20', '"time":"X0');
    await everyStreamWhole(dir, /the backup log is missing or damaged \(the streams were found/);
  });
});
