// Object storage through the built CLI against a real Ceph object gateway (radosgw on
// 127.0.0.1, see test/support/ceph-gateway.ts): dumps at levels 0, 1, 2 to s3://, every
// chain restored with exports identical to the source's snapshots, restore --as-of from
// the catalog (an object of the chain gone is found before anything is restored),
// catalog rebuild and verify from the bucket's prefix; the store (endpoint, path-style)
// each record keeps, which restore --as-of reads from unless one is given; and the faults:
// the gateway stopped mid-upload (the upload it could not abort named, the next dump
// aborting it), a dump killed mid-upload (its upload aborted by the next
// dump), wrong credentials, a missing bucket, an existing object, an object truncated or
// corrupted on the server. Skipped only when the Ceph packages are absent.
import fs from 'node:fs';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, finished, runCli, runCliAsync, spawnCli, sleep } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { exportShas, expectOneLineError, ok, refused } from '../support/stream-cli.js';
import { hasCeph, startGateway, type Gateway } from '../support/ceph-gateway.js';
import { s3Source } from '../../src/media/s3/index.js';
import { isDirectAligned } from '../../src/fs/direct-io.js';

const BUCKET = 'dumps';
const root = tempDir('imgstream-s3-');
const p = (n: string) => path.join(root, n);
let gw: Gateway;
let env: Record<string, string>;
let o: { env: Record<string, string>; timeoutMs: number };
const s3 = (key: string) => `s3://${BUCKET}/${key}`;

async function objectBytes(key: string): Promise<Buffer> {
  const r = await gw.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}
async function exists(key: string): Promise<boolean> {
  try {
    await gw.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    return true;
  } catch {
    return false;
  }
}
async function uploads(key: string): Promise<string[]> {
  const r = await gw.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
  return (r.Uploads ?? []).filter((u) => u.Key === key).map((u) => u.UploadId!);
}
/** Waits until a multipart upload of `key` has at least one part. */
async function partUploaded(key: string, child: { exitCode: number | null }): Promise<void> {
  for (let i = 0; i < 3000 && child.exitCode === null; i++) {
    for (const id of await uploads(key)) {
      const r = await gw.client.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: id }));
      if ((r.Parts ?? []).length > 0) return;
    }
    await sleep(10);
  }
  throw new Error(`no part of ${key} was seen before the dump ended`);
}

const vol = p('src.vol');
let sha: Record<string, string>;
const catalog = p('catalog.json');

