// mirror-*: mirroring a 4 GiB volume (dump-fixtures.ts: half-compressible blocks, 10% zero
// blocks) to a peer daemon (`imgstream serve peer --plain` on 127.0.0.1, a directory of
// the work directory) through the CLI, as a user runs it.
//
// mirror-full: the first `mirror update` (every block of the volume) vs `cat` of the same
// bytes (the image's non-zero blocks as one file) to a file, + sync; MB/s of block data,
// target >= 0.6. The mirror is removed between rounds, so each one is a full transfer.
//
// mirror-l1: after 1% of the blocks changed, `mirror update` (the blocks the
// mark-on-allocate plane marked) vs rsync of the volume file to a local rsync daemon
// holding the unchanged file (--inplace --no-whole-file: rsync's delta transfer), wall
// time, target <= 0.1. Each round changes another 1% (the re-import writes exactly those
// blocks), puts the unchanged volume file in the rsync module untimed, then times both.
// mirror-l1-bytes: the bytes the update sent on the connection (JSON headers and
// payloads, before TLS; blocks zstd-compressed) vs the changed data; target <= 1.1 x
// changed data + 1 MiB.
// mirror-full-bytes: the wire bytes of the first update (zstd records, the default) vs
// its block data (what --compress none sends, headers aside); target ratio <= 0.6 on
// these half-compressible blocks.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { cliCommand, cliJson } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { row, skipped, type BenchRow } from './result.js';
import { buildVolume, importPiped, packedDataOf, settleFor, VOLUME_BYTES, CHANGED_BLOCKS, type TestVolume } from './dump-fixtures.js';
import { RsyncDaemon, rsyncInstalled } from './rsync-daemon.js';

const ROUNDS = 3;
const MIB = 2 ** 20;
const RSYNC = ['--archive', '--inplace', '--no-whole-file', '--sparse'];

interface MirrorJson {
  mode: string;
  blocks: number;
  planBlocks: number;
  bytes: number;
  dataBytes: number;
  mapDeltas: number;
}

/** `imgstream serve peer` on 127.0.0.1, plain TCP, with a token file; resolves when it listens. */
export async function startDaemon(ctx: BenchContext): Promise<{ url: string; token: string; root: string; pid: number; stop(): void }> {
  const root = path.join(ctx.work, 'peer-root');
  fs.mkdirSync(root, { recursive: true });
  const token = path.join(ctx.work, 'peer-token');
  fs.writeFileSync(token, `${'b'.repeat(48)}\n`, { mode: 0o600 });
  const [node, args] = cliCommand(['serve', 'peer', '--root', root, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json']);
  const child: ChildProcess = spawn(node, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = () => child.kill('SIGTERM');
  process.once('exit', () => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('listening'));
      if (!line) return;
      const info = JSON.parse(line) as { listening: { port: number } };
      resolve(info.listening.port);
    });
    child.once('exit', (code) => reject(new Error(`serve peer exited with ${code}: ${err.trim()}`)));
  });
  return { url: `peer://127.0.0.1:${port}`, token, root, pid: child.pid!, stop };
}

function mirrorArgs(vol: TestVolume, url: string, token: string, state: string): string[] {
  return ['mirror', 'update', vol.path, '--to', `${url}/vm`, '--token-file', token, '--plain', '--state', state, '--json'];
}

