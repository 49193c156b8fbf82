// The tests' S3 server: a real Ceph object gateway (radosgw over a one-monitor, one-OSD
// memstore cluster) on 127.0.0.1, started by ceph-rgw.sh once per test file that needs it
// and stopped in afterAll (and, failing that, when the process exits). Tests that need it
// are skipped only when the Ceph packages are absent (hasCeph), saying so on stderr.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// beside this file, or (compiled to dist/test/support, for the benchmark) in the sources
const SCRIPT = [path.join(HERE, 'ceph-rgw.sh'), path.resolve(HERE, '../../../test/support/ceph-rgw.sh')].find((f) => fs.existsSync(f))!;
const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'ceph', 'ceph-authtool', 'monmaptool'];

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && fs.existsSync(path.join(d, bin)));
}

export const hasCeph = BINARIES.every(onPath);
if (!hasCeph) process.stderr.write(`S3 tests skipped: the Ceph packages are not installed (apt-get install -y ceph-mon ceph-osd radosgw ceph-common; missing: ${BINARIES.filter((b) => !onPath(b)).join(' ')})\n`);

export interface Gateway {
  endpoint: string;
  /** AWS credentials and region for the CLI's environment. */
  env: Record<string, string>;
  /** The CLI flags that reach the gateway. */
  flags: string[];
  /** An SDK client on the gateway (set up as the tests' own view of the bucket). */
  client: S3Client;
  /** Kills radosgw only (the cluster stays), and starts it again. */
  stopRgw(): void;
  startRgw(): void;
  stop(): void;
}

/** Starts a cluster on a free port range and creates `buckets`. */
export async function startGateway(buckets: string[] = []): Promise<Gateway> {
  let dir = '';
  let base = 0;
  let out = '';
  for (let attempt = 0; ; attempt++) {
    base = 30_000 + ((process.pid * 7 + attempt * 13) % 150) * 200;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-ceph-'));
    const r = spawnSync(SCRIPT, ['start', dir, String(base)], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) {
      out = fs.readFileSync(path.join(dir, 's3.env'), 'utf8');
      break;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    if (attempt >= 3 || !/already in use/.test(r.stderr)) throw new Error(`the Ceph gateway did not start: ${r.stderr.trim().split('\n').slice(-20).join('\n')}`);
  }
  const vars = Object.fromEntries(
    out
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const stop = () => {
    process.off('exit', stop);
    spawnSync(SCRIPT, ['stop', dir, 'fast'], { stdio: 'ignore', timeout: 30_000 });
  };
  process.on('exit', stop);
  const endpoint = vars.S3_ENDPOINT;
  const env = { AWS_ACCESS_KEY_ID: vars.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: vars.AWS_SECRET_ACCESS_KEY, AWS_REGION: 'us-east-1' };
  // the SDK's notice that its later releases need Node 22, as imgstream's own client turns it off (src/media/s3/s3-client.ts)
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } });
  for (const b of buckets) await client.send(new CreateBucketCommand({ Bucket: b }));
  return {
    endpoint,
    env,
    flags: ['--s3-endpoint', endpoint, '--s3-path-style'],
    client,
    stopRgw: () => execFileSync(SCRIPT, ['stop-rgw', dir], { stdio: 'ignore' }),
    startRgw: () => execFileSync(SCRIPT, ['start-rgw', dir, String(base)], { stdio: 'ignore', timeout: 30_000 }),
    stop,
  };
}
