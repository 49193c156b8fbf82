// A logical map leaf whose entries point past the end of the volume (a damaged block, a
// truncated copy). Such a VBN used to be read as it was: past the end of the file it
// read as zeros, so `volume export` wrote a disk of zeros and exited 0. Every reader now
// refuses it as damage (exit 9), naming the volume file and how to check it, and writes
// no output; `volume check` names the node. A dump carries the map's blocks as they are,
// like every block of its image, so it checks the map nodes it carries and fails the same
// way (a level 0 reads every map node for it, an incremental only those that changed).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { cliOk, runCli, sha256File, stderrLines, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const root = tempDir('imgstream-damaged-map-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (n: string) => path.join(root, n);
const vol = at('damaged.vol');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  writeImage(at('image.raw'), 256, BS, 11);
  // 1 MiB: a map of depth 1, its root the only leaf
  await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
  await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
  await setupOk(['snapshot', 'create', vol, 'before'], { env });
  const v = Volume.openView(vol);
  const leafAt = v.layout.vbnOffset(v.rootRecord.mapRoot);
  const outside = v.nblocks + 1000;
  expect(v.rootRecord.mapDepth).toBe(1);
  v.close();
  const bytes = fs.readFileSync(vol);
  let damaged = 0;
  for (let slot = 0; slot < BS / 8; slot++) {
    if (bytes.readUInt32LE(leafAt + slot * 8) === 0) continue;
    bytes.writeUInt32LE(outside, leafAt + slot * 8);
    damaged++;
  }
  expect(damaged).toBeGreaterThan(100);
  fs.writeFileSync(vol, bytes);
});

describe('a logical map that points outside the volume', () => {
  it.each([
    ['volume export', () => ['volume', 'export', vol, '--to', at('out.raw')]],
    ['volume export of a snapshot', () => ['volume', 'export', `${vol}@before`, '--to', at('out.raw')]],
  ])('%s: exit 9 naming the volume and its check, nothing written', (_what, args) => {
    const before = sha256File(vol);
    const r = runCli(args(), { env });
    expect(r.code, r.stderr).toBe(9);
    expect(stderrLines(r)).toEqual([`imgstream: ${vol}: logical map node at VBN ${mapRootOf()} points outside the volume (${outsideOf()}) (run: imgstream volume check ${vol})`]);
    expect(fs.readdirSync(root).filter((n) => n.startsWith('out') || n.startsWith('.out'))).toEqual([]);
    expect(sha256File(vol)).toBe(before);
  });

  it('dump: exit 9 naming the volume and its check, no stream written, the volume as it was', () => {
    const before = sha256File(vol);
    const r = runCli(['dump', vol, '--level', '0', '--snapshot', 'before', '--to', at('out.l0')], { env });
    expect(r.code, r.stderr).toBe(9);
    expect(stderrLines(r)).toEqual([`imgstream: ${vol}: logical map node at VBN ${mapRootOf()} points outside the volume (${outsideOf()}) (run: imgstream volume check ${vol})`]);
    expect(fs.readdirSync(root).filter((n) => n.includes('out'))).toEqual([]);
    expect(sha256File(vol)).toBe(before);
    // taking its own snapshot: refused the same way, and the snapshot it took is gone again
    const own = runCli(['dump', vol, '--level', '0', '--to', at('out.l0')], { env });
    expect(own.code, own.stderr).toBe(9);
    expect(runCli(['snapshot', 'list', vol, '--json'], { env }).stdout).not.toContain('dump-l0');
  });

  it('dump level 1: the incremental checks the map nodes it carries', async () => {
    const v1 = at('incremental.vol');
    writeImage(at('image2.raw'), 256, BS, 12);
    await setupOk(['volume', 'create', v1, '--size', '1M'], { env });
    await setupOk(['volume', 'import', v1, '--from', at('image.raw')], { env });
    await setupOk(['snapshot', 'create', v1, 'mon'], { env });
    cliOk(['dump', v1, '--level', '0', '--snapshot', 'mon', '--to', at('inc.l0')], { env });
    await setupOk(['volume', 'import', v1, '--from', at('image2.raw')], { env });
    await setupOk(['snapshot', 'create', v1, 'tue'], { env });
    const v = Volume.openView(v1);
    const leaf = v.snapshots().find((x) => x.name === 'tue')!.mapRoot;
    const leafAt = v.layout.vbnOffset(leaf);
    const outside = v.nblocks + 7;
    v.close();
    const fd = fs.openSync(v1, 'r+');
    const word = Buffer.alloc(4);
    word.writeUInt32LE(outside);
    fs.writeSync(fd, word, 0, 4, leafAt + 8 * 3);
    fs.closeSync(fd);
    const r = runCli(['dump', v1, '--level', '1', '--snapshot', 'tue', '--to', at('inc.l1')], { env });
    expect(r.code, r.stderr).toBe(9);
    expect(stderrLines(r)).toEqual([`imgstream: ${v1}: logical map node at VBN ${leaf} points outside the volume (${outside}) (run: imgstream volume check ${v1})`]);
    expect(fs.existsSync(at('inc.l1'))).toBe(false);
  });

  it('volume check names it', () => {
    const r = runCli(['volume', 'check', vol], { env });
    expect(r.code, r.stderr).toBe(9);
    expect(r.stdout + r.stderr).toMatch(/points outside the volume/);
  });
});

function mapRootOf(): number {
  const v = Volume.openView(vol);
  try {
    return v.rootRecord.mapRoot;
  } finally {
    v.close();
  }
}

function outsideOf(): number {
  const v = Volume.openView(vol);
  try {
    return v.nblocks + 1000;
  } finally {
    v.close();
  }
}
