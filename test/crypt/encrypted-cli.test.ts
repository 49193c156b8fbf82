// Encrypted streams through the built CLI on a small volume: a level 0 and a level 1
// dumped with --encrypt --key-file restore (files, a pipe, a tape directory) to exports
// identical to the source's; verify with the key passes and without it says the stream
// is encrypted (exit 11); the catalog says encrypted and holds no key; catalog rebuild
// works without the key. Refused with one stderr line, and the restore target never
// appears: no key, the wrong key, a missing key file, a flipped byte, two records
// swapped, a record from another stream. A dump with a missing key file takes no
// snapshot and writes nothing.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finished, runCliAsync, sleep, spawnCli } from '../support/cli.js';
import { setupOk } from '../support/in-process.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { dirEntries, dump, exportShas, expectOneLineError, ok, pipeline, pool, snapshotNames } from '../support/stream-cli.js';
import * as S from '../../src/format/image-stream.js';

const BS = 4096;
const BLOCKS = 768; // 3 MiB: a level 0 of three DATA records
const root = tempDir('imgstream-crypt-cli-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'no-catalog-given.json') };
const o = { env, timeoutMs: 60_000 };
const src = path.join(root, 'src.vol');
const cat = path.join(root, 'catalog.json');
const key = path.join(root, 'backup.key');
const other = path.join(root, 'other.key');
const l0 = path.join(root, 'src.l0');
const l1 = path.join(root, 'src.l1');
const l0b = path.join(root, 'src.l0.again');
const out = path.join(root, 'out');
let srcShas: Record<string, string>;
const keyHex = randomBytes(32).toString('hex');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  fs.mkdirSync(out);
  fs.writeFileSync(key, keyHex + '\n', { mode: 0o600 });
  fs.writeFileSync(other, randomBytes(32), { mode: 0o600 });
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) / 1024}K`, '--max-snapshots', '8'], { env });
  const img = randomImage(BLOCKS, BS, 1701);
  const raw = path.join(root, 'img.raw');
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
  mutate(img, BS, 60, 1702);
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
  const enc = ['--encrypt', '--key-file', key];
  dump(src, 0, 's1', l0, cat, enc, o);
  expect(dump(src, 1, 's2', l1, cat, enc, o).expression).toBe('s2 - s1');
  dump(src, 0, 's1', l0b, path.join(root, 'catalog.b.json'), [...enc, '--compress', 'none'], o);
  srcShas = await exportShas(src, ['s1', 's2'], o);
}, 120_000);

/** Record spans [offset, length] of a stream file after its preamble. */
function spans(b: Buffer): Array<[number, number]> {
  const r: Array<[number, number]> = [];
  for (let at = S.PREAMBLE_BYTES; at < b.length; at += S.FRAME_BYTES + b.readUInt32LE(at + 4)) r.push([at, S.FRAME_BYTES + b.readUInt32LE(at + 4)]);
  return r;
}
const piece = (b: Buffer, s: [number, number]) => b.subarray(s[0], s[0] + s[1]);

describe('encrypted streams through the CLI', { timeout: 90_000 }, () => {
  it('restores a chain with the key, verifies it, and records it in the catalog without the key', async () => {
    const raw = fs.readFileSync(l0);
    expect(raw.readUInt32LE(12) & S.FEATURE_ENCRYPTED).toBe(S.FEATURE_ENCRYPTED);
    const to = path.join(root, 'files.vol');
    ok(['restore', '--from', l0, '--from', l1, '--to', to, '--key-file', key], o);
    expect(await exportShas(to, ['s1', 's2'], o)).toEqual(srcShas);
    ok(['verify', l0, l1, '--key-file', key], o);
    expectOneLineError(await runCliAsync(['verify', l0, l1], o), 'verify without the key', 11, /src\.l0: the stream is encrypted/);
    expectOneLineError(await runCliAsync(['verify', l1, '--key-file', other], o), 'verify with another key', 11, /wrong key/);
    const catalog = fs.readFileSync(cat, 'utf8');
    expect(JSON.parse(catalog).dumps.map((d: { encrypted?: boolean }) => d.encrypted)).toEqual([true, true]);
    expect(catalog).not.toContain(keyHex);
    expect(ok(['catalog', 'show', JSON.parse(catalog).dumps[0].id, '--catalog', cat], o).stdout).toMatch(/^encrypted +yes/m);
    // rebuilt from the streams alone, without the key
    const rebuilt = path.join(root, 'rebuilt.json');
    ok(['catalog', 'rebuild', '--from', l0, '--from', l1, '--catalog', rebuilt], o);
    const r = JSON.parse(fs.readFileSync(rebuilt, 'utf8')).dumps;
    expect(r.map((d: { top: { name: string }; encrypted?: boolean }) => [d.top.name, d.encrypted])).toEqual([['s1', true], ['s2', true]]);
    // a passphrase instead of a key
    const pass = path.join(root, 'pass');
    fs.writeFileSync(pass, 'correct horse battery staple\n', { mode: 0o600 });
    const p0 = path.join(root, 'pass.l0');
    dump(src, 0, 's2', p0, path.join(root, 'catalog.pass.json'), ['--encrypt', '--passphrase-file', pass], o);
    ok(['verify', p0, '--passphrase-file', pass], o);
    expectOneLineError(await runCliAsync(['verify', p0, '--key-file', key], o), 'verify a passphrase stream with a key file', 11, /pass\.l0: the stream was encrypted with a passphrase/);
    // a chain whose level 0 used the key file and level 1 the passphrase: both flags read it in one go
    const mixedCat = path.join(root, 'catalog.mixed.json');
    const m0 = path.join(root, 'mixed.l0');
    const m1 = path.join(root, 'mixed.l1');
    dump(src, 0, 's1', m0, mixedCat, ['--encrypt', '--key-file', key], o);
    dump(src, 1, 's2', m1, mixedCat, ['--encrypt', '--passphrase-file', pass], o);
    ok(['verify', m0, m1, '--key-file', key, '--passphrase-file', pass], o);
    const mixed = path.join(root, 'mixed.vol');
    ok(['restore', '--from', m0, '--from', m1, '--to', mixed, '--key-file', key, '--passphrase-file', pass], o);
    expect(await exportShas(mixed, ['s1', 's2'], o)).toEqual(srcShas);
    ok(['restore', '--to', path.join(root, 'mixed-as-of.vol'), '--as-of', 's2', '--catalog', mixedCat, '--key-file', key, '--passphrase-file', pass], o);
    expect(await exportShas(path.join(root, 'mixed-as-of.vol'), ['s1', 's2'], o)).toEqual(srcShas);
    // encrypting takes one of them: both is a usage error, before anything is dumped
    expectOneLineError(await runCliAsync(['dump', src, '-l', '0', '-s', 's1', '--to', path.join(root, 'both.l0'), '--catalog', mixedCat, '--encrypt', '--key-file', key, '--passphrase-file', pass], o), 'dump with both', 2, /either a key file or a passphrase file to encrypt with, not both/);
    expect(fs.existsSync(path.join(root, 'both.l0'))).toBe(false);
  });

  it('reads a chain dumped with a key rotated between its dumps, given every key (--key-file repeated), and names the stream no key given decrypts', async () => {
    const rcat = path.join(root, 'catalog.rotated.json');
    const r0 = path.join(root, 'rotated.l0');
    const r1 = path.join(root, 'rotated.l1');
    dump(src, 0, 's1', r0, rcat, ['--encrypt', '--key-file', key], o);
    dump(src, 1, 's2', r1, rcat, ['--encrypt', '--key-file', other], o);
    // the keys in any order, before or after the streams (a key flag never takes a stream for a key)
    ok(['verify', '--key-file', other, '--key-file', key, r0, r1], o);
    ok(['verify', r0, r1, '--key-file', key, '--key-file', other], o);
    const to = path.join(root, 'rotated.vol');
    ok(['restore', '--from', r0, '--from', r1, '--to', to, '--key-file', other, '--key-file', key], o);
    expect(await exportShas(to, ['s1', 's2'], o)).toEqual(srcShas);
    const asOf = path.join(root, 'rotated-as-of.vol');
    ok(['restore', '--to', asOf, '--as-of', 's2', '--catalog', rcat, '--key-file', key, '--key-file', other], o);
    expect(await exportShas(asOf, ['s1', 's2'], o)).toEqual(srcShas);
    // one key of the two: the stream it does not open is named, and nothing is restored
    const half = path.join(root, 'rotated-half.vol');
    expectOneLineError(await runCliAsync(['restore', '--from', r0, '--from', r1, '--to', half, '--key-file', key], o), 'restore with the first key only', 11, /rotated\.l1: wrong key: .*backup\.key does not decrypt this stream/);
    expect(fs.existsSync(half)).toBe(false);
    // keys none of which opens a stream: all of them are named
    const third = path.join(root, 'third.key');
    fs.writeFileSync(third, randomBytes(32), { mode: 0o600 });
    expectOneLineError(await runCliAsync(['verify', r1, '--key-file', key, '--key-file', third], o), 'verify with two wrong keys', 11, /rotated\.l1: wrong key: none of .*backup\.key, .*third\.key decrypts this stream/);
  });

  it('onto an existing volume, a chain of files whose last stream needs another key is refused before any stream is applied', async () => {
    // before: the level 1 was applied, then the level 2 refused (exit 11), the volume changed
    const kcat = path.join(root, 'catalog.keys-ahead.json');
    const k0 = path.join(root, 'ahead.l0');
    const k1 = path.join(root, 'ahead.l1');
    const k2 = path.join(root, 'ahead.l2');
    await setupOk(['snapshot', 'create', src, 's3', '-q'], { env });
    try {
      dump(src, 0, 's1', k0, kcat, ['--encrypt', '--key-file', key], o);
      dump(src, 1, 's2', k1, kcat, ['--encrypt', '--key-file', key], o);
      dump(src, 2, 's3', k2, kcat, ['--encrypt', '--key-file', other], o);
    } finally {
      await setupOk(['snapshot', 'delete', src, 's3', '-q'], { env });
    }
    const to = path.join(root, 'keys-ahead.vol');
    ok(['restore', '--from', k0, '--to', to, '--key-file', key], o);
    const before = fs.readFileSync(to);
    expectOneLineError(await runCliAsync(['restore', '--from', k1, '--from', k2, '--to', to, '--key-file', key], o), 'restore whose level 2 needs the other key', 11, /ahead\.l2: wrong key: .*backup\.key does not decrypt this stream/);
    expect(fs.readFileSync(to).equals(before)).toBe(true);
    expect(await snapshotNames(to, o)).toEqual(['s1']);
    // with both keys the chain goes on from there
    ok(['restore', '--from', k1, '--from', k2, '--to', to, '--key-file', key, '--key-file', other], o);
    expect(await snapshotNames(to, o)).toEqual(['s1', 's2', 's3']);
    expect(await exportShas(to, ['s1', 's2'], o)).toEqual(srcShas);
  });

  it('with a key, an unencrypted stream is refused (it cannot be authenticated) unless --allow-unencrypted', async () => {
    // a chain whose level 0 was not encrypted and whose level 1 was
    const plain0 = path.join(root, 'plain.l0');
    const enc1 = path.join(root, 'enc-after-plain.l1');
    const pcat = path.join(root, 'catalog.plain.json');
    dump(src, 0, 's1', plain0, pcat, [], o);
    dump(src, 1, 's2', enc1, pcat, ['--encrypt', '--key-file', key], o);
    const to = path.join(root, 'plain-then-enc.vol');
    expectOneLineError(await runCliAsync(['restore', '--from', plain0, '--from', enc1, '--to', to, '--key-file', key], o), 'restore a plain level 0 with a key', 11, /plain\.l0: the stream is not encrypted, so the key given cannot authenticate it/);
    expect(fs.existsSync(to)).toBe(false);
    expectOneLineError(await runCliAsync(['verify', plain0, '--key-file', key], o), 'verify a plain stream with a key', 11, /not encrypted/);
    expectOneLineError(await runCliAsync(['verify', plain0, '--allow-unencrypted'], o), '--allow-unencrypted without a key', 2, /--allow-unencrypted goes with --key-file or --passphrase-file/);
    ok(['verify', plain0, enc1, '--key-file', key, '--allow-unencrypted'], o);
    ok(['restore', '--from', plain0, '--from', enc1, '--to', to, '--key-file', key, '--allow-unencrypted'], o);
    expect(await exportShas(to, ['s1', 's2'], o)).toEqual(srcShas);
    // without a key an unencrypted stream is read as ever
    ok(['verify', plain0], o);
  });

  it('an unencrypted stream where the chain says an encrypted one belongs is refused, --allow-unencrypted or not: after an encrypted stream, or where the catalog records an encrypted dump', async () => {
    // a level 1 dumped without --encrypt on top of the encrypted level 0 (anyone could write one: it needs no key)
    const plain1 = path.join(root, 'plain-after-enc.l1');
    const mcat = path.join(root, 'catalog.mixed.json');
    fs.copyFileSync(cat, mcat);
    dump(src, 1, 's2', plain1, mcat, [], o);
    const to = path.join(root, 'enc-then-plain.vol');
    for (const args of [['restore', '--from', l0, '--from', plain1, '--to', to], ['verify', l0, plain1]]) {
      const r = await runCliAsync([...args, '--key-file', key, '--allow-unencrypted'], o);
      expectOneLineError(r, `${args[0]} of an encrypted level 0 and a plain level 1`, 11, /plain-after-enc\.l1: the stream is not encrypted, and (file )?\S+src\.l0 before it in the chain is: anyone could have written it in its place/);
    }
    expect(fs.existsSync(to)).toBe(false);
    // the catalog records the encrypted level 1 at src.l1; a plain stream of that id there (here: the record says encrypted of a plain dump) is refused without a key asked
    const rcat = path.join(root, 'catalog.recorded.json');
    const recorded = JSON.parse(fs.readFileSync(mcat, 'utf8')) as { dumps: Array<{ media: { location: string }; encrypted?: boolean }> };
    const rec = recorded.dumps.find((d) => d.media.location === plain1)!;
    rec.encrypted = true;
    fs.writeFileSync(rcat, JSON.stringify(recorded));
    const asOf = path.join(root, 'as-of-recorded.vol');
    const r = await runCliAsync(['restore', '--to', asOf, '--as-of', 's2', '--catalog', rcat, '--key-file', key, '--allow-unencrypted'], o);
    expectOneLineError(r, 'restore --as-of of a plain stream the catalog records as encrypted', 11, /plain-after-enc\.l1: the stream is not encrypted, and the catalog records dump \w{8} there as encrypted/);
    expect(fs.existsSync(asOf)).toBe(false);
  });

  it('restore --from and verify refuse an unencrypted stream the catalog records as an encrypted dump (its place, its id, or for an unknown id its volume, level and top), key or not; a plain dump the catalog records is read', async () => {
    const ccat = path.join(root, 'catalog.from.json');
    fs.copyFileSync(cat, ccat);
    const plain1 = path.join(root, 'from-plain.l1');
    const encAt = path.join(root, 'from-enc.l1');
    const plainId = dump(src, 1, 's2', plain1, ccat, [], o).streamId;
    dump(src, 1, 's2', encAt, ccat, ['--encrypt', '--key-file', key], o);
    // a forged plain level 1 of s2 with an id of its own: recorded in another catalog only
    const forged = path.join(root, 'from-forged.l1');
    const fcat = path.join(root, 'catalog.forged.json');
    fs.copyFileSync(cat, fcat);
    dump(src, 1, 's2', forged, fcat, [], o);
    // the plain level 1 copied over the encrypted dump's file
    fs.copyFileSync(plain1, encAt);
    const withCat = ['--catalog', ccat];
    const allow = ['--key-file', key, '--allow-unencrypted'];
    const there = /from-enc\.l1: the stream is not encrypted, and the catalog records dump \w{8} there as encrypted: anyone could have written it in its place/;
    expectOneLineError(await runCliAsync(['verify', encAt, ...withCat, ...allow], o), 'verify a plain stream where the catalog records an encrypted dump', 11, there);
    expectOneLineError(await runCliAsync(['verify', encAt, ...withCat], o), 'the same without a key', 11, there);
    const to = path.join(root, 'from-checked.vol');
    ok(['restore', '--from', l0, '--to', to, '--key-file', key, ...withCat], o);
    expectOneLineError(await runCliAsync(['restore', '--from', encAt, '--to', to, ...withCat, ...allow], o), 'restore --from of a plain stream where the catalog records an encrypted dump', 11, there);
    const state = /from-forged\.l1: the stream is not encrypted, and the catalog records dump \w{8} of the same volume, level 1 and top snapshot "s2" as encrypted/;
    expectOneLineError(await runCliAsync(['verify', forged, ...withCat], o), 'verify a plain stream of an unknown id whose state the catalog records encrypted', 11, state);
    expectOneLineError(await runCliAsync(['restore', '--from', forged, '--to', to, ...withCat, ...allow], o), 'restore --from of it', 11, state);
    expect(await snapshotNames(to, o)).toEqual(['s1']); // nothing of the refused streams applied
    // the catalog records by its id a dump it says is encrypted (its record moved elsewhere)
    const icat = path.join(root, 'catalog.by-id.json');
    const records = JSON.parse(fs.readFileSync(ccat, 'utf8')) as { dumps: Array<{ id: string; media: { location: string }; encrypted?: boolean }> };
    const rec = records.dumps.find((d) => d.id === plainId)!;
    rec.encrypted = true;
    rec.media.location = path.join(root, 'moved.l1');
    fs.writeFileSync(icat, JSON.stringify(records));
    expectOneLineError(await runCliAsync(['verify', plain1, '--catalog', icat], o), 'verify a plain stream whose id the catalog records encrypted', 11, /from-plain\.l1: the stream is not encrypted, and the catalog records dump \w{8}, whose id it carries, as encrypted/);
    // the plain dump the catalog records as plain is that dump: read, at its place or copied elsewhere
    ok(['verify', plain1, ...withCat, ...allow], o);
    const copied = path.join(root, 'from-plain.copy');
    fs.copyFileSync(plain1, copied);
    ok(['restore', '--from', copied, '--to', to, ...withCat, ...allow], o);
    expect(await exportShas(to, ['s1', 's2'], o)).toEqual(srcShas);
    // a catalog that does not exist records no dumps; one that cannot be read records none
    // either, said in one line: a damaged catalog must not stop the restore of the streams
    ok(['verify', forged, '--catalog', path.join(root, 'no-such-catalog.json')], o);
    const damaged = path.join(root, 'catalog.damaged.json');
    fs.writeFileSync(damaged, '{"format": "imgstream-catalog", "dumps": [');
    const unread = ok(['verify', forged, '--catalog', damaged], o);
    expect(unread.stderr.trim().split('\n')).toHaveLength(1);
    expect(unread.stderr).toMatch(/not a readable imgstream catalog: file \S+from-forged\.l1 is not encrypted, and whether the catalog records its dump as encrypted is not known/);
    ok(['verify', l0, '--key-file', key, '--catalog', damaged], o); // an encrypted stream needs no catalog
  });

  it('round-trips through a pipe and a tape directory', async () => {
    const piped = path.join(root, 'piped.vol');
    const p = await pipeline(['dump', src, '-l', '0', '-s', 's2', '--to', '-', '--catalog', path.join(root, 'catalog.pipe.json'), '--encrypt', '--key-file', key], ['restore', '--from', '-', '--to', piped, '--key-file', key], root, env);
    expect([p.left, p.right], p.stderr).toEqual([0, 0]);
    expect((await exportShas(piped, ['s2'], o)).s2).toBe(srcShas.s2);
    const tape = path.join(root, 'tape1');
    const tcat = path.join(root, 'catalog.tape.json');
    dump(src, 0, 's1', `tape:${tape}`, tcat, ['--new-tape', '--encrypt', '--key-file', key], o);
    dump(src, 1, 's2', `tape:${tape}`, tcat, ['--encrypt', '--key-file', key], o);
    const taped = path.join(root, 'taped.vol');
    ok(['restore', '--from', `tape:${tape}`, '--to', taped, '--key-file', key], o);
    expect(await exportShas(taped, ['s1', 's2'], o)).toEqual(srcShas);
    // multiplexed: each source's line says its stream is encrypted, as a single dump's does
    const twin = path.join(root, 'twin.vol');
    ok(['restore', '--from', `tape:${tape}`, '--to', twin, '--key-file', key], o);
    const mux = ok(['dump', src, twin, '-l', '0', '-s', 's2', '--to', `tape:${path.join(root, 'tape-mux')}`, '--new-tape', '--multiplex', '--catalog', path.join(root, 'catalog.mux.json'), '--encrypt', '--key-file', key], o);
    expect(mux.stdout.split('\n').filter((l) => l.startsWith('dumped level 0 of '))).toEqual([expect.stringMatching(/ -> \S+ \S+ encrypted stream$/), expect.stringMatching(/ -> \S+ \S+ encrypted stream$/)]);
  });

  it('refuses a missing or wrong key and damaged, reordered or foreign records, with one line and no target', async () => {
    const a = fs.readFileSync(l0);
    const b = fs.readFileSync(l0b);
    const sa = spans(a);
    const sb = spans(b);
    // records: header, AUTH, PLANE, DATA..., trailer
    expect(sa.length).toBeGreaterThanOrEqual(6);
    expect([a[sa[3][0]], a[sa[4][0]], b[sb[4][0]]]).toEqual([S.RecordType.Data, S.RecordType.Data, S.RecordType.Data]);
    const flipped = Buffer.from(a);
    flipped[sa[4][0] + S.FRAME_BYTES + 100] ^= 0x20;
    // the crc32 is right: only the AEAD tag tells
    flipped.writeUInt32LE(S.payloadCrc(flipped.subarray(sa[4][0] + S.FRAME_BYTES, sa[4][0] + sa[4][1])), sa[4][0] + 12);
    const swapped = Buffer.concat([a.subarray(0, sa[3][0]), piece(a, sa[4]), piece(a, sa[3]), a.subarray(sa[5][0])]);
    const foreign = Buffer.concat([a.subarray(0, sa[4][0]), piece(b, sb[4]), a.subarray(sa[5][0])]);
    const files = { flipped, swapped, foreign };
    for (const [n, buf] of Object.entries(files)) fs.writeFileSync(path.join(root, `bad.${n}`), buf);
    const cases: Array<[string, string[], number, RegExp]> = [
      ['no key', ['--from', l0], 11, /the stream is encrypted/],
      ['wrong key', ['--from', l0, '--key-file', other], 11, /wrong key: .*other\.key/],
      ['missing key file', ['--from', l0, '--key-file', path.join(root, 'nope.key')], 3, /nope\.key: no such file or directory \(check the --key-file path\)$/],
      ['missing passphrase file', ['--from', l0, '--passphrase-file', path.join(root, 'nope.pass')], 3, /nope\.pass: no such file or directory \(check the --passphrase-file path\)$/],
      ['malformed key file', ['--from', l0, '--key-file', l1], 4, /not a key file/],
      ['flipped byte', ['--from', path.join(root, 'bad.flipped'), '--key-file', key], 9, /record 5 at byte \d+ fails authentication/],
      ['swapped records', ['--from', path.join(root, 'bad.swapped'), '--key-file', key], 9, /record 4 at byte \d+ fails authentication/],
      ['record from another stream', ['--from', path.join(root, 'bad.foreign'), '--key-file', key], 9, /record 5 at byte \d+ fails authentication/],
    ];
    const before = dirEntries(out);
    await pool(2, cases, async ([what, args, exit, pattern], i) => {
      const to = path.join(out, `r${i}.vol`);
      expectOneLineError(await runCliAsync(['restore', ...args, '--to', to], o), what, exit, pattern);
      expect(fs.existsSync(to), `${what}: target`).toBe(false);
    });
    expect(dirEntries(out)).toEqual(before);
    for (const n of Object.keys(files)) expectOneLineError(await runCliAsync(['verify', path.join(root, `bad.${n}`), '--key-file', key], o), `verify ${n}`, 9, /fails authentication/);
  });

  it('an encrypted dump killed with SIGKILL leaves no target, or a complete stream that verifies', async () => {
    const outcomes: string[] = [];
    for (const [i, delay] of [40, 120, 250, 400].entries()) {
      const to = path.join(root, `killed.${i}.l0`);
      const child = spawnCli(['dump', src, '-l', '0', '-s', 's2', '--to', to, '--catalog', path.join(root, `catalog.kill.${i}.json`), '--encrypt', '--key-file', key, '-q'], { env });
      const done = finished(child, 60_000);
      await sleep(delay);
      child.kill('SIGKILL');
      const r = await done;
      if (!fs.existsSync(to)) {
        outcomes.push('none');
        continue;
      }
      // it finished before the kill: complete and authentic
      outcomes.push(r.signal === 'SIGKILL' ? 'complete-then-killed' : 'complete');
      ok(['verify', to, '--key-file', key], o);
    }
    expect(outcomes).toContain('none');
  });

  it('dump with a missing key file or without a key takes no snapshot and writes nothing', async () => {
    const snaps = await snapshotNames(src, o);
    const to = path.join(out, 'never.l0');
    expectOneLineError(await runCliAsync(['dump', src, '-l', '0', '--to', to, '--catalog', cat, '--encrypt', '--key-file', path.join(root, 'nope.key')], o), 'dump, missing key file', 3, /nope\.key: no such file/);
    expectOneLineError(await runCliAsync(['dump', src, '-l', '0', '--to', to, '--catalog', cat, '--encrypt'], o), 'dump --encrypt without a key', 2, /--encrypt needs --key-file/);
    expectOneLineError(await runCliAsync(['dump', src, '-l', '0', '--to', to, '--catalog', cat, '--key-file', key], o), 'dump --key-file without --encrypt', 2, /only with --encrypt/);
    expect(await snapshotNames(src, o)).toEqual(snaps);
    expect(fs.existsSync(to)).toBe(false);
  });
});
