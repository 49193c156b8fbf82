// `node dist/test/bench/s3.js [--mib N]`: object storage on a real Ceph gateway on
// loopback (test/support/ceph-rgw.sh, memstore), each figure against the AWS SDK in the
// same run: a level-0 dump (--compress none) to s3:// vs uploading the same bytes from a
// file with @aws-sdk/lib-storage's Upload (8 MiB parts, 4 at once), and a restore from
// the object vs downloading it with one GetObject into a file. Ratios are
// baseline time / imgstream time (>= 0.8 wanted). The memstore OSD keeps the objects in
// RAM, so the volume is small (default 512 MiB, not 4 GiB).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { DeleteObjectCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { CLI_BIN } from './cli.js';
import { startGateway } from '../support/ceph-gateway.js';

const { values } = parseArgs({ options: { mib: { type: 'string', default: '512' }, runs: { type: 'string', default: '2' } } });
const MIB = Number(values.mib);
const RUNS = Number(values.runs);
process.env.STORE_SIZE_MB ??= String(Math.max(2048, MIB * 4));
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-bench-s3-'));
const gw = await startGateway(['bench']);
const env = { ...process.env, ...gw.env, IMGSTREAM_CATALOG: path.join(dir, 'catalog.json') };
const cli = (args: string[]) => execFileSync(process.execPath, [CLI_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 }).toString();
/** Wall seconds, and the peak RSS in MiB of the command when /usr/bin/time is there. */
function timed(args: string[]): { s: number; rssMiB?: number } {
  const t0 = process.hrtime.bigint();
  if (fs.existsSync('/usr/bin/time')) {
    const r = spawnSync('/usr/bin/time', ['-f', 'RSS %M', process.execPath, CLI_BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`imgstream ${args.join(' ')}: ${r.stderr}`);
    const out = r.stderr;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    return { s, rssMiB: Number(/RSS (\d+)/.exec(out)?.[1] ?? 0) / 1024 };
  }
  cli(args);
  return { s: Number(process.hrtime.bigint() - t0) / 1e9 };
}
async function timeAsync(f: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
const del = (key: string) => gw.client.send(new DeleteObjectCommand({ Bucket: 'bench', Key: key }));

try {
  const vol = path.join(dir, 'v.vol');
  const raw = path.join(dir, 'raw');
  cli(['volume', 'create', vol, '--size', `${MIB}M`]);
  execFileSync('head', ['-c', `${MIB}M`, '/dev/urandom'], { stdio: ['ignore', fs.openSync(raw, 'w'), 'inherit'] });
  cli(['volume', 'import', vol, '--from', raw, '-q']);
  fs.rmSync(raw);
  cli(['snapshot', 'create', vol, 'b', '-q']);
  const file = path.join(dir, 'stream.l0');
  cli(['dump', vol, '--level', '0', '--snapshot', 'b', '--to', file, '--compress', 'none', '-q']);
  const bytes = fs.statSync(file).size;
  const dumpArgs = (key: string) => ['dump', vol, '--level', '0', '--snapshot', 'b', '--to', `s3://bench/${key}`, '--compress', 'none', '-q', ...gw.flags];
  const best = { dump: Infinity, upload: Infinity, restore: Infinity, download: Infinity, dumpRss: 0, restoreRss: 0 };
  for (let r = 0; r < RUNS; r++) {
    best.upload = Math.min(best.upload, await timeAsync(() => new Upload({ client: gw.client, params: { Bucket: 'bench', Key: 'sdk', Body: fs.createReadStream(file, { highWaterMark: 1 << 20 }) }, partSize: 8 << 20, queueSize: 4 }).done()));
    const d = timed(dumpArgs(`l0-${r}`));
    best.dump = Math.min(best.dump, d.s);
    best.dumpRss = Math.max(best.dumpRss, d.rssMiB ?? 0);
    const out = path.join(dir, 'download');
    best.download = Math.min(best.download, await timeAsync(async () => {
      const g = await gw.client.send(new GetObjectCommand({ Bucket: 'bench', Key: 'sdk' }));
      await pipeline(g.Body as NodeJS.ReadableStream, fs.createWriteStream(out));
    }));
    fs.rmSync(out);
    const to = path.join(dir, `r${r}.vol`);
    const rs = timed(['restore', '--from', `s3://bench/l0-${r}`, '--to', to, '-q', ...gw.flags]);
    best.restore = Math.min(best.restore, rs.s);
    best.restoreRss = Math.max(best.restoreRss, rs.rssMiB ?? 0);
    fs.rmSync(to);
    await del('sdk');
    await del(`l0-${r}`);
  }
  const mibps = (s: number) => (bytes / 2 ** 20 / s).toFixed(0);
  console.log(`stream ${(bytes / 2 ** 20).toFixed(0)} MiB, best of ${RUNS}`);
  console.log(`s3-dump     ${best.dump.toFixed(2)} s (${mibps(best.dump)} MiB/s, peak RSS ${best.dumpRss.toFixed(0)} MiB)  vs SDK Upload ${best.upload.toFixed(2)} s: ratio ${(best.upload / best.dump).toFixed(2)}`);
  console.log(`s3-restore  ${best.restore.toFixed(2)} s (${mibps(best.restore)} MiB/s, peak RSS ${best.restoreRss.toFixed(0)} MiB)  vs SDK GetObject ${best.download.toFixed(2)} s: ratio ${(best.download / best.restore).toFixed(2)}`);
} finally {
  gw.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
