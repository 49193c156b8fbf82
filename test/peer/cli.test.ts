// Dumps to a peer and restores from it through real processes: `imgstream serve peer`
// and the dump, restore and verify commands, over TLS checked by a CA and by a pinned
// fingerprint, and in plain mode when both sides ask for it. What comes back exports
// byte for byte like the source. Refusals (a missing or wrong token, a token file others
// may read, a certificate that does not match, plain against TLS, an existing name) end
// in one line with their exit code and leave the daemon's directory as it was; a damaged
// or incomplete stream is refused by the daemon and never appears under its name.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptError, ExistsError, BusyError, NotAVolumeError } from '../../src/core/errors.js';
import { peerTarget } from '../../src/media/index.js';
import { runCliAsync, sha256File, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { exportSha, expectOneLineError } from '../support/stream-cli.js';
import { hasOpenssl, listTree, makeCert, makeToken, makeVolume, startDaemon, type DaemonProcess, type TestCert, type TestVolume } from './support.js';

const root = tempDir('imgstream-peer-cli-');
const work = path.join(root, 'work');
const store = path.join(root, 'store'); // the TLS daemon's directory
const plainStore = path.join(root, 'plain-store');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (f: string) => path.join(work, f);
const cli = (args: string[]) => runCliAsync(args, { env, timeoutMs: 120_000 });
async function ok(args: string[]): Promise<CliResult> {
  const r = await cli(args);
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r;
}

let token: string;
let cert: TestCert;
let otherCert: TestCert;
let v: TestVolume;
let tlsd: DaemonProcess;
let plaind: DaemonProcess;
/** Client flags for the TLS daemon, checked by its CA. */
let caFlags: string[];

beforeAll(async () => {
  for (const d of [work, store, plainStore]) fs.mkdirSync(d, { recursive: true });
  if (!hasOpenssl) return;
  token = makeToken(root, 'token');
  cert = makeCert(root, 'daemon');
  otherCert = makeCert(root, 'other');
  v = await makeVolume(work, env);
  tlsd = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', token, '--tls-cert', cert.cert, '--tls-key', cert.key]);
  plaind = await startDaemon(['--root', plainStore, '--listen', '127.0.0.1:0', '--token-file', token, '--plain']);
  caFlags = ['--token-file', token, '--tls-ca', cert.cert];
});

afterAll(async () => {
  await tlsd?.stop();
  await plaind?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

const tlsUrl = (name: string) => `peer://localhost:${tlsd.info.port}/${name}`;

describe.skipIf(!hasOpenssl)('dump to a peer, restore from it', () => {
  it('prints a ready line with the URL and the certificate fingerprint clients pin', () => {
    expect(tlsd.info).toMatchObject({ url: `peer://127.0.0.1:${tlsd.info.port}/`, host: '127.0.0.1', tls: true, fingerprint: cert.fingerprint, root: fs.realpathSync(store) });
    expect(tlsd.info.services).toEqual(['mirror.abandon', 'mirror.break', 'mirror.resync', 'mirror.state', 'mirror.update', 'protect.export', 'protect.ship', 'protect.status', 'replicate.pull', 'stream.get', 'stream.put']);
    expect(plaind.info).toMatchObject({ tls: false, fingerprint: null });
  });

  it('over TLS checked by a CA: a level 0 and a level 1, verified, restored (also from the catalog), export like the source', async () => {
    const catalog = at('tls-catalog.json');
    const l0 = JSON.parse((await ok(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', tlsUrl('site-a/v.l0'), ...caFlags, '--catalog', catalog, '--json'])).stdout);
    const l1 = JSON.parse((await ok(['dump', v.vol, '--level', '1', '--snapshot', 's2', '--to', tlsUrl('site-a/v.l1'), ...caFlags, '--catalog', catalog, '--json'])).stdout);
    expect(l0.media).toEqual({ kind: 'peer', location: tlsUrl('site-a/v.l0') });
    // stored under their names, complete, with nothing else beside them
    expect(listTree(store).filter((f) => f.startsWith('site-a'))).toEqual(['site-a/', 'site-a/v.l0', 'site-a/v.l1']);
    expect(fs.statSync(path.join(store, 'site-a/v.l0')).size).toBe(l0.streamBytes);
    expect(fs.statSync(path.join(store, 'site-a/v.l1')).size).toBe(l1.streamBytes);
    // the stored file is the stream a file dump writes, byte for byte but for its id and dates: verify reads it locally too
    await ok(['verify', path.join(store, 'site-a/v.l0'), path.join(store, 'site-a/v.l1')]);

    const verified = JSON.parse((await ok(['verify', tlsUrl('site-a/v.l0'), tlsUrl('site-a/v.l1'), ...caFlags, '--json'])).stdout);
    expect(verified.streams.map((s: { level: number }) => s.level)).toEqual([0, 1]);

    await ok(['restore', '--from', tlsUrl('site-a/v.l0'), '--from', tlsUrl('site-a/v.l1'), '--to', at('r1.vol'), ...caFlags]);
    expect(await exportSha(`${at('r1.vol')}@s1`, { env })).toBe(v.s1);
    expect(await exportSha(`${at('r1.vol')}@s2`, { env })).toBe(v.s2);
    expect(await exportSha(at('r1.vol'), { env })).toBe(v.s2);

    await ok(['restore', '--to', at('r2.vol'), '--as-of', 's2', '--catalog', catalog, ...caFlags]);
    expect(await exportSha(`${at('r2.vol')}@s2`, { env })).toBe(v.s2);
    const noToken = await cli(['restore', '--to', at('r3.vol'), '--as-of', 's2', '--catalog', catalog]);
    expectOneLineError(noToken, 'restore --as-of a peer chain without --token-file', 2, /needs --token-file/);
  });

  it('with a pinned fingerprint instead of a CA', async () => {
    const pin = ['--token-file', token, '--tls-fingerprint', cert.fingerprint];
    await ok(['dump', v.vol, '--level', '0', '--snapshot', 's2', '--to', `peer://127.0.0.1:${tlsd.info.port}/pinned.l0`, ...pin, '--catalog', at('pin-catalog.json')]);
    await ok(['restore', '--from', `peer://127.0.0.1:${tlsd.info.port}/pinned.l0`, '--to', at('pinned.vol'), ...pin]);
    expect(await exportSha(`${at('pinned.vol')}@s2`, { env })).toBe(v.s2);
  });

  it('in plain mode when both sides ask for it, and not when only one does', async () => {
    const url = `peer://127.0.0.1:${plaind.info.port}/plain.l0`;
    await ok(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', url, '--token-file', token, '--plain', '--catalog', at('plain-catalog.json')]);
    await ok(['restore', '--from', url, '--to', at('plain.vol'), '--token-file', token, '--plain']);
    expect(await exportSha(`${at('plain.vol')}@s1`, { env })).toBe(v.s1);
    expect(listTree(plainStore)).toEqual(['plain.l0']);

    const before = listTree(store);
    const plainToTls = await cli(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', tlsUrl('x.l0'), '--token-file', token, '--plain', '--catalog', at('c.json')]);
    expectOneLineError(plainToTls, 'plain client, TLS daemon', 12, /the connection closed during the handshake\W.*TLS|speaks TLS/);
    const tlsToPlain = await cli(['verify', url, ...caFlags]);
    expectOneLineError(tlsToPlain, 'TLS client, plain daemon', 12, /does not speak TLS|closed the connection/);
    expect(listTree(store)).toEqual(before);
    expect(listTree(plainStore)).toEqual(['plain.l0']);
  });

  it('refuses what it must, in one line with its exit code, leaving the directory and the volume as they were', async () => {
    const loose = makeToken(root, 'loose-token', { mode: 0o644 });
    const wrong = makeToken(root, 'wrong-token');
    const base = ['dump', v.vol, '--level', '0', '--to', tlsUrl('refused.l0'), '--catalog', at('refused-catalog.json')];
    const cases: Array<[string, string[], number, RegExp]> = [
      ['no token file', [...base, '--tls-ca', cert.cert], 2, /needs --token-file FILE/],
      ['no CA, no pin, not plain', [...base, '--token-file', token], 2, /needs --tls-ca FILE or --tls-fingerprint/],
      ['plain and a CA', [...base, '--token-file', token, '--plain', '--tls-ca', cert.cert], 2, /cannot be combined/],
      ['a missing token file', [...base, '--token-file', path.join(root, 'nope'), '--tls-ca', cert.cert], 3, /token file .*nope: no such file/],
      ['a token file others may read', [...base, '--token-file', loose, '--tls-ca', cert.cert], 4, /group or others may access it \(mode 0644\).*chmod 600/],
      ['a wrong token', [...base, '--token-file', wrong, '--tls-ca', cert.cert], 11, /authentication failed/],
      ['another CA', [...base, '--token-file', token, '--tls-ca', otherCert.cert], 11, /does not check out against/],
      ['another fingerprint', [...base, '--token-file', token, '--tls-fingerprint', otherCert.fingerprint], 11, new RegExp(`its TLS certificate is ${cert.fingerprint}, not the pinned ${otherCert.fingerprint}`)],
      ['a malformed fingerprint', [...base, '--token-file', token, '--tls-fingerprint', 'sha256:abc'], 4, /invalid certificate fingerprint/],
      ['a name with ..', ['dump', v.vol, '--level', '0', '--to', `peer://localhost:${tlsd.info.port}/../escape.l0`, ...caFlags], 4, /"\.\." leads out of the directory/],
      ['an absolute name', ['dump', v.vol, '--level', '0', '--to', `peer://localhost:${tlsd.info.port}//etc/escape.l0`, ...caFlags], 4, /absolute path/],
      ['peer flags without a peer', ['verify', path.join(store, 'site-a/v.l0'), '--token-file', token], 2, /--token-file is for peer:\/\//],
      ['a stream the peer does not have', ['verify', tlsUrl('no/such.l0'), ...caFlags], 3, /no\/such\.l0: no such stream on the peer/],
      ['a directory on the peer', ['verify', tlsUrl('site-a'), ...caFlags], 4, /site-a: is a directory on the peer/],
      ['nobody listening', ['verify', 'peer://127.0.0.1:1/x.l0', ...caFlags], 12, /connection refused/],
    ];
    const snapshotsBefore = (await ok(['snapshot', 'list', v.vol, '--json'])).stdout;
    const volumeBefore = sha256File(v.vol);
    for (const [what, args, exit, pattern] of cases) {
      const before = listTree(store);
      const r = await cli(args);
      expectOneLineError(r, what, exit, pattern);
      expect(listTree(store), what).toEqual(before);
    }
    // dumps without --snapshot were refused before a snapshot was taken for them
    expect((await ok(['snapshot', 'list', v.vol, '--json'])).stdout).toBe(snapshotsBefore);
    expect(sha256File(v.vol)).toBe(volumeBefore);
    expect(tlsd.alive()).toBe(true);
    expect(tlsd.stderr()).toMatch(/auth failed: wrong token/);
  });

  it('replaces an existing name only with --force, checked before a snapshot is taken', async () => {
    const url = tlsUrl('forced.l0');
    await ok(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--to', url, ...caFlags, '--catalog', at('force-catalog.json')]);
    const first = sha256File(path.join(store, 'forced.l0'));
    const snapshots = (await ok(['snapshot', 'list', v.vol, '--json'])).stdout;
    const again = await cli(['dump', v.vol, '--level', '0', '--to', url, ...caFlags, '--catalog', at('force-catalog.json')]);
    expectOneLineError(again, 'an existing name', 6, /forced\.l0: already exists on the peer \(pass --force to replace it\)/);
    expect((await ok(['snapshot', 'list', v.vol, '--json'])).stdout).toBe(snapshots);
    expect(sha256File(path.join(store, 'forced.l0'))).toBe(first);
    await ok(['dump', v.vol, '--level', '0', '--snapshot', 's2', '--to', url, ...caFlags, '--force', '--catalog', at('force-catalog.json')]);
    expect(sha256File(path.join(store, 'forced.l0'))).not.toBe(first);
    await ok(['restore', '--from', url, '--to', at('forced.vol'), ...caFlags]);
    expect(await exportSha(`${at('forced.vol')}@s2`, { env })).toBe(v.s2);
  });

  it('stores only complete, valid streams: damaged, truncated and padded ones are refused and leave nothing', async () => {
    const good = fs.readFileSync(path.join(store, 'site-a/v.l0'));
    const flip = (at: number) => {
      const b = Buffer.from(good);
      b[at] ^= 0x40;
      return b;
    };
    const bad: Array<[string, Buffer, RegExp]> = [
      ['empty', Buffer.alloc(0), /incomplete: it ends before it starts/],
      ['only a preamble', good.subarray(0, 16), /incomplete/],
      ['cut before the trailer', good.subarray(0, good.length - 112), /incomplete/],
      ['cut in the middle', good.subarray(0, good.length >> 1), /incomplete/],
      ['a flipped bit in a data record', flip(good.length >> 1), /checksum|does not decompress|damaged/],
      ['a flipped bit in the trailer', flip(good.length - 50), /trailer|checksum|counts/],
      ['bytes after the trailer', Buffer.concat([good, Buffer.from('extra')]), /unexpected bytes after the trailer/],
      ['not a stream', Buffer.alloc(100_000, 0x41), /not an imgstream image stream/],
    ];
    const client = { tokenFile: token, tls: { ca: cert.cert } };
    for (const [what, bytes, pattern] of bad) {
      const before = listTree(store);
      const t = peerTarget(tlsUrl(`bad/${what.replace(/\W+/g, '-')}`), client);
      let err: unknown = null;
      try {
        for (let o = 0; o < bytes.length; o += 300_000) await t.write(bytes.subarray(o, o + 300_000));
        await t.finish();
      } catch (e) {
        err = e;
      }
      // bytes that are no stream at all are refused as such (not-a-volume), damaged ones as corrupt
      expect(err, what).toBeInstanceOf(what === 'not a stream' ? NotAVolumeError : CorruptError);
      expect((err as Error).message, what).toMatch(pattern);
      await t.abort();
      // nothing under the name, no temporary file (the directory for it may stay)
      expect(listTree(store).filter((f) => !f.endsWith('/')), what).toEqual(before.filter((f) => !f.endsWith('/')));
    }
    // the same bytes, undamaged, are taken
    const t = peerTarget(tlsUrl('bad/undamaged'), client);
    await t.write(good);
    expect(await t.finish()).toEqual({ kind: 'peer', location: tlsUrl('bad/undamaged') });
    expect(fs.readFileSync(path.join(store, 'bad/undamaged')).equals(good)).toBe(true);
  });

  it('refuses a second transfer to a name while one is in progress', async () => {
    const client = { tokenFile: token, tls: { ca: cert.cert } };
    const first = peerTarget(tlsUrl('twice.l0'), client);
    await first.open();
    const second = peerTarget(tlsUrl('twice.l0'), client);
    await expect(second.open()).rejects.toBeInstanceOf(BusyError);
    await first.write(fs.readFileSync(path.join(store, 'site-a/v.l0')));
    await first.finish();
    const third = peerTarget(tlsUrl('twice.l0'), client);
    await expect(third.open()).rejects.toBeInstanceOf(ExistsError);
    await third.abort();
  });
});

describe('serve peer refuses to start wrong', () => {
  const serve = (args: string[]) => cli(['serve', 'peer', ...args]);
  it('without TLS or --plain, with both, or with bad files and addresses: one line each', async () => {
    if (!hasOpenssl) return;
    const loose = makeToken(root, 'serve-loose', { mode: 0o640 });
    const base = ['--root', store, '--listen', '127.0.0.1:0'];
    const cases: Array<[string, string[], number, RegExp]> = [
      ['no TLS, no --plain', [...base, '--token-file', token], 2, /give --tls-cert FILE and --tls-key FILE, or --plain/],
      ['TLS and --plain', [...base, '--token-file', token, '--plain', '--tls-cert', cert.cert, '--tls-key', cert.key], 2, /^imgstream: --tls-(cert|key) cannot be combined with --plain|^imgstream: --plain cannot be combined with --tls-(cert|key)/],
      ['a certificate without its key', [...base, '--token-file', token, '--tls-cert', cert.cert], 2, /tls-key/],
      ['no token file', [...base, '--plain'], 2, /token-file/],
      ['a token file others may read', [...base, '--token-file', loose, '--plain'], 4, /mode 0640\).*chmod 600/],
      ['a missing directory', ['--root', path.join(root, 'nope'), '--listen', '127.0.0.1:0', '--token-file', token, '--plain'], 3, /--root .*nope: no such directory/],
      ['a file as directory', ['--root', token, '--listen', '127.0.0.1:0', '--token-file', token, '--plain'], 4, /not a directory/],
      ['a bad address', ['--root', store, '--listen', '127.0.0.1', '--token-file', token, '--plain'], 4, /invalid listen address/],
      ['an address in use', ['--root', store, '--listen', `127.0.0.1:${tlsd.info.port}`, '--token-file', token, '--plain'], 7, /address already in use/],
      ['a key that is not the certificate\'s', [...base, '--token-file', token, '--tls-cert', cert.cert, '--tls-key', otherCert.key], 4, /--tls-key/],
    ];
    for (const [what, args, exit, pattern] of cases) expectOneLineError(await serve(args), what, exit, pattern);
  });
});
