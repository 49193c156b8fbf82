// `npm run bench`: every benchmark, each measured as a ratio against a baseline taken in
// the same run (STYLE.md rule 8), printed as a table; the results as JSON on the last
// line of stdout, or in the file given by --json FILE. A MISS is reported, not fatal;
// the exit status is 1 only when a benchmark crashed (threw, or the product gave a wrong
// answer).
//
//   node dist/test/bench/run.js [--json FILE] [--only NAME,...] [--cache warm|cold]
//                               [--work DIR] [--keep] [--mux-size SIZE] [--nbd-size SIZE]
import fs from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { canDropCaches, type CacheMode } from './cache-state.js';
import { assertCliBuilt } from './cli.js';
import { BenchContext } from './context.js';
import { benchCp1TiB } from './cp-1tib.js';
import { benchDumpNone, benchDumpZstd } from './dump-l0.js';
import { benchDumpL1 } from './dump-l1.js';
import { benchDumpEncrypt } from './dump-encrypt.js';
import { benchImageEval } from './image-eval.js';
import { benchImport } from './import.js';
import { Interrupted } from './measure.js';
import { crashed, formatTable, type BenchRow } from './result.js';
import { describeLoad, machineLoad } from './machine-load.js';
import { benchRestoreChain } from './restore-chain.js';
import { benchMirror } from './mirror.js';
import { benchProtect } from './protect.js';
import { benchMultiplex, setMultiplexVolumeBytes } from './multiplex.js';
import { benchNbd, NBD_ROWS, setNbdImageBytes } from './nbd.js';
import { benchS3, S3_ROWS } from './s3.js';
import { parseSize } from '../../src/core/size.js';
import { benchProtectRestore } from './protect-restore.js';
import { benchProtectSparse } from './protect-sparse.js';
import { benchMirrorSparse } from './mirror-sparse.js';
import { makeWorkDir, removeWorkDir } from './work-dir.js';

interface Suite {
  /** The rows it reports, in order. */
  names: string[];
  run(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void>;
}

const SUITES: Suite[] = [
  { names: ['image-eval', 'image-eval-cli'], run: benchImageEval },
  { names: ['cp-1tib'], run: benchCp1TiB },
  { names: ['import', 'import-vs-dd', 'reimport'], run: benchImport },
  // these four share the volumes and streams of dump-fixtures.ts, built on first use
  { names: ['dump-none', 'dump-none-vs-dd', 'dump-none-rss'], run: benchDumpNone },
  { names: ['dump-zstd', 'dump-zstd-rss'], run: benchDumpZstd },
  { names: ['dump-l1', 'dump-l1-bytes', 'dump-l1-8g', 'dump-l1-rss'], run: benchDumpL1 },
  { names: ['dump-encrypt', 'dump-encrypt-none'], run: benchDumpEncrypt },
  { names: ['restore-chain', 'restore-chain-rss'], run: benchRestoreChain },
  { names: ['mirror-full-bytes', 'mirror-full', 'mirror-l1', 'mirror-l1-bytes'], run: benchMirror },
  { names: ['mirror-sparse-noop', 'mirror-sparse-l1'], run: benchMirrorSparse },
  { names: ['protect-write', 'protect-write-journal', 'protect-lag-p99', 'protect-hot-bytes'], run: benchProtect },
  { names: ['mux-throttled', 'mux-idle', 'mux-unthrottled', 'mux-restore'], run: benchMultiplex },
  { names: ['protect-restore', 'protect-restore-distinct'], run: benchProtectRestore },
  { names: ['protect-sparse-export', 'protect-sparse-restore'], run: benchProtectSparse },
  // qemu-img, nbdcopy and nbdkit against the NBD server; SKIP rows without them
  { names: NBD_ROWS, run: benchNbd },
  // a Ceph gateway of its own (started and stopped here); SKIP rows without Ceph
  { names: S3_ROWS, run: benchS3 },
];

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      json: { type: 'string' },
      only: { type: 'string' },
      cache: { type: 'string', default: 'warm' },
      work: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'mux-size': { type: 'string' },
      'nbd-size': { type: 'string' },
    },
  });
  if (values['mux-size']) setMultiplexVolumeBytes(parseSize(values['mux-size'], '--mux-size'));
  if (values['nbd-size']) setNbdImageBytes(parseSize(values['nbd-size'], '--nbd-size'));
  const cache = values.cache as CacheMode;
  if (cache !== 'warm' && cache !== 'cold') throw new Error(`--cache must be warm or cold, not "${values.cache}"`);
  if (cache === 'cold' && !canDropCaches()) throw new Error('--cache cold needs to write /proc/sys/vm/drop_caches (root)');
  const only = values.only?.split(',').map((s) => s.trim());
  const suites = only ? SUITES.filter((s) => s.names.some((n) => only.includes(n))) : SUITES;
  if (suites.length === 0) throw new Error(`--only ${values.only}: no such benchmark (known: ${SUITES.flatMap((s) => s.names).join(', ')})`);
  assertCliBuilt();

  const work = makeWorkDir(values.work);
  const cleanup = () => {
    if (!values.keep) removeWorkDir(work.dir);
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const ctx = new BenchContext(work.dir, cache);
  ctx.log(`work directory ${work.describe}; page cache: ${cache}`);
  const started = Date.now();
  const loadBefore = machineLoad();
  const rows: BenchRow[] = [];
  try {
    for (const suite of suites) {
      const got: BenchRow[] = [];
      try {
        await suite.run(ctx, (r) => {
          got.push(r);
          ctx.log(`${r.name}: ${r.verdict} ${r.verdict === 'SKIP' ? `(${r.skipped})` : `(ratio ${r.ratio?.toFixed(3)})`}`);
        });
      } catch (err) {
        if (err instanceof Interrupted) throw err;
        ctx.log(`${suite.names.join('/')} crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        for (const n of suite.names) if (!got.some((r) => r.name === n)) got.push(crashed(n, err));
      }
      rows.push(...got);
    }
  } finally {
    cleanup();
  }
  const seconds = (Date.now() - started) / 1000;
  const loadAfter = machineLoad();

  const cacheLine =
    cache === 'warm'
      ? 'page cache: warm (before every measurement: sync, then the inputs are read once, so both sides read them from memory and pay their own writeback)'
      : 'page cache: cold (before every measurement: sync, then drop_caches, so both sides read their inputs from disk)';
  process.stdout.write(
    [
      `imgstream benchmarks: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, node ${process.version}, ${seconds.toFixed(0)} s`,
      cacheLine,
      `machine (other work included): before ${describeLoad(loadBefore)}; after ${describeLoad(loadAfter)} (1-minute averages; pressure = share of time some task waited)`,
      '',
      formatTable(rows),
      '',
      ...ctx.notes.map((n) => `note: ${n}`),
      '',
    ].join('\n'),
  );
  const report = {
    benchmark: 'imgstream',
    date: new Date(started).toISOString(),
    node: process.version,
    cores: os.cpus().length,
    memoryBytes: os.totalmem(),
    cache,
    seconds,
    load: { before: loadBefore, after: loadAfter },
    results: rows,
    notes: ctx.notes,
  };
  if (values.json) {
    fs.writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(`results written to ${values.json}\n`);
  } else process.stdout.write(`${JSON.stringify(report)}\n`);
  return rows.some((r) => r.verdict === 'CRASH') ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof Interrupted ? 130 : 1;
  },
);