export async function benchMirror(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const vol = await buildVolume(ctx, 'mirror.vol', VOLUME_BYTES, 7171);
  const data = await packedDataOf(ctx, vol, 'mirror-data.raw');
  const daemon = await startDaemon(ctx);
  const state = path.join(ctx.work, 'mirrors.json');
  const dest = path.join(daemon.root, 'vm');
  try {
    // full initial mirror vs cat
    const copy = path.join(ctx.work, 'mirror-cat.copy');
    const t = { cat: [] as number[], mirror: [] as number[] };
    let last: MirrorJson | null = null;
    const steps = interleave(['cat', 'mirror'] as const, ROUNDS);
    for (const [i, step] of steps.entries()) {
      if (step === 'mirror') {
        fs.rmSync(dest, { force: true });
        fs.rmSync(state, { force: true });
        run('sync', []);
        await settleFor(ctx, [vol.path], []);
        let r: MirrorJson | null = null;
        const s = seconds(() => {
          r = cliJson<MirrorJson>(mirrorArgs(vol, daemon.url, daemon.token, state));
        });
        last = r!;
        if (last.mode !== 'full' || last.blocks < vol.base.blocks) throw new Error(`first mirror update sent ${last.blocks} blocks (${last.mode}), expected a full transfer of at least ${vol.base.blocks}`);
        t.mirror.push(last.dataBytes / 1e6 / s);
      } else {
        fs.rmSync(copy, { force: true });
        await settleFor(ctx, [], [data.path]);
        const s = seconds(() => run('sh', ['-c', 'cat "$1" > "$2" && sync "$2"', 'sh', data.path, copy]));
        t.cat.push(data.bytes / 1e6 / s);
      }
      ctx.log(`mirror-full ${i + 1}/${steps.length}: ${step} ${t[step].at(-1)!.toFixed(0)} MB/s`);
    }
    fs.rmSync(copy, { force: true });
    fs.rmSync(data.path, { force: true });
    record(row('mirror-full-bytes', `wire bytes of the first imgstream mirror update of the 4 GiB volume to the peer daemon (records compressed with zstd on worker threads, the default) vs its ${(last!.dataBytes / 1e9).toFixed(2)} GB of block data (what --compress none sends, headers aside)`, 'MiB', { measured: [last!.bytes / MIB], baseline: [last!.dataBytes / MIB] }, last!.bytes / MIB, last!.dataBytes / MIB, { on: 'ratio', op: '<=', value: 0.6 }));
    record(row('mirror-full', `first imgstream mirror update of the 4 GiB volume (${(last!.dataBytes / 1e9).toFixed(2)} GB of blocks) to a peer daemon on 127.0.0.1 (plain TCP; the daemon fsyncs and commits) vs cat of the image's ${(data.bytes / 1e9).toFixed(2)} GB of non-zero blocks to a file, + sync; MB/s, median of ${ROUNDS} each`, 'MB/s', { measured: t.mirror, baseline: t.cat }, median(t.mirror), median(t.cat), { on: 'ratio', op: '>=', value: 0.6 }));

    // 1% changed: mirror update vs rsync to a daemon
    const count = Math.round(vol.image.blocks * CHANGED_BLOCKS);
    const rsync = rsyncInstalled() ? await RsyncDaemon.start(ctx.work) : null;
    const u = { rsync: [] as number[], mirror: [] as number[] };
    const sent: number[] = [];
    const changed: number[] = [];
    let deltas = 0;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const before = rsync ? path.join(rsync.dir, 'mirror.vol') : null;
        if (before) {
          fs.rmSync(before, { force: true });
          run('cp', ['--sparse=always', vol.path, before]);
        }
        // another 1% of the original image's blocks changed: the import also puts back the
        // previous round's, so what changed is what the import reports writing
        const imported = await importPiped(vol.path, vol.image.withChanges(count, 7272 + round));
        changed.push(imported.changedBlocks);
        for (const step of round % 2 === 0 ? (['rsync', 'mirror'] as const) : (['mirror', 'rsync'] as const)) {
          await settleFor(ctx, [vol.path], []);
          if (step === 'mirror') {
            let r: MirrorJson | null = null;
            u.mirror.push(seconds(() => (r = cliJson<MirrorJson>(mirrorArgs(vol, daemon.url, daemon.token, state)))));
            const m = r! as MirrorJson;
            if (m.mode !== 'moa' || m.blocks < changed[round]) throw new Error(`mirror update after ${changed[round]} changed blocks sent ${m.blocks} blocks (${m.mode})`);
            sent.push(m.bytes);
            deltas = m.mapDeltas;
          } else if (rsync) {
            u.rsync.push(seconds(() => run('sh', ['-c', 'rsync "$@" && sync "$0"', before!, ...RSYNC, vol.path, rsync.url('mirror.vol')])));
          }
          ctx.log(`mirror-l1 round ${round + 1}/${ROUNDS}: ${step} ${(step === 'mirror' ? u.mirror : u.rsync).at(-1)?.toFixed(2)} s`);
        }
      }
    } finally {
      rsync?.stop();
    }
    const what = `imgstream mirror update to the peer daemon after ${count} blocks (1%) of the 4 GiB volume changed (the import writes ${changed.join(', ')} blocks per round: it also puts back the previous round's) vs rsync ${RSYNC.join(' ')} of the volume file to a local rsync daemon holding the unchanged file, + sync; wall time, median of ${ROUNDS} each`;
    if (rsync) record(row('mirror-l1', what, 's', { measured: u.mirror, baseline: u.rsync }, median(u.mirror), median(u.rsync), { on: 'ratio', op: '<=', value: 0.1 }));
    else record(skipped('mirror-l1', what, 's', 'rsync not installed (apt-get install rsync)', u.mirror));
    // bytes sent per changed byte, each round against its own change
    const perRound = sent.map((b, i) => ({ sent: b / MIB, changed: (changed[i] * 4096) / MIB }));
    const worst = perRound.reduce((w, r) => (r.sent - (1.1 * r.changed + 1) > w.sent - (1.1 * w.changed + 1) ? r : w), perRound[0]);
    const limit = Math.round((1.1 * worst.changed + 1) * 10) / 10;
    record(
      row(
        'mirror-l1-bytes',
        `bytes the same updates sent on the connection (headers, planes, ${deltas} map nodes as deltas, data; zstd) vs the changed data (${changed.join(', ')} blocks x 4 KiB per round); the round furthest from its target shown; target <= 1.1 x changed data + 1 MiB`,
        'MiB',
        { measured: perRound.map((r) => r.sent), baseline: perRound.map((r) => r.changed) },
        worst.sent,
        worst.changed,
        { on: 'measured', op: '<=', value: limit },
      ),
    );
  } finally {
    daemon.stop();
  }
}
