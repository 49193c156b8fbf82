// What an s3:// command does with an endpoint that is not an http(s) URL, or with no
// credentials at all: one line naming the flag or variable (exit 4) or what is missing
// (exit 11), before any request, and a dump takes no snapshot. No object store needed:
// the endpoint is refused before anything is sent. A store that takes the connection and
// never answers fails the command (exit 12) once its requests time out; the S3 tuning
// variables and an over-long object key are refused before any request (exit 4).
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { volumeWithSnapshot } from '../support/in-process.js';
import { expectOneLineError, snapshotNames, refused } from '../support/stream-cli.js';
import fs from 'node:fs';

const root = tempDir('imgstream-s3-endpoint-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL: '' };
const o = { env, timeoutMs: 60_000 };

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('an S3 endpoint that is not a URL', () => {
  it('is refused in one line naming it (exit 4), and a dump takes no snapshot', async () => {
    const vol = path.join(root, 'v.vol');
    await volumeWithSnapshot(vol, path.join(root, 'v.raw'), env);
    const cases: Array<[string, string[], Record<string, string>, RegExp]> = [
      ['not a URL', ['--s3-endpoint', 'ceph1:7480x'], {}, /--s3-endpoint ceph1:7480x: not an http or https URL/],
      ['no scheme', ['--s3-endpoint', 'ceph1'], {}, /--s3-endpoint ceph1: not a URL/],
      ['another scheme', ['--s3-endpoint', 'ftp://ceph1'], {}, /--s3-endpoint ftp:\/\/ceph1: not an http or https URL/],
      ['empty', ['--s3-endpoint', ''], {}, /--s3-endpoint is empty/],
      ['from the environment', [], { AWS_ENDPOINT_URL: 'ceph1' }, /AWS_ENDPOINT_URL ceph1: not a URL/],
    ];
    for (const [what, flags, extra, pattern] of cases) {
      const e = { ...env, ...extra };
      expectOneLineError(await refused(['verify', 's3://dumps/vm/l0', ...flags], { env: e }), `verify, ${what}`, 4, pattern);
      expectOneLineError(await refused(['dump', vol, '--level', '0', '--to', 's3://dumps/vm/l0', ...flags], { env: e }), `dump, ${what}`, 4, pattern);
    }
    expect(await snapshotNames(vol, o)).toEqual(['s1']);
  });

  it('no credentials at all are named as such (exit 11), not as credentials the store refused', async () => {
    const e = { ...env, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', HOME: root, AWS_PROFILE: '', AWS_CONFIG_FILE: path.join(root, 'none'), AWS_SHARED_CREDENTIALS_FILE: path.join(root, 'none'), AWS_EC2_METADATA_DISABLED: 'true' };
    expectOneLineError(await refused(['verify', 's3://dumps/vm/l0', '--s3-endpoint', 'http://127.0.0.1:1', '--s3-path-style'], { env: e }), 'verify, no credentials', 11, /no credentials found/);
  });
});

describe('a store that never answers, and settings refused before any request', () => {
  it('a dump or verify against an endpoint that takes the connection and never answers fails in one line (exit 12) once its requests time out', async () => {
    const silent = net.createServer(() => {}); // holds every connection, answers nothing
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const vol = path.join(root, 'silent.vol');
      await volumeWithSnapshot(vol, path.join(root, 'silent.raw'), env);
      const e = { ...env, IMGSTREAM_S3_TIMEOUT_S: '1' };
      const flags = ['--s3-endpoint', `http://127.0.0.1:${port}`, '--s3-path-style'];
      expectOneLineError(await refused(['verify', 's3://dumps/vm/l0', ...flags], { env: e }), 'verify, a silent store', 12, /did not answer in time/);
      expectOneLineError(await refused(['dump', vol, '--level', '0', '--to', 's3://dumps/vm/l0', ...flags], { env: e }), 'dump, a silent store', 12, /did not answer in time/);
      expect(await snapshotNames(vol, o)).toEqual(['s1']);
    } finally {
      silent.close();
    }
  });

  it('an S3 tuning variable out of range, or an object key over 1024 bytes: exit 4 before any request', async () => {
    const flags = ['--s3-endpoint', 'http://127.0.0.1:1', '--s3-path-style'];
    const vol = path.join(root, 'tuning.vol');
    await volumeWithSnapshot(vol, path.join(root, 'tuning.raw'), env);
    for (const [name, value] of [['IMGSTREAM_S3_PART_MIB', '100000'], ['IMGSTREAM_S3_PART_MIB', 'abc'], ['IMGSTREAM_S3_UPLOADS', '0'], ['IMGSTREAM_S3_TIMEOUT_S', '-1']]) {
      expectOneLineError(await refused(['dump', vol, '--level', '0', '--to', 's3://dumps/vm/t', ...flags], { env: { ...env, [name]: value } }), `${name}=${value}`, 4, new RegExp(`${name}=${value} is not a whole number from \\d+ to \\d+`));
    }
    for (const [name, value] of [['IMGSTREAM_S3_READ_KIB', '5000000'], ['IMGSTREAM_S3_READ_AHEAD', '1.5']]) {
      expectOneLineError(await refused(['verify', 's3://dumps/vm/t', ...flags], { env: { ...env, [name]: value } }), `${name}=${value}`, 4, new RegExp(`${name}=${value.replace('.', '\\.')} is not a whole number`));
    }
    expectOneLineError(await refused(['dump', vol, '--level', '0', '--to', `s3://dumps/${'a'.repeat(1100)}`, ...flags], { env }), 'a key of 1100 bytes', 4, /the object key is 1100 bytes long, and S3 takes at most 1024/);
    expect(await snapshotNames(vol, o)).toEqual(['s1']);
  });
});
