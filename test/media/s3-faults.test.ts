// S3 faults a user-style test found, on a real Ceph object gateway (see
// test/support/ceph-gateway.ts): a second dump to a name left the first one's live
// multipart upload alone (it aborted it: the first failed "the upload was aborted on the
// server", exit 10), the race settled at completion (exit 6), and only an upload gone
// IMGSTREAM_S3_ABANDONED_S without a part is aborted; an upload aborted by someone else
// is exit 12 (or 6 with another writer), not 10; catalog rebuild of one object maps a
// missing object, refused credentials, an unreachable store to 3, 11, 12 (not "damaged",
// 9; nor "skipped", 0); the rebuild hint of a dump the catalog could not record names the
// store; the S3 flags without an s3:// source or target are refused (2); a stopped
// --force dump says the existing object (or file) was kept; an AWS_PROFILE that names no profile
// is one line naming it (no SDK warning); an invalid bucket name is exit 4. Also
// ceph-rgw.sh stop with a relative directory kills its daemons.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, GetObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, finished, runCli, runCliAsync, sleep, spawnCli } from '../support/cli.js';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError, ok, refused } from '../support/stream-cli.js';
import { hasCeph, startGateway, type Gateway } from '../support/ceph-gateway.js';

const BUCKET = 'dumps';
const root = tempDir('imgstream-s3-faults-');
const p = (n: string) => path.join(root, n);
const s3 = (key: string) => `s3://${BUCKET}/${key}`;
let gw: Gateway;
let env: Record<string, string>;
let o: { env: Record<string, string>; timeoutMs: number };
const small = p('small.vol');
const big = p('big.vol');

async function objectBytes(key: string): Promise<Buffer> {
  const r = await gw.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}
async function uploads(key: string): Promise<string[]> {
  const r = await gw.client.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: key }));
  return (r.Uploads ?? []).filter((u) => u.Key === key).map((u) => u.UploadId!);
}
/** Waits until a multipart upload of `key` has a part; returns its id. */
async function partUploaded(key: string, child: { exitCode: number | null }): Promise<string> {
  for (let i = 0; i < 3000 && child.exitCode === null; i++) {
    for (const id of await uploads(key)) {
      const r = await gw.client.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: id }));
      if ((r.Parts ?? []).length > 0) return id;
    }
    await sleep(10);
  }
  throw new Error(`no part of ${key} was seen before the dump ended`);
}
// a 48 MiB stream in 5 MiB parts, one at a time, read at `rate` bytes/s: far from done when its first part is in
const slowParts = (rate = '16M') => ({ env: { ...env, IMGSTREAM_S3_UPLOADS: '1', IMGSTREAM_S3_PART_MIB: '5', IMGSTREAM_TEST_SOURCE_RATE: rate } });
const dumpBig = (key: string, ...more: string[]) => ['dump', big, '--level', '0', '--snapshot', 'b1', '--to', s3(key), '--compress', 'none', '--catalog', p('big-catalog.json'), ...gw.flags, ...more];
const dumpSmall = (key: string, ...more: string[]) => ['dump', small, '--level', '0', '--snapshot', 's1', '--to', s3(key), '--catalog', p('small-catalog.json'), ...gw.flags, ...more];

