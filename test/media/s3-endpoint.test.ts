// What an s3:// command does with an endpoint that is not an http(s) URL, or with no
// credentials at all: one line naming the flag or variable (exit 4) or what is missing
// (exit 11), before any request, and a dump takes no snapshot. No object store needed:
// the endpoint is refused before anything is sent.
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
