// Names a client sends cannot lead out of the daemon's directory. A real `imgstream
// serve peer` gets every kind of bad name (.., absolute, NUL and control characters,
// reserved leading characters, overlong, empty components, wrong types, and symbolic
// links an administrator left that point outside or nowhere) for stream.put and
// stream.get, straight from the client library (the command line refuses most of them
// before connecting, which is checked too). Each is answered "invalid-input", and
// nothing inside or outside the directory changes. Links that stay inside are followed.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectPeer, type PeerClientOptions } from '../../src/peer/index.js';
import { peerTarget } from '../../src/media/index.js';
import { hashTree, runCliAsync } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { exportSha, expectOneLineError } from '../support/stream-cli.js';
import { hasOpenssl, makeToken, makeVolume, startDaemon, type DaemonProcess, type TestVolume } from './support.js';

const base = tempDir('imgstream-peer-names-');
const store = path.join(base, 'store');
const outside = path.join(base, 'outside');
const work = path.join(base, 'work');
const env = { IMGSTREAM_LOCK_DIR: path.join(work, 'locks'), IMGSTREAM_CATALOG: path.join(work, 'catalog.json') };
let token: string;
let d: DaemonProcess;
let v: TestVolume;
let client: PeerClientOptions;
/** A valid image stream (a level 0 of s1). */
let stream: Buffer;

beforeAll(async () => {
  for (const dir of [store, outside, work, path.join(store, 'sub')]) fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(outside, 'secret'), 'not for peers');
  fs.symlinkSync('../outside', path.join(store, 'escape'));
  fs.symlinkSync('../outside/secret', path.join(store, 'secret-link'));
  fs.symlinkSync('../outside/none/x', path.join(store, 'dangling'));
  fs.symlinkSync('sub', path.join(store, 'inner'));
  if (!hasOpenssl) return;
  token = makeToken(work, 'token');
  client = { tokenFile: token, plain: true };
  v = await makeVolume(work, env, 1);
  const r = await runCliAsync(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', path.join(work, 'v.l0'), '-q'], { env, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  stream = fs.readFileSync(path.join(work, 'v.l0'));
  d = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', token, '--plain']);
});

afterAll(async () => {
  await d?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

/** Everything under base except the client's work directory. */
const state = () => {
  const t = hashTree(base);
  for (const k of Object.keys(t)) if (k.startsWith('work')) delete t[k];
  return t;
};

/** Sends a HELLO and returns the daemon's first answer. */
async function ask(hello: Record<string, unknown>): Promise<Record<string, unknown> | null> {
  const ch = await connectPeer(`peer://127.0.0.1:${d.info.port}`, client);
  try {
    await ch.send(hello);
    const m = await ch.receive();
    return m?.msg ?? null;
  } finally {
    ch.destroy();
  }
}

const BAD_NAMES: Array<[unknown, RegExp]> = [
  ['../x', /"\.\." leads out/],
  ['../outside/secret', /"\.\." leads out/],
  ['../../../../../../tmp/evil', /"\.\." leads out/],
  ['sub/../../x', /"\.\." leads out/],
  ['/abs', /absolute path/],
  ['/tmp/evil', /absolute path/],
  ['//double', /absolute path/],
  ['a\0b', /NUL/],
  ['\0', /NUL/],
  ['x\ny', /control character/],
  ['tab\there', /control character/],
  ['del\x7f', /control character/],
  ['-rf', /starts with "-"/],
  ['sub/-x', /starts with "-"/],
  ['.hidden', /starts with "\."/],
  ['.x.partial-1', /starts with "\."/],
  ['sub/.x', /starts with "\."/],
  ['.', /starts with "\."|"\." component/],
  ['a//b', /empty path component/],
  ['a/', /empty path component/],
  ['', /empty|needs a name/],
  ['x'.repeat(256), /longer than 255 bytes/],
  ['escape/new', /outside the daemon's directory/],
  ['escape/secret', /outside the daemon's directory/],
  ['escape', /outside the daemon's directory/],
  ['secret-link', /outside the daemon's directory/],
  ['dangling', /outside the daemon's directory/],
  ['dangling/x', /outside the daemon's directory/],
  ['sub/../escape/x', /"\.\." leads out/],
  [42, /not a string/],
  [{ path: '../x' }, /not a string/],
  [null, /not a string/],
  [['a'], /not a string/],
];

describe.skipIf(!hasOpenssl)('names are contained in the daemon\'s directory', () => {
  it('refuses every bad name for stream.put and stream.get, changing nothing anywhere', async () => {
    const before = state();
    for (const [name, pattern] of BAD_NAMES) {
      for (const op of ['stream.put', 'stream.get']) {
        const what = `${op} ${JSON.stringify(name)}`;
        const answer = await ask({ op, name, force: true });
        expect(answer?.error, what).toMatchObject({ code: 'invalid-input' });
        expect((answer?.error as { message: string }).message, what).toMatch(pattern);
        expect((answer?.error as { message: string }).message, what).not.toMatch(/[\x00-\x1f]/);
      }
    }
    expect(state()).toEqual(before);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('not for peers');
    expect(d.alive()).toBe(true);
  });

  it('refuses bad names on the command line before connecting, and escaping links at the daemon', async () => {
    const before = state();
    const url = (n: string) => `peer://127.0.0.1:${d.info.port}/${n}`;
    const flags = ['--token-file', token, '--plain'];
    const dumpTo = (n: string) => runCliAsync(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', url(n), ...flags], { env, timeoutMs: 120_000 });
    const connections = () => (d.stderr().match(/: connect$/gm) ?? []).length;
    const seen = connections();
    expectOneLineError(await dumpTo('..%2Fescape'), 'an encoded ..', 4, /"\.\." leads out/);
    expectOneLineError(await dumpTo('a%00b'), 'an encoded NUL', 4, /NUL/);
    expectOneLineError(await dumpTo('%2Fabs'), 'an encoded absolute path', 4, /absolute path/);
    expect(connections(), 'the client refused these itself').toBe(seen);
    expectOneLineError(await dumpTo('escape/new.l0'), 'a link out of the directory', 4, /leads outside the daemon's directory/);
    expectOneLineError(await runCliAsync(['verify', url('secret-link'), ...flags], { env }), 'reading through a link out', 4, /leads outside/);
    expect(state()).toEqual(before);
  });

  it('follows links that stay inside, and creates directories inside for nested names', async () => {
    const t = peerTarget(`peer://127.0.0.1:${d.info.port}/inner/through-link.l0`, client);
    await t.write(stream);
    await t.finish();
    expect(fs.readFileSync(path.join(store, 'sub', 'through-link.l0')).equals(stream)).toBe(true);
    const nested = peerTarget(`peer://127.0.0.1:${d.info.port}/site-b/2026/vm%201.l0`, client);
    await nested.write(stream);
    await nested.finish();
    expect(fs.readFileSync(path.join(store, 'site-b', '2026', 'vm 1.l0')).equals(stream)).toBe(true);
    const r = await runCliAsync(['restore', '--from', `peer://127.0.0.1:${d.info.port}/site-b/2026/vm%201.l0`, '--to', path.join(work, 'back.vol'), '--token-file', token, '--plain'], { env, timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(await exportSha(`${path.join(work, 'back.vol')}@s1`, { env })).toBe(v.s1);
    expect(fs.readdirSync(outside)).toEqual(['secret']);
  });
});