describe.skipIf(!hasCeph)('s3:// on a Ceph object gateway', () => {
  beforeAll(async () => {
    gw = await startGateway([BUCKET]);
    env = { ...gw.env, IMGSTREAM_LOCK_DIR: p('locks'), IMGSTREAM_CATALOG: p('no-catalog.json') };
    o = { env, timeoutMs: 120_000 };
    const bs = 4096;
    await setupOk(['volume', 'create', vol, '--size', '4M', '--block-size', String(bs), '--max-snapshots', '8'], { env });
    const img = randomImage((4 << 20) / bs, bs, 17);
    for (const s of ['s1', 's2', 's3']) {
      mutate(img, bs, 40, s.charCodeAt(1));
      fs.writeFileSync(p('raw'), img);
      await setupOk(['volume', 'import', vol, '--from', p('raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', vol, s, '-q'], { env });
    }
    sha = await exportShas(vol, ['s1', 's2', 's3'], o);
    // levels 0 and 1 with the flags, level 2 with the endpoint from the environment
    cliJson(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', s3('vm/l0'), '--catalog', catalog, ...gw.flags], o);
    cliJson(['dump', vol, '--level', '1', '--snapshot', 's2', '--to', s3('vm/l1'), '--catalog', catalog, ...gw.flags], o);
    cliJson(['dump', vol, '--level', '2', '--snapshot', 's3', '--to', s3('vm/l2'), '--catalog', catalog], { ...o, env: { ...env, AWS_ENDPOINT_URL: gw.endpoint, IMGSTREAM_S3_PATH_STYLE: '1' } });
  }, 120_000);
  afterAll(() => {
    gw?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('every chain restores from the bucket, exports identical to the source', async () => {
    const chains = [['l0'], ['l0', 'l1'], ['l0', 'l1', 'l2']];
    for (const [i, chain] of chains.entries()) {
      const to = p(`r${i}.vol`);
      ok(['restore', ...chain.flatMap((k) => ['--from', s3(`vm/${k}`)]), '--to', to, ...gw.flags, '-q'], o);
      const names = ['s1', 's2', 's3'].slice(0, chain.length);
      expect(await exportShas(to, names, o)).toEqual(Object.fromEntries(names.map((n) => [n, sha[n]])));
    }
    expect(await uploads('vm/')).toEqual([]); // every dump's upload was completed
  });

  /** Puts `body` at `key`, runs `read` on an S3 source of it (readChunk `chunk`, 2 GETs in flight) with the gateway's credentials in the environment, then deletes it. */
  async function withObject(key: string, body: Buffer, chunk: number, read: (source: ReturnType<typeof s3Source>) => Promise<void>): Promise<void> {
    await gw.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    const saved = { ...process.env };
    Object.assign(process.env, gw.env);
    try {
      await read(s3Source(s3(key), { endpoint: gw.endpoint, pathStyle: true, readChunk: chunk, readAhead: 2 }));
    } finally {
      for (const k of Object.keys(gw.env)) if (saved[k] === undefined) delete process.env[k];
      Object.assign(process.env, saved);
      await gw.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    }
  }

  it('reads an object into page-aligned buffers it fills again once given back (recycle), not a new one per GET', async () => {
    const want = randomImage(512, 4096, 23); // 2 MiB: 32 GETs of 64 KiB
    const chunk = 64 << 10;
    await withObject('blob/2m', want, chunk, async (source) => {
      const got: Buffer[] = [];
      const memories = new Set<ArrayBufferLike>();
      for await (const stream of source.streams()) {
        expect(stream.recycle, 'the source recycles read buffers').toBeTypeOf('function');
        for await (const buf of stream.bytes) {
          expect(isDirectAligned(buf), 'read buffers are page-aligned').toBe(true);
          memories.add(buf.buffer);
          got.push(Buffer.from(buf)); // a copy: the buffer is read into again
          stream.recycle!(buf, Promise.resolve());
        }
      }
      expect(Buffer.concat(got).equals(want)).toBe(true);
      expect(got.length).toBe(Math.ceil(want.length / chunk));
      expect(got.length).toBeGreaterThan(20);
      // 2 GETs in flight and the one handed out: a handful of buffers, filled again and again
      expect(memories.size).toBeLessThanOrEqual(4);
    });
  });

  it('a consumer whose writes fall behind makes the next GETs wait for buffers, not new ones (memory stays bounded over a long stream)', async () => {
    const want = randomImage(512, 4096, 29); // 2 MiB: 32 GETs of 64 KiB
    await withObject('blob/slow', want, 64 << 10, async (source) => {
      const got: Buffer[] = [];
      const memories = new Set<ArrayBufferLike>();
      const writes: Array<Promise<void>> = [];
      for await (const stream of source.streams()) {
        const held: Buffer[] = [];
        for await (const buf of stream.bytes) {
          memories.add(buf.buffer);
          got.push(Buffer.from(buf));
          if (got.length <= 3) {
            // the first 3 are held until the next has come (a record spanning them)
            held.push(buf);
            if (got.length === 3) for (const b of held) stream.recycle!(b, Promise.resolve());
            continue;
          }
          // the rest are given back while their writes run, and those take a while (a slow disk)
          const written = sleep(40);
          writes.push(written);
          stream.recycle!(buf, written);
        }
      }
      await Promise.all(writes);
      expect(Buffer.concat(got).equals(want)).toBe(true);
      // 2 GETs in flight and the 3 held (nothing was due back then, so a GET got a new
      // buffer rather than wait on its own consumer); after that the GETs waited for
      // buffers given back (before: a new one each time none was free, kept for good:
      // about one per slow write, 22 here)
      expect(memories.size).toBeLessThanOrEqual(5);
    });
  });

  it('restore --as-of picks the chain from the catalog and reads it from the bucket', async () => {
    const to = p('asof.vol');
    ok(['restore', '--to', to, '--as-of', 's3', '--catalog', catalog, ...gw.flags, '-q'], o);
    expect(await exportShas(to, ['s1', 's2', 's3'], o)).toEqual(sha);
  });

  it('the catalog records each dump\'s store (endpoint, path-style; from the flags or the environment, never credentials): restore --as-of reads the chain there without being told, and catalog list shows it', async () => {
    const text = fs.readFileSync(catalog, 'utf8');
    const media = (JSON.parse(text) as { dumps: Array<{ media: unknown }> }).dumps.map((d) => d.media);
    expect(media).toEqual(['l0', 'l1', 'l2'].map((k) => ({ kind: 's3', location: s3(`vm/${k}`), endpoint: gw.endpoint, pathStyle: true })));
    expect(text).not.toContain(gw.env.AWS_SECRET_ACCESS_KEY);
    expect(text).not.toContain(gw.env.AWS_ACCESS_KEY_ID);
    const to = p('asof-recorded.vol');
    ok(['restore', '--to', to, '--as-of', 's3', '--catalog', catalog, '-q'], o); // no --s3-endpoint, no AWS_ENDPOINT_URL, no path-style
    expect(await exportShas(to, ['s1', 's2', 's3'], o)).toEqual(sha);
    expect(ok(['catalog', 'list', '--catalog', catalog], o).stdout).toContain(`s3 ${s3('vm/l2')} at ${gw.endpoint} (path-style)`);
  });

  it('an endpoint given wins over the recorded one (--s3-endpoint, or AWS_ENDPOINT_URL); a catalog recorded without endpoints still restores with them', async () => {
    const nowhere = 'http://127.0.0.1:1';
    const to = p('elsewhere.vol');
    expectOneLineError(await refused(['restore', '--to', to, '--as-of', 's3', '--catalog', catalog, '--s3-endpoint', nowhere, '--s3-path-style'], o), 'restore --as-of --s3-endpoint elsewhere', 12, /ECONNREFUSED/);
    expectOneLineError(await refused(['restore', '--to', to, '--as-of', 's3', '--catalog', catalog], { ...o, env: { ...env, AWS_ENDPOINT_URL: nowhere } }), 'restore --as-of, AWS_ENDPOINT_URL elsewhere', 12, /ECONNREFUSED/);
    expect(fs.existsSync(to)).toBe(false);
    // as the catalogs written before the store was recorded: every record without it
    const old = p('old-catalog.json');
    const c = JSON.parse(fs.readFileSync(catalog, 'utf8')) as { dumps: Array<{ media: Record<string, unknown> }> };
    for (const d of c.dumps) {
      delete d.media.endpoint;
      delete d.media.pathStyle;
    }
    fs.writeFileSync(old, JSON.stringify(c));
    ok(['restore', '--to', to, '--as-of', 's3', '--catalog', old, ...gw.flags, '-q'], o);
    expect(await exportShas(to, ['s1', 's2', 's3'], o)).toEqual(sha);
  });

  it('restore --as-of with an object of the chain gone stops before restoring anything, naming it; recorded where it went, the chain restores', async () => {
    const cat = p('moved.json');
    fs.copyFileSync(catalog, cat);
    const l1 = await objectBytes('vm/l1');
    await gw.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'moved/l1', Body: l1 }));
    await gw.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'vm/l1' }));
    try {
      const to = p('moved.vol');
      const r = runCli(['restore', '--to', to, '--as-of', 's3', '--catalog', cat, ...gw.flags], o);
      expectOneLineError(r, 'as-of with vm/l1 gone', 3, /object s3:\/\/dumps\/vm\/l1: no such object: the catalog records dump \w{8} \(level 1, top snapshot "s2"\) there, which the chain as of s3 needs \(if it was moved, record it where it is now: imgstream catalog rebuild --from NEWPLACE\)/);
      expect(r.stdout).toBe(''); // the level 0 was not restored first
      expect(fs.readdirSync(root).filter((n) => n.includes('moved.vol'))).toEqual([]);
      ok(['catalog', 'rebuild', '--from', s3('moved/l1'), '--catalog', cat, ...gw.flags], o);
      ok(['restore', '--to', to, '--as-of', 's3', '--catalog', cat, ...gw.flags, '-q'], o);
      expect(await exportShas(to, ['s1', 's2', 's3'], o)).toEqual(sha);
    } finally {
      await gw.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'vm/l1', Body: l1 }));
      await gw.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'moved/l1' }));
    }
  });

  it('catalog rebuild lists the prefix, recording the store it read; verify reads every stream', async () => {
    const fresh = p('rebuilt.json');
    const r = cliJson<{ records: Array<{ level: number; media: { kind: string; location: string } }>; skipped: unknown[] }>(['catalog', 'rebuild', '--from', s3('vm/'), '--catalog', fresh, ...gw.flags], o);
    expect(r.records.map((x) => [x.level, x.media.kind, x.media.location])).toEqual([
      [0, 's3', s3('vm/l0')],
      [1, 's3', s3('vm/l1')],
      [2, 's3', s3('vm/l2')],
    ]);
    expect(r.skipped).toEqual([]);
    // recorded with the store it read from: the rebuilt catalog restores without the flags
    expect(JSON.parse(fs.readFileSync(fresh, 'utf8')).dumps.map((d: { media: { endpoint?: string; pathStyle?: boolean } }) => [d.media.endpoint, d.media.pathStyle])).toEqual(Array(3).fill([gw.endpoint, true]));
    const to = p('rebuilt.vol');
    ok(['restore', '--to', to, '--as-of', 's3', '--catalog', fresh, '-q'], o);
    expect(await exportShas(to, ['s1', 's2', 's3'], o)).toEqual(sha);
    const v = ok(['verify', s3('vm/'), ...gw.flags], o);
    expect(v.stdout).toContain('3 stream(s) verified');
    const chain = ok(['verify', s3('vm/l0'), s3('vm/l1'), s3('vm/l2'), ...gw.flags], o);
    expect(chain.stdout).toContain('3 stream(s) verified');
  });

  it('an object truncated or corrupted on the server is refused by verify and restore', async () => {
    const good = await objectBytes('vm/l0');
    const flipped = Buffer.from(good);
    flipped[Math.floor(good.length / 2)] ^= 0x40;
    await gw.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'bad/truncated', Body: good.subarray(0, good.length - 1000) }));
    await gw.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'bad/flipped', Body: flipped }));
    for (const key of ['bad/truncated', 'bad/flipped']) {
      expectOneLineError(await refused(['verify', s3(key), ...gw.flags], o), `verify ${key}`, 9);
      const to = p(`${key.replace('/', '-')}.vol`);
      expectOneLineError(await refused(['restore', '--from', s3(key), '--to', to, ...gw.flags], o), `restore ${key}`, 9);
      expect(fs.existsSync(to), `${to} was created`).toBe(false);
    }
  });

  it('wrong credentials, a missing bucket, an existing object: one-line errors, nothing left', async () => {
    const wrong = { ...o, env: { ...env, AWS_SECRET_ACCESS_KEY: 'not-the-secret-key-0123456789' } };
    expectOneLineError(await refused(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', s3('x/wrong-key'), '--catalog', p('c2.json'), ...gw.flags], wrong), 'dump with a wrong key', 11, /credentials|SignatureDoesNotMatch|refused/);
    expectOneLineError(await refused(['restore', '--from', s3('vm/l0'), '--to', p('wk.vol'), ...gw.flags], wrong), 'restore with a wrong key', 11);
    expectOneLineError(await refused(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', 's3://no-such-bucket/x/l0', '--catalog', p('c2.json'), ...gw.flags], o), 'dump to a missing bucket', 3, /bucket no-such-bucket does not exist/);
    expectOneLineError(await refused(['verify', 's3://no-such-bucket/x/l0', ...gw.flags], o), 'verify from a missing bucket', 3);
    expectOneLineError(await refused(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', s3('vm/l0'), '--catalog', p('c2.json'), ...gw.flags], o), 'dump onto an existing object', 6, /already exists/);
    expect(await exists('x/wrong-key')).toBe(false);
    expect(await uploads('x/')).toEqual([]);
    expect(fs.existsSync(p('wk.vol'))).toBe(false);
  });

  it('two dumps racing to one name: one is stored and recorded, the other refused (exit 6), never both "dumped" with one lost', async () => {
    // read slowly, so both have checked the name before either writes it
    const slow = { ...o, env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '4M' } };
    const other = p('other.vol');
    await setupOk(['volume', 'create', other, '--size', '4M', '--max-snapshots', '4'], { env });
    fs.writeFileSync(p('other.raw'), randomImage(1024, 4096, 23));
    await setupOk(['volume', 'import', other, '--from', p('other.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', other, 'o1', '-q'], { env });
    const cat = p('race-catalog.json');
    const [a, b] = await Promise.all([
      runCliAsync(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', s3('race/x'), '--catalog', cat, '--json', ...gw.flags], slow),
      runCliAsync(['dump', other, '--level', '0', '--snapshot', 'o1', '--to', s3('race/x'), '--catalog', cat, '--json', ...gw.flags], slow),
    ]);
    expect([a.code, b.code].sort(), `${a.stderr}${b.stderr}`).toEqual([0, 6]);
    const [won, lost] = a.code === 0 ? [a, b] : [b, a];
    expectOneLineError(lost, 'the dump that lost the race', 6, /race\/x: (created by another writer while this dump ran|already exists)/);
    const streamId = (JSON.parse(won.stdout) as { streamId: string }).streamId;
    const v = cliJson<{ streams: Array<{ streamId: string }> }>(['verify', s3('race/x'), ...gw.flags], o);
    expect(v.streams.map((x) => x.streamId)).toEqual([streamId]);
    expect(cliJson<{ dumps: Array<{ id: string }> }>(['catalog', 'list', '--catalog', cat], o).dumps.map((d) => d.id)).toEqual([streamId]);
    expect(await uploads('race/')).toEqual([]);
  });

  describe('mid-upload faults (a 48 MiB stream: 6 parts)', () => {
    const big = p('big.vol');
    beforeAll(async () => {
      await setupOk(['volume', 'create', big, '--size', '48M', '--max-snapshots', '4'], { env });
      fs.writeFileSync(p('big.raw'), randomImage((48 << 20) / 4096, 4096, 5, 0));
      await setupOk(['volume', 'import', big, '--from', p('big.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', big, 'b1', '-q'], { env });
      fs.rmSync(p('big.raw'));
    }, 60_000);
    // an unfinished upload counts as abandoned (a killed dump's) at once, not after 15 minutes without a part
    const abandonedAtOnce = () => ({ ...o, env: { ...env, IMGSTREAM_S3_ABANDONED_S: '0' } });
    const dumpBig = (key: string) => ['dump', big, '--level', '0', '--snapshot', 'b1', '--to', s3(key), '--compress', 'none', '--catalog', p('big-catalog.json'), ...gw.flags];

    it('a dump killed mid-upload leaves no object; the next dump to the name aborts its upload and succeeds', async () => {
      // one 5 MiB part at a time, so the 48 MiB dump is far from done when its first part is in (a fast, idle machine finished it before the kill)
      const child = spawnCli(dumpBig('big/killed'), { env: { ...env, IMGSTREAM_S3_UPLOADS: '1', IMGSTREAM_S3_PART_MIB: '5' } });
      await partUploaded('big/killed', child);
      child.kill('SIGKILL');
      await finished(child);
      expect(await exists('big/killed')).toBe(false);
      const stale = await uploads('big/killed');
      expect(stale).toHaveLength(1); // what a killed dump leaves: an unfinished upload
      ok(dumpBig('big/killed'), abandonedAtOnce());
      expect(await uploads('big/killed')).toEqual([]);
      ok(['verify', s3('big/killed'), ...gw.flags], o);
    });

    it('the gateway stopped mid-upload: the dump fails with one line, no object under its name', async () => {
      // one 5 MiB part in flight at a time, and the gateway stopped as soon as the first
      // part is in: the 48 MiB dump is then far from done (on a fast, idle machine it could
      // still win the race: then its object is removed and it is tried again)
      const slow = { ...env, IMGSTREAM_S3_UPLOADS: '1', IMGSTREAM_S3_PART_MIB: '5' };
      let r: Awaited<ReturnType<typeof finished>> | null = null;
      for (let attempt = 0; attempt < 3 && (r === null || r.code === 0); attempt++) {
        if (r?.code === 0) {
          await gw.client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: 'big/stopped' }));
          fs.writeFileSync(p('big-catalog.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(p('big-catalog.json'), 'utf8')), dumps: JSON.parse(fs.readFileSync(p('big-catalog.json'), 'utf8')).dumps.slice(0, 1) }));
        }
        const child = spawnCli(dumpBig('big/stopped'), { env: slow });
        try {
          await partUploaded('big/stopped', child);
          gw.stopRgw();
          r = await finished(child, 120_000);
        } finally {
          gw.startRgw();
        }
      }
      // its upload could not be aborted either (the gateway was down): the line says what is left and what cleans it
      const line = expectOneLineError(r!, 'dump while the gateway stops', 12, /cannot be reached|ECONNREFUSED/);
      expect(line).toMatch(/aborting its multipart upload failed too \(ECONNREFUSED\): an unfinished multipart upload of s3:\/\/dumps\/big\/stopped may remain, stored and billed, until a dump to s3:\/\/dumps\/big\/stopped once it has gone 15 min without a part, which aborts it/);
      expect(await exists('big/stopped')).toBe(false);
      expect(JSON.parse(fs.readFileSync(p('big-catalog.json'), 'utf8')).dumps ?? []).toHaveLength(1); // the killed-then-redone dump only
      expect(await uploads('big/stopped')).toHaveLength(1);
      ok(dumpBig('big/stopped'), abandonedAtOnce());
      expect(await uploads('big/stopped')).toEqual([]);
      ok(['verify', s3('big/stopped'), ...gw.flags], o);
    }, 180_000);
  });
});
