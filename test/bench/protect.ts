// protect-*: continuous protection (issue 14), through the CLI as a user runs it: a
// volume served with `serve nbd --journal`, `imgstream protect` shipping to a peer daemon
// on 127.0.0.1 (plain TCP) with --interval 1s, and libnbd clients writing.
//
// protect-write: random 4 KiB writes through NBD at the fastest rate the machine takes
// (fio's libnbd engine: C, 16 requests in flight, 256 MiB disk) with the journal and the
// shipper on, vs the same load on the same server without them; ops/s as MB/s of writes,
// median of the rounds, target >= 0.7. The client shares the machine's cores with the
// server, shipper and daemon, so it is the lightest stock client there is: fio spends
// about 7 µs of CPU per write where a Python libnbd loop spends 13.
// protect-write-journal: the same load on a server with --journal and no shipper (INFO):
// what journaling alone costs, beside what shipping and receiving add. Every round also
// reads each process's CPU (/proc/PID/stat) per write: server, shipper, daemon.
// protect-lag-p99: the 99th percentile of the shipper's lag (age of the oldest write not
// yet shipped when an interval is acknowledged) during the protect-write rounds; target
// <= 2000 ms (a limit on the figure; the baseline column is the interval).
// protect-hot-bytes: an overwrite-heavy load (90% of the writes to a 1% hot set) for 6 s:
// bytes on the wire to the daemon (counted by a proxy) vs 1.1 x the unique blocks written
// per interval (from the client's log, grouped by the interval its reply fell in) +
// 1 MiB; target ratio <= 1. The naive log of every write is in the description.
// (restore as of a time: protect-restore.ts)
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cliCommand } from './cli.js';
import type { BenchContext } from './context.js';
import { cpuSeconds, median } from './measure.js';
import { row, skipped, type BenchRow } from './result.js';
import { startDaemon } from './mirror.js';
import { startCutProxy } from '../support/cut-proxy.js';
import { REPO_ROOT } from '../support/cli.js';

const PYTHON = '/usr/bin/python3';
const FIO = ['/usr/bin/fio', '/usr/local/bin/fio'].find((f) => fs.existsSync(f));
const WRITER = path.join(REPO_ROOT, 'test', 'support', 'nbd-writer.py');
const ROUNDS = 3;
const LOAD_SECONDS = 6;
const DISK = 256 << 20;
const BS = 4096;
const MIB = 2 ** 20;

