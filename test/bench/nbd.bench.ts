// NBD server benchmark, standalone (`npm run build`, then):
//
//   node dist/test/bench/nbd.bench.js [--size 4G] [--reps 3] [--work DIR] [--keep] [--json FILE]
//
// The same raw image is written with `qemu-img convert -n -O raw` into two exports, one
// after the other in the same run: `imgstream serve nbd` on a fresh volume, and the
// baseline `nbdkit file` serving a plain preallocated-size file; then each export is read
// back whole with `nbdcopy ... null:`. Both servers listen on Unix sockets. Reported: MB/s
// of each and the ratio imgstream / nbdkit (targets: >= 0.5 for writing and for reading),
// medians over --reps runs; the imgstream export is verified against the image (sha256)
// once. The results are printed as a table and as JSON on the last line of stdout.
//
// Two more rows: nbd-rewrite writes the same image into the imgstream export a second
// time (nothing changes: no-op rewrites) and compares with its first write (target
// >= 0.8, and 0 blocks in `active - before`); nbd-holes copies a volume that is half
// holes to a local file with nbdcopy and compares with the same copy from `nbdkit file`
// serving its raw image, zeros written out (target >= 1.5: holes are not transferred).
//
// The machine is often shared, and wall times then swing by half from one copy to the
// next: each row also gives the CPU seconds each server spent (utime + stime from
// /proc/PID/stat, threads included) on the same copy, which the other processes disturb
// much less (cpu columns and cpuRatio: imgstream's CPU per run over nbdkit's; < 1 is cheaper).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSeconds } from './measure.js';

const TARGET_RATIO = 0.5;
const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '..', '..', 'commands', '_cli', 'bin.js');

interface Sample {
  writeSeconds: number;
  readSeconds: number;
  /** CPU seconds the server spent on the write and on the read. */
  writeCpu?: number;
  readCpu?: number;
  holesCpu?: number;
  rewriteSeconds?: number;
  rewriteBlocks?: number;
  holesSeconds?: number;
}

function cliJson(env: NodeJS.ProcessEnv, args: string[]): unknown {
  const r = spawnSync(process.execPath, [CLI, ...args, '--json'], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`imgstream ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A raw image, half of it zeros (written out), in 64 MiB runs of data and zeros. */
function makeHalfHoles(file: string, size: number): void {
  const run = Math.min(64 << 20, size / 2);
  const data = Buffer.alloc(run);
  randomFillSync(data);
  const zero = Buffer.alloc(run);
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0, i = 0; off < size; off += run, i++) {
      const b = i % 2 ? zero : data;
      if (b === data) for (let k = 0; k < run; k += 4096) data.writeUInt32LE(i, k);
      fs.writeSync(fd, b, 0, Math.min(run, size - off));
    }
  } finally {
    fs.closeSync(fd);
  }
}

function parseSize(text: string): number {
  const m = /^(\d+)([KMGT]?)$/i.exec(text.trim());
  if (!m) throw new Error(`--size ${text}: use a number with K, M, G or T`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${String(r.stderr).trim()}`);
  return s;
}

/** Runs fn, returning its result and the CPU seconds `pid` spent meanwhile. */
function withCpu<T>(pid: number, fn: () => T): [T, number] {
  const c0 = cpuSeconds(pid);
  const out = fn();
  return [out, cpuSeconds(pid) - c0];
}

function sync(): void {
  spawnSync('sync');
}

/** A raw image of pseudo-random bytes (no zero blocks: every byte has to travel and land). */
function makeImage(file: string, size: number): void {
  const chunk = Buffer.alloc(Math.min(size, 64 << 20));
  randomFillSync(chunk);
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0, i = 0; off < size; off += chunk.length, i++) {
      for (let b = 0; b < chunk.length; b += 4096) chunk.writeUInt32LE(i, b); // no two chunks alike
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off));
    }
  } finally {
    fs.closeSync(fd);
  }
}

