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
    const lost = [A, B, C].find((_, i) => i !== first && !log.entries.some((e) => e.source === i && e.kind === 'label' && end(e) <= fs.statSync(path.join(dir, 'file0001.tar')).size))!;
    const r = await runBundled(['restore', '--from', `tape:${dir}#1`, '--volume', lost, '--to', at('lost.vol')], { env });
    expectOneLineError(r, 'restore of a volume the cut file lost', 9, new RegExp(`no stream of ${lost.replace(/[.]/g, '\\.')} is left in this tape file.*damaged`));
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