function cli(args: string[]): string {
  const [node, a] = cliCommand(args);
  const r = spawnSync(node, a, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`imgstream ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Starts a child and resolves with it once a stdout line satisfies `ready`. */
function startChild(args: string[], ready: (line: string) => boolean): Promise<{ child: ChildProcess; lines: string[]; stop(): Promise<void> }> {
  const [node, a] = cliCommand(args);
  const child = spawn(node, a, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (ready(line)) resolve({ child, lines, stop: async () => { child.kill('SIGTERM'); await exited; } });
      }
    });
    child.once('exit', (code) => reject(new Error(`imgstream ${args[0]} ${args[1]} exited ${code}: ${err.trim()}`)));
  });
}

function python(script: string, args: string[]): string {
  const r = spawnSync(PYTHON, [script, ...args], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${path.basename(script)}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** fio's libnbd engine: random 4 KiB writes, 16 in flight, for `seconds`; the bytes it wrote and how long it took. */
function fioLoad(uri: string, seconds: number, seed: number): { ops: number; bytes: number; seconds: number } {
  const r = spawnSync(FIO!, ['--name=protect', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--norandommap', `--randseed=${seed}`, '--time_based', `--runtime=${seconds}`, '--output-format=json'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`fio: ${r.stderr.trim() || r.stdout.trim()}`);
  const w = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: Array<{ write: { io_bytes: number; total_ios: number; runtime: number } }> }).jobs[0].write;
  return { ops: w.total_ios, bytes: w.io_bytes, seconds: w.runtime / 1000 };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

export async function benchProtect(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  if (!fs.existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import nbd']).status !== 0) {
    for (const n of ['protect-write', 'protect-write-journal', 'protect-lag-p99', 'protect-hot-bytes']) record(skipped(n, 'protect with a libnbd load', n.startsWith('protect-write') ? 'MB/s' : n === 'protect-lag-p99' ? 'ms' : 'MiB', 'python3-libnbd is not installed (the load generator is a libnbd client)'));
  } else {
    const daemon = await startDaemon(ctx);
    try {
      if (FIO) await benchWrites(ctx, daemon, record);
      else for (const n of ['protect-write', 'protect-write-journal', 'protect-lag-p99']) record(skipped(n, 'protect with an fio load', n === 'protect-lag-p99' ? 'ms' : 'MB/s', 'fio is not installed (the load generator is fio\'s libnbd engine)'));
      await benchHotBytes(ctx, daemon, record);
    } finally {
      daemon.stop();
    }
  }
}

type Daemon = Awaited<ReturnType<typeof startDaemon>>;

/** Microseconds of CPU per write of each process, median over the rounds. */
type CpuPerWrite = Record<'server' | 'shipper' | 'daemon', number[]>;

async function benchWrites(ctx: BenchContext, daemon: Daemon, record: (r: BenchRow) => void): Promise<void> {
  const vol = path.join(ctx.work, 'protect.vol');
  const sock = path.join(ctx.work, 'protect.sock');
  const modes = ['plain', 'journal', 'protected'] as const;
  const rates = { plain: [] as number[], journal: [] as number[], protected: [] as number[] };
  const cpu: Record<(typeof modes)[number], CpuPerWrite> = {
    plain: { server: [], shipper: [], daemon: [] },
    journal: { server: [], shipper: [], daemon: [] },
    protected: { server: [], shipper: [], daemon: [] },
  };
  const lags: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) {
      fs.rmSync(vol, { force: true });
      fs.rmSync(`${vol}.journal`, { recursive: true, force: true });
      fs.rmSync(path.join(daemon.root, 'protect.cdp'), { recursive: true, force: true });
      cli(['volume', 'create', vol, '--size', String(DISK)]);
      const server = await startChild(['serve', 'nbd', vol, '--socket', sock, '--json', ...(mode === 'plain' ? [] : ['--journal'])], (l) => l.includes('listening'));
      let shipper: Awaited<ReturnType<typeof startChild>> | null = null;
      try {
        if (mode === 'protected') shipper = await startChild(['protect', vol, '--to', `${daemon.url}/protect.cdp`, '--token-file', daemon.token, '--plain', '--interval', '1s', '--json'], (l) => l.includes('"seed"'));
        const pids = { server: server.child.pid!, shipper: shipper?.child.pid, daemon: mode === 'protected' ? daemon.pid : undefined };
        const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid ? cpuSeconds(pid) : 0]));
        const out = fioLoad(`nbd+unix:///?socket=${sock}`, LOAD_SECONDS, round + 1);
        rates[mode].push(out.bytes / 1e6 / out.seconds);
        // the work of the writes includes shipping them: the last intervals ship before the CPU is read again
        if (shipper) await new Promise((r) => setTimeout(r, 2500));
        for (const [k, pid] of Object.entries(pids) as Array<[keyof CpuPerWrite, number | undefined]>) if (pid) cpu[mode][k].push(((cpuSeconds(pid) - before[k]) / out.ops) * 1e6);
        if (shipper) {
          for (const l of shipper.lines) {
            const e = JSON.parse(l) as { event: string; lagMs?: number };
            if (e.event === 'interval') lags.push(e.lagMs!);
          }
        }
      } finally {
        await shipper?.stop();
        await server.stop();
      }
      ctx.log(`protect-write ${round + 1}/${ROUNDS}: ${mode} ${rates[mode].at(-1)!.toFixed(1)} MB/s`);
    }
  }
  const us = (xs: number[]) => median(xs).toFixed(1);
  const perWrite = `CPU per write: server ${us(cpu.plain.server)} µs plain, ${us(cpu.journal.server)} µs journaling, ${us(cpu.protected.server)} µs protected (+ shipper ${us(cpu.protected.shipper)} µs, daemon ${us(cpu.protected.daemon)} µs)`;
  record(row('protect-write', `random 4 KiB NBD writes (fio's libnbd engine, 16 in flight, ${LOAD_SECONDS} s) into a served 256 MiB volume with --journal and imgstream protect to a peer daemon on 127.0.0.1 (--interval 1s) vs the same load without them; MB/s, median of ${ROUNDS}; ${perWrite}`, 'MB/s', { measured: rates.protected, baseline: rates.plain }, median(rates.protected), median(rates.plain), { on: 'ratio', op: '>=', value: 0.7 }));
  record(row('protect-write-journal', `the same load with --journal and no shipper vs none: what journaling alone costs the server (MB/s, median of ${ROUNDS})`, 'MB/s', { measured: rates.journal, baseline: rates.plain }, median(rates.journal), median(rates.plain), null));
  const p99 = percentile(lags, 0.99);
  record(row('protect-lag-p99', `99th percentile of the shipper's lag over ${lags.length} intervals of the protect-write rounds (age of the oldest unshipped write when its interval was acknowledged) vs the 1 s interval`, 'ms', { measured: lags, baseline: [1000] }, p99, 1000, { on: 'measured', op: '<=', value: 2000 }));
  fs.rmSync(vol, { force: true });
  fs.rmSync(`${vol}.journal`, { recursive: true, force: true });
}