describe.skipIf(!hasCeph)('S3 faults on a Ceph object gateway', () => {
  beforeAll(async () => {
    gw = await startGateway([BUCKET]);
    env = { ...gw.env, IMGSTREAM_LOCK_DIR: p('locks'), IMGSTREAM_CATALOG: p('no-catalog.json') };
    o = { env, timeoutMs: 120_000 };
    await setupOk(['volume', 'create', small, '--size', '4M', '--max-snapshots', '8'], { env });
    fs.writeFileSync(p('small.raw'), randomImage(1024, 4096, 31));
    await setupOk(['volume', 'import', small, '--from', p('small.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', small, 's1', '-q'], { env });
    await setupOk(['volume', 'create', big, '--size', '48M', '--max-snapshots', '8'], { env });
    fs.writeFileSync(p('big.raw'), randomImage((48 << 20) / 4096, 4096, 5, 0));
    await setupOk(['volume', 'import', big, '--from', p('big.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', big, 'b1', '-q'], { env });
    fs.rmSync(p('big.raw'));
  }, 120_000);
  afterAll(() => {
    gw?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('a second dump to a name leaves the first one\'s live upload alone: one is stored, the other exits 6 (it aborted the live upload: exit 10)', async () => {
    const first = spawnCli(dumpBig('race/x', '--json'), slowParts('8M')); // 6 s: the second dump (4 MiB) ends first
    const firstDone = finished(first, 120_000);
    await partUploaded('race/x', first);
    const second = await runCliAsync(dumpSmall('race/x', '--json'), o);
    expect(second.code, second.stderr).toBe(0);
    expectOneLineError(await firstDone, 'the first dump, overtaken', 6, /race\/x: created by another writer while this dump ran/);
    const streamId = (JSON.parse(second.stdout) as { streamId: string }).streamId;
    expect(cliJson<{ streams: Array<{ streamId: string }> }>(['verify', s3('race/x'), ...gw.flags], o).streams.map((s) => s.streamId)).toEqual([streamId]);
    expect(await uploads('race/x')).toEqual([]);
  }, 180_000);

  it('an unfinished upload is aborted by the next dump to its name only once it has gone IMGSTREAM_S3_ABANDONED_S (default 15 min) without a part', async () => {
    const key = 'left/x';
    const { UploadId } = await gw.client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    await gw.client.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(5 << 20, 7) }));
    try {
      ok(dumpSmall(key), o);
      expect(await uploads(key), 'a part a moment ago: another dump may be writing it').toEqual([UploadId]);
      await sleep(2100);
      ok(dumpSmall(key, '--force'), { ...o, env: { ...env, IMGSTREAM_S3_ABANDONED_S: '2' } });
      expect(await uploads(key), 'no part for 2 s: abandoned').toEqual([]);
      expectOneLineError(await refused(dumpSmall('left/y'), { env: { ...env, IMGSTREAM_S3_ABANDONED_S: 'soon' } }), 'a bad IMGSTREAM_S3_ABANDONED_S', 4, /IMGSTREAM_S3_ABANDONED_S=soon is not a whole number/);
    } finally {
      await gw.client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId })).catch(() => undefined);
    }
  }, 60_000);

  it('a dump whose upload someone else aborts fails with exit 12 saying so (it was exit 10, an I/O error of this machine)', async () => {
    const child = spawnCli(dumpBig('gone/x'), slowParts());
    const done = finished(child, 120_000);
    const id = await partUploaded('gone/x', child);
    await gw.client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: 'gone/x', UploadId: id }));
    expectOneLineError(await done, 'a dump whose upload was aborted', 12, /gone\/x: uploading part \d+: this dump's upload was aborted on the server by someone else/);
    expect(await uploads('gone/x')).toEqual([]);
    // with another writer of the name evident (an upload of its own): exit 6
    const second = spawnCli(dumpBig('gone/y'), slowParts());
    const secondDone = finished(second, 120_000);
    const ours = await partUploaded('gone/y', second);
    const { UploadId: theirs } = await gw.client.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'gone/y' }));
    try {
      await gw.client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: 'gone/y', UploadId: ours }));
      expectOneLineError(await secondDone, 'a dump whose upload another writer aborted', 6, /gone\/y: uploading part \d+: this dump's upload was aborted on the server while another writer wrote the same name/);
    } finally {
      await gw.client.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: 'gone/y', UploadId: theirs }));
    }
  }, 180_000);

  it('restore --from s3://BUCKET/PREFIX/ applies the objects in key order: named in chain order it restores, out of order an incremental first is refused (3) before anything is created', async () => {
    await setupOk(['snapshot', 'create', small, 's2', '-q'], { env });
    const cat = p('order-catalog.json');
    const dump = (level: string, snap: string, key: string) => ok(['dump', small, '--level', level, '--snapshot', snap, '--to', s3(key), '--catalog', cat, ...gw.flags, '-q'], o);
    dump('0', 's1', 'good/2026-06-03.l0');
    dump('1', 's2', 'good/2026-06-05.l1');
    dump('0', 's1', 'bad/june3.l0'); // "june10.l1" would sort before it as well
    dump('1', 's2', 'bad/june10.l1');
    ok(['restore', '--from', s3('good/'), '--to', p('good.vol'), ...gw.flags, '-q'], o);
    expectOneLineError(await refused(['restore', '--from', s3('bad/'), '--to', p('bad.vol'), ...gw.flags], o), 'a prefix out of chain order', 3, /bad\/june10\.l1: .*needs its base snapshot "s1"/);
    expect(fs.existsSync(p('bad.vol'))).toBe(false);
  }, 60_000);

  it('SIGINT of a --force dump over an existing object says the object was kept, and it is', async () => {
    ok(dumpSmall('forced/x'), o);
    const before = await objectBytes('forced/x');
    const child = spawnCli(dumpBig('forced/x', '--force'), slowParts());
    const done = finished(child, 120_000);
    await partUploaded('forced/x', child);
    child.kill('SIGINT');
    const line = expectOneLineError(await done, 'a stopped --force dump', 130);
    expect(line).toContain(`the existing object ${s3('forced/x')} was kept, not replaced`);
    expect(line).not.toContain('nothing was left');
    expect((await objectBytes('forced/x')).equals(before)).toBe(true);
    expect(await uploads('forced/x')).toEqual([]);
    // the same for a file: the stream went to a temporary name beside it
    const dir = p('forced-file');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'x.l0');
    fs.writeFileSync(file, 'old');
    const fileChild = spawnCli(['dump', big, '--level', '0', '--snapshot', 'b1', '--to', file, '--force', '--compress', 'none', '--catalog', p('big-catalog.json')], slowParts());
    const fileDone = finished(fileChild, 120_000);
    for (let i = 0; i < 3000 && fileChild.exitCode === null && !fs.readdirSync(dir).some((n) => n.includes('partial')); i++) await sleep(10);
    fileChild.kill('SIGINT');
    expect(expectOneLineError(await fileDone, 'a stopped --force dump to a file', 130)).toContain(`the existing file ${file} was kept, not replaced`);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
  }, 180_000);

  it('a dump the catalog cannot record names the store in the catalog rebuild it suggests, which runs as printed', async () => {
    const catalog = p('damaged-catalog.json');
    const child = spawnCli(['dump', small, '--level', '0', '--snapshot', 's1', '--to', s3('unrecorded/x'), '--catalog', catalog, ...gw.flags], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '2M' } });
    const done = finished(child, 60_000);
    for (let i = 0; i < 3000 && child.exitCode === null && (await uploads('unrecorded/x')).length === 0; i++) await sleep(10);
    fs.writeFileSync(catalog, '{"format": "imgstream-catalog", "version": 1, "dumps": [{"id'); // damaged meanwhile
    const line = expectOneLineError(await done, 'a dump its catalog cannot record', 9, /is complete but not recorded in the catalog/);
    const command = line.match(/record the dump with: imgstream (catalog rebuild [^)]*)\)/)?.[1];
    expect(command).toBe(`catalog rebuild --from ${s3('unrecorded/x')} --s3-endpoint ${gw.endpoint} --s3-path-style --catalog ${catalog}`);
    fs.rmSync(catalog);
    ok(command!.split(' '), o); // as printed: no endpoint from anywhere else
  }, 60_000);

  it('catalog rebuild of one object: a missing object 3, refused credentials 11, an unreachable store 12 (never "damaged", 9, nor "skipped")', async () => {
    ok(dumpSmall('rebuild/x'), o);
    const cat = p('rebuild-catalog.json');
    const rebuild = (...from: string[]) => ['catalog', 'rebuild', ...from.flatMap((f) => ['--from', f]), '--catalog', cat];
    expectOneLineError(await refused([...rebuild(s3('rebuild/missing')), ...gw.flags], o), 'a missing object', 3, /rebuild\/missing: no such object/);
    expectOneLineError(await refused([...rebuild(s3('rebuild/x'), s3('rebuild/missing')), ...gw.flags], o), 'a missing object after one that is there', 3, /rebuild\/missing: no such object/);
    expectOneLineError(await refused([...rebuild('s3://no-such-bucket/x'), ...gw.flags], o), 'a missing bucket', 3);
    expectOneLineError(await refused([...rebuild(s3('rebuild/x')), ...gw.flags], { env: { ...env, AWS_SECRET_ACCESS_KEY: 'not-the-secret-key-0123456789' } }), 'refused credentials', 11);
    expectOneLineError(await refused([...rebuild(s3('rebuild/x')), '--s3-endpoint', 'http://127.0.0.1:1', '--s3-path-style'], o), 'an unreachable store', 12, /ECONNREFUSED/);
    expect(fs.existsSync(cat), 'nothing recorded').toBe(false);
  }, 60_000);

  it('an AWS_PROFILE naming no profile is one line naming it (no SDK warning), exit 11; an invalid bucket name is exit 4', async () => {
    const r = runCli(['verify', s3('anything'), ...gw.flags], { ...o, env: { ...env, AWS_PROFILE: 'nosuch', AWS_CONFIG_FILE: p('no-config'), AWS_SHARED_CREDENTIALS_FILE: p('no-credentials') } });
    expectOneLineError(r, 'AWS_PROFILE=nosuch', 11, /AWS_PROFILE names the profile "nosuch", which neither ~\/\.aws\/credentials nor ~\/\.aws\/config defines/);
    for (const bucket of ['Bad_Bucket', 'ab', 'a..b', '-ab']) {
      expectOneLineError(await refused(['verify', `s3://${bucket}/x`, ...gw.flags], o), `bucket ${bucket}`, 4, new RegExp(`"${bucket.replace(/\./g, '\\.')}" is not a valid bucket name`));
    }
    expectOneLineError(await refused(dumpSmall('x').map((a) => (a === s3('x') ? 's3://Bad_Bucket/x' : a)), o), 'dump to Bad_Bucket', 4, /not a valid bucket name: it has uppercase letters/);
  }, 60_000);

  it('the S3 flags with no s3:// source or target are refused (exit 2), naming them; restore --as-of takes them (the catalog may name S3 objects)', async () => {
    const file = p('small.l0');
    const cases: Array<[string[], RegExp]> = [
      [['dump', small, '--level', '0', '--snapshot', 's1', '--to', file, '--catalog', p('c.json'), ...gw.flags], /--s3-endpoint, --s3-path-style are for s3:\/\/ objects, and none is given \(--to .*small\.l0\)/],
      [['dump', small, '--level', '0', '--snapshot', 's1', '--to', file, '--catalog', p('c.json'), '--s3-path-style'], /--s3-path-style is for s3:\/\/ objects/],
      [['verify', file, '--s3-endpoint', gw.endpoint], /--s3-endpoint is for s3:\/\/ objects/],
      [['restore', '--from', file, '--to', p('r.vol'), ...gw.flags], /--s3-endpoint, --s3-path-style are for s3:\/\/ objects/],
      [['catalog', 'rebuild', '--from', file, '--catalog', p('c.json'), ...gw.flags], /--s3-endpoint, --s3-path-style are for s3:\/\/ objects/],
    ];
    for (const [args, pattern] of cases) expectOneLineError(await refused(args, o), args.slice(0, 2).join(' '), 2, pattern);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(p('r.vol'))).toBe(false);
    // taken with an s3:// object among the sources
    ok(dumpSmall('flags/x'), o);
    ok(['verify', s3('flags/x'), ...gw.flags], o);
    ok(['restore', '--to', p('asof.vol'), '--as-of', 's1', '--catalog', p('small-catalog.json'), ...gw.flags, '-q'], o);
  }, 60_000);
});