function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** sha256 of an export as nbdcopy streams it to stdout. */
function sha256Export(uri: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const child = spawn('nbdcopy', [uri, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.on('data', (b: Buffer) => h.update(b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(h.digest('hex')) : reject(new Error(`nbdcopy exited ${code}: ${err.trim()}`))));
  });
}

function waitForFile(file: string, ms = 10_000): void {
  const deadline = Date.now() + ms;
  while (!fs.existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear`);
    spawnSync('sleep', ['0.05']);
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
}

async function startImgstream(volume: string, socket: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; uri: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', 'nbd', volume, '--socket', socket, '--json'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b;
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    child.once('exit', (code) => reject(new Error(`imgstream serve nbd exited ${code} before it was ready`)));
  });
  const parsed = JSON.parse(line);
  if (!parsed.listening) throw new Error(`imgstream serve nbd did not start: ${line}`);
  return { child, uri: parsed.listening.uri as string };
}

function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '4G' },
      reps: { type: 'string', default: '3' },
      work: { type: 'string' },
      keep: { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const size = parseSize(values.size!);
  const reps = Math.max(1, Number(values.reps));
  const missing = ['qemu-img', 'nbdcopy', 'nbdkit'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
  if (missing.length) {
    process.stderr.write(`nbd.bench: ${missing.join(', ')} not installed (apt-get install qemu-utils libnbd-bin nbdkit)\n`);
    return 2;
  }
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const work = fs.mkdtempSync(path.join(values.work ?? os.tmpdir(), 'imgstream-nbd-bench-'));
  const env: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', IMGSTREAM_LOCK_DIR: path.join(work, 'locks') };
  delete env.NODE_ENV;
  const at = (f: string) => path.join(work, f);
  const cleanup = () => {
    if (!values.keep) fs.rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });

  try {
    process.stderr.write(`nbd.bench: writing a ${values.size} image in ${work}\n`);
    const image = at('image.raw');
    makeImage(image, size);
    const imageHash = sha256File(image); // also puts the image in the page cache for both sides
    const ours: Sample[] = [];
    const theirs: Sample[] = [];
    let peakRss = 0;
    let verified = false;

    for (let rep = 0; rep < reps; rep++) {
      // baseline: nbdkit's file plugin on a plain file of the image's size
      const target = at('nbdkit-target.raw');
      fs.rmSync(target, { force: true });
      fs.writeFileSync(target, '');
      fs.truncateSync(target, size);
      const ksock = at('nbdkit.sock');
      fs.rmSync(ksock, { force: true }); // nbdkit leaves its socket behind
      sync();
      const kit = spawn('nbdkit', ['--foreground', '--unix', ksock, 'file', target], { stdio: 'inherit' });
      try {
        waitForFile(ksock);
        const kuri = `nbd+unix:///?socket=${ksock}`;
        const [w, wc] = withCpu(kit.pid!, () => timed('qemu-img', ['convert', '-n', '-O', 'raw', image, kuri]));
        const [r, rc] = withCpu(kit.pid!, () => timed('nbdcopy', [kuri, 'null:']));
        theirs.push({ writeSeconds: w, readSeconds: r, writeCpu: wc, readCpu: rc });
      } finally {
        kit.kill('SIGTERM');
        await exited(kit);
      }
      fs.rmSync(target, { force: true });

      // imgstream: a fresh volume
      const vol = at('bench.vol');
      fs.rmSync(vol, { force: true });
      const created = spawnSync(process.execPath, [CLI, 'volume', 'create', vol, '--size', String(size)], { env, encoding: 'utf8' });
      if (created.status !== 0) throw new Error(`volume create: ${created.stderr}`);
      sync();
      const server = await startImgstream(vol, at('imgstream.sock'), env);
      try {
        const [w, wc] = withCpu(server.child.pid!, () => timed('qemu-img', ['convert', '-n', '-O', 'raw', image, server.uri]));
        const [r, rc] = withCpu(server.child.pid!, () => timed('nbdcopy', [server.uri, 'null:']));
        if (!verified) {
          const got = await sha256Export(server.uri);
          if (got !== imageHash) throw new Error(`the export does not hold the image (sha256 ${got}, expected ${imageHash})`);
          verified = true;
        }
        // the same image again: every block equals what it holds
        cliJson(env, ['snapshot', 'create', vol, 'before']);
        const rw = timed('qemu-img', ['convert', '-n', '-O', 'raw', image, server.uri]);
        const moved = (cliJson(env, ['image', vol, 'active - before']) as { blocks: number }).blocks;
        ours.push({ writeSeconds: w, readSeconds: r, writeCpu: wc, readCpu: rc, rewriteSeconds: rw, rewriteBlocks: moved });
        peakRss = Math.max(peakRss, peakRssBytes(server.child.pid!));
      } finally {
        server.child.kill('SIGTERM');
        const code = await exited(server.child);
        if (code !== 0) throw new Error(`imgstream serve nbd exited ${code} on SIGTERM`);
      }
      // half holes: nbdcopy to a local file, from imgstream and from nbdkit file of the raw image
      const half = at('half.raw');
      makeHalfHoles(half, size);
      const hvol = at('half.vol');
      fs.rmSync(hvol, { force: true });
      cliJson(env, ['volume', 'create', hvol, '--size', String(size)]);
      cliJson(env, ['volume', 'import', hvol, '--from', half]);
      const out = at('copy.raw');
      const hserver = await startImgstream(hvol, at('half.sock'), env);
      try {
        fs.rmSync(out, { force: true });
        sync();
        [ours[rep].holesSeconds, ours[rep].holesCpu] = withCpu(hserver.child.pid!, () => timed('nbdcopy', [hserver.uri, out]));
      } finally {
        hserver.child.kill('SIGTERM');
        await exited(hserver.child);
      }
      const hksock = at('nbdkit-half.sock');
      fs.rmSync(hksock, { force: true });
      const hkit = spawn('nbdkit', ['--foreground', '--readonly', '--unix', hksock, 'file', half], { stdio: 'inherit' });
      try {
        waitForFile(hksock);
        fs.rmSync(out, { force: true });
        sync();
        [theirs[rep].holesSeconds, theirs[rep].holesCpu] = withCpu(hkit.pid!, () => timed('nbdcopy', [`nbd+unix:///?socket=${hksock}`, out]));
      } finally {
        hkit.kill('SIGTERM');
        await exited(hkit);
      }
      fs.rmSync(out, { force: true });
      fs.rmSync(half, { force: true });
      fs.rmSync(hvol, { force: true });
      process.stderr.write(`nbd.bench: run ${rep + 1}/${reps}: rewrite ${ours[rep].rewriteSeconds!.toFixed(2)} s (${ours[rep].rewriteBlocks} blocks moved), half-holes copy ${ours[rep].holesSeconds!.toFixed(2)} s vs ${theirs[rep].holesSeconds!.toFixed(2)} s\n`);
      process.stderr.write(`nbd.bench: run ${rep + 1}/${reps}: write ${ours[rep].writeSeconds.toFixed(2)} s vs ${theirs[rep].writeSeconds.toFixed(2)} s, read ${ours[rep].readSeconds.toFixed(2)} s vs ${theirs[rep].readSeconds.toFixed(2)} s\n`);
      process.stderr.write(`nbd.bench: run ${rep + 1}/${reps}: server CPU: write ${ours[rep].writeCpu!.toFixed(2)} s vs ${theirs[rep].writeCpu!.toFixed(2)} s, read ${ours[rep].readCpu!.toFixed(2)} s vs ${theirs[rep].readCpu!.toFixed(2)} s, half-holes copy ${ours[rep].holesCpu!.toFixed(2)} s vs ${theirs[rep].holesCpu!.toFixed(2)} s; load ${os.loadavg()[0].toFixed(2)}\n`);
    }

    const mbps = (s: number) => size / s / 1e6;
    const rows = [
      { name: 'nbd-write', what: 'qemu-img convert -n into the export', imgstream: mbps(median(ours.map((s) => s.writeSeconds))), nbdkit: mbps(median(theirs.map((s) => s.writeSeconds))) },
      { name: 'nbd-read', what: 'nbdcopy export to null:', imgstream: mbps(median(ours.map((s) => s.readSeconds))), nbdkit: mbps(median(theirs.map((s) => s.readSeconds))) },
    ]
      .map((r) => ({ ...r, baseline: 'nbdkit', ratio: r.imgstream / r.nbdkit, target: TARGET_RATIO, ok: r.imgstream / r.nbdkit >= TARGET_RATIO }))
      .concat([
        (() => {
          const first = mbps(median(ours.map((s) => s.writeSeconds)));
          const again = mbps(median(ours.map((s) => s.rewriteSeconds!)));
          const moved = Math.max(...ours.map((s) => s.rewriteBlocks!));
          return { name: 'nbd-rewrite', what: `same image again (${moved} blocks moved) vs first write`, imgstream: again, nbdkit: first, baseline: 'first write', ratio: again / first, target: 0.8, ok: again / first >= 0.8 && moved === 0 };
        })(),
        (() => {
          const ourHoles = mbps(median(ours.map((s) => s.holesSeconds!)));
          const kitHoles = mbps(median(theirs.map((s) => s.holesSeconds!)));
          return { name: 'nbd-holes', what: 'nbdcopy of a half-holes disk to a file', imgstream: ourHoles, nbdkit: kitHoles, baseline: 'nbdkit', ratio: ourHoles / kitHoles, target: 1.5, ok: ourHoles / kitHoles >= 1.5 };
        })(),
      ]);

    process.stdout.write(`NBD server vs nbdkit file, ${values.size} image, median of ${reps} runs (cpus: ${os.cpus().length})\n`);
    process.stdout.write(`${'benchmark'.padEnd(11)} ${'what'.padEnd(52)} ${'imgstream'.padStart(12)} ${'baseline'.padStart(12)} ${'ratio'.padStart(6)}  target\n`);
    for (const r of rows) {
      process.stdout.write(`${r.name.padEnd(11)} ${r.what.padEnd(52)} ${`${r.imgstream.toFixed(0)} MB/s`.padStart(12)} ${`${r.nbdkit.toFixed(0)} MB/s`.padStart(12)} ${r.ratio.toFixed(2).padStart(6)}  >= ${r.target} ${r.ok ? 'ok' : 'MISS'}\n`);
    }
    const cpu = (['write', 'read', 'holes'] as const).map((what) => {
      const key = `${what}Cpu` as 'writeCpu' | 'readCpu' | 'holesCpu';
      const imgstream = median(ours.map((s) => s[key]!));
      const nbdkit = median(theirs.map((s) => s[key]!));
      return { what, imgstream, nbdkit, cpuRatio: imgstream / nbdkit };
    });
    process.stdout.write(`server CPU seconds per run (median): ${cpu.map((c) => `${c.what} ${c.imgstream.toFixed(2)} vs ${c.nbdkit.toFixed(2)} (${c.cpuRatio.toFixed(2)})`).join(', ')}; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
    process.stdout.write(`imgstream server peak memory: ${(peakRss / 2 ** 20).toFixed(0)} MiB; export verified by sha256: ${verified}\n`);
    const result = { size, reps, rows, cpu, samples: { imgstream: ours, nbdkit: theirs }, peakRssBytes: peakRss, verified };
    if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return 0;
  } finally {
    cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`nbd.bench: ${err.message}\n`);
    process.exit(1);
  },
);