async function benchHotBytes(ctx: BenchContext, daemon: Daemon, record: (r: BenchRow) => void): Promise<void> {
  const vol = path.join(ctx.work, 'hot.vol');
  const sock = path.join(ctx.work, 'hot.sock');
  fs.rmSync(path.join(daemon.root, 'hot.cdp'), { recursive: true, force: true });
  cli(['volume', 'create', vol, '--size', String(DISK)]);
  const port = Number(new URL(daemon.url.replace('peer://', 'http://')).port);
  const proxy = await startCutProxy(port);
  const server = await startChild(['serve', 'nbd', vol, '--socket', sock, '--json', '--journal'], (l) => l.includes('listening'));
  let shipper: Awaited<ReturnType<typeof startChild>> | null = null;
  let log: Array<{ op: string; off: number; len: number; t1: number }> = [];
  let seedBytes = 0;
  try {
    shipper = await startChild(['protect', vol, '--to', `peer://127.0.0.1:${proxy.port}/hot.cdp`, '--token-file', daemon.token, '--plain', '--interval', '1s', '--json'], (l) => l.includes('"seed"'));
    seedBytes = proxy.bytesUp;
    const out = python(WRITER, [`nbd+unix:///?socket=${sock}`, '--seconds', '6', '--seed', '7', '--hot', '0.9', '--aligned', '--flush-every', '0']);
    log = out.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
    await new Promise((r) => setTimeout(r, 2500));
  } finally {
    await shipper?.stop();
    await server.stop();
    await proxy.close();
  }
  const wire = proxy.bytesUp - seedBytes;
  const perInterval = new Map<number, Set<number>>();
  let naive = 0;
  for (const o of log) {
    if (o.op === 'f') continue;
    naive += o.len;
    const k = Math.floor(o.t1 / 1000);
    if (!perInterval.has(k)) perInterval.set(k, new Set());
    for (let b = Math.floor(o.off / BS); b < Math.ceil((o.off + o.len) / BS); b++) perInterval.get(k)!.add(b);
  }
  const unique = [...perInterval.values()].reduce((a, s) => a + s.size, 0) * BS;
  const bound = 1.1 * unique + MIB;
  record(row('protect-hot-bytes', `bytes imgstream protect sent to the peer (after the seed) for 6 s of writes, 90% of them to a 1% hot set, vs 1.1 x the unique blocks written per 1 s interval (${(unique / MIB).toFixed(1)} MiB) + 1 MiB; the naive log of every write would be ${(naive / MIB).toFixed(1)} MiB (${(wire / naive).toFixed(3)} of it sent)`, 'MiB', { measured: [wire / MIB], baseline: [bound / MIB] }, wire / MIB, bound / MIB, { on: 'ratio', op: '<=', value: 1 }));
  fs.rmSync(vol, { force: true });
  fs.rmSync(`${vol}.journal`, { recursive: true, force: true });
}