describe.skipIf(!hasCeph)('ceph-rgw.sh', () => {
  it('stop DIR fast with a relative DIR kills the daemons it started (it killed none and removed DIR)', () => {
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'support', 'ceph-rgw.sh');
    const cwd = tempDir('imgstream-ceph-rel-');
    let pids: number[] = [];
    try {
      let started = false;
      for (let attempt = 0; attempt < 4 && !started; attempt++) {
        const base = 30_000 + ((process.pid * 11 + 37 + attempt * 17) % 150) * 200;
        const r = spawnSync(script, ['start', 'rel', String(base)], { cwd, encoding: 'utf8', timeout: 120_000 });
        started = r.status === 0;
        if (!started) {
          fs.rmSync(path.join(cwd, 'rel'), { recursive: true, force: true });
          if (!/already in use/.test(r.stderr)) throw new Error(r.stderr);
        }
      }
      expect(started).toBe(true);
      const dir = path.join(cwd, 'rel', 'pids');
      pids = fs.readdirSync(dir).map((f) => Number(fs.readFileSync(path.join(dir, f), 'utf8')));
      expect(pids).toHaveLength(3);
      expect(spawnSync(script, ['stop', 'rel', 'fast'], { cwd, timeout: 30_000 }).status).toBe(0);
      expect(fs.existsSync(path.join(cwd, 'rel'))).toBe(false);
      for (let i = 0; i < 50 && pids.some(alive); i++) spawnSync('sleep', ['0.1']); // reaped by init
      expect(pids.filter(alive), 'daemons left running').toEqual([]);
    } finally {
      for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL'); // ours: started above
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  }, 180_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
