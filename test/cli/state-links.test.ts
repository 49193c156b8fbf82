// The catalog and the mirror state shared through a symbolic link (--catalog my.json ->
// shared/c.json, IMGSTREAM_MIRROR_STATE the same): each write replaces the file the link
// points to, never the link (a rename onto the link's path made it a regular file, and the
// shared file silently stopped getting records). A dangling link's target is created when
// its directory exists, and refused naming both when not.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { expectOneLineError } from '../support/stream-cli.js';
import { volumeWithSnapshot } from '../support/in-process.js';
import { writeFileDurably } from '../../src/fs/durable-file.js';

const root = tempDir('imgstream-state-links-');
const at = (n: string) => path.join(root, n);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_CATALOG: at('default-catalog.json'), IMGSTREAM_MIRROR_STATE: at('default-mirrors.json') };
const vol = at('v.vol');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
beforeAll(async () => {
  fs.mkdirSync(at('shared'));
  await volumeWithSnapshot(vol, at('v.raw'), env);
});

const isLink = (p: string) => fs.lstatSync(p).isSymbolicLink();
const dumpIds = (file: string): string[] => (JSON.parse(fs.readFileSync(file, 'utf8')) as { dumps: Array<{ id: string }> }).dumps.map((d) => d.id);

describe('a catalog reached through a symbolic link', () => {
  it('dump and catalog rebuild write the file it points to and keep the link', () => {
    fs.symlinkSync('shared/c.json', at('my.json')); // dangling: the first record creates shared/c.json
    const a = cliJson<{ streamId: string }>(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', at('a.l0'), '--catalog', at('my.json')], { env });
    expect(isLink(at('my.json'))).toBe(true);
    expect(dumpIds(at('shared/c.json'))).toEqual([a.streamId]);
    const b = cliJson<{ streamId: string }>(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', at('b.l0'), '--catalog', at('my.json')], { env });
    expect(isLink(at('my.json'))).toBe(true);
    expect(dumpIds(at('shared/c.json'))).toEqual([a.streamId, b.streamId]);
    // a link to a link, rebuilt from the streams
    fs.symlinkSync(at('my.json'), at('their.json'));
    fs.writeFileSync(at('shared/c.json'), '');
    expect(runCli(['catalog', 'rebuild', '--from', at('a.l0'), '--from', at('b.l0'), '--catalog', at('their.json')], { env }).code).toBe(0);
    expect(isLink(at('their.json')) && isLink(at('my.json'))).toBe(true);
    expect(dumpIds(at('shared/c.json')).sort()).toEqual([a.streamId, b.streamId].sort());
    expect(fs.readdirSync(at('shared'))).toEqual(['c.json']);
  });

  it('a multiplexed dump keeps its backup log beside the file the link points to, where tape log finds it', async () => {
    const vol2 = at('v2.vol');
    await volumeWithSnapshot(vol2, at('v2.raw'), env);
    fs.symlinkSync('shared/cm.json', at('mm.json'));
    fs.mkdirSync(at('tape'));
    const r = runCli(['dump', vol, vol2, '--level', '0', '--snapshot', 's1', '--to', `tape:${at('tape')}`, '--new-tape', '--multiplex', '--catalog', at('mm.json')], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readdirSync(at('shared/cm.json.logs'))).toHaveLength(1);
    expect(fs.existsSync(at('mm.json.logs'))).toBe(false);
    const log = runCli(['tape', 'log', `tape:${at('tape')}#1`, '--catalog', at('mm.json')], { env });
    expect(log.code, log.stderr).toBe(0);
  });

  it('a dangling link into a directory that does not exist is refused, naming both, and nothing is made', () => {
    fs.symlinkSync('gone/c.json', at('lost.json'));
    const r = runCli(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', at('lost.l0'), '--catalog', at('lost.json')], { env });
    expectOneLineError(r, 'dump --catalog dangling link', 3, /lost\.json: a symbolic link to .*gone\/c\.json, whose directory .*gone does not exist/);
    expect(fs.existsSync(at('gone'))).toBe(false);
    expect(isLink(at('lost.json'))).toBe(true);
    // refused before the dump wrote anything (it was refused once the stream was complete, its file kept)
    expect(fs.existsSync(at('lost.l0'))).toBe(false);
    expect(r.stderr).not.toMatch(/is complete/);
  });
});

describe('a mirror state reached through a symbolic link', () => {
  it('mirror update writes the file it points to and keeps the link', () => {
    fs.symlinkSync('shared/m.json', at('state.json'));
    const r = runCli(['mirror', 'update', vol, '--to', at('m.vol'), '--state', at('state.json')], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(isLink(at('state.json'))).toBe(true);
    expect(fs.readFileSync(at('shared/m.json'), 'utf8')).toMatch(/"relationships"/);
    expect(fs.readdirSync(at('shared')).filter((n) => n.startsWith('m.json'))).toEqual(['m.json']);
  });
});

describe('writeFileDurably', () => {
  it('replaces the target of a link, not the link', () => {
    fs.writeFileSync(at('shared/s.json'), 'old');
    fs.symlinkSync('shared/s.json', at('s-link.json'));
    writeFileDurably(at('s-link.json'), 'new');
    expect(isLink(at('s-link.json'))).toBe(true);
    expect(fs.readFileSync(at('shared/s.json'), 'utf8')).toBe('new');
  });
});
