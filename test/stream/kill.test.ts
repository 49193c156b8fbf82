// kill -9 of real imgstream processes while they dump and restore.
//
// dump (a 64 MiB volume, --compress none and zstd, to a file and to stdout): killed a
// pseudo-random delay after it opened the volume (its lock appears), or once a random part
// of its stream is written. Afterwards the target file does not exist (a file target) or
// holds a stream `verify` calls incomplete (exit 9; stdout redirected to a file), the
// catalog does not record it, the source volume is not changed, and a later dump to the
// same target works.
//
// restore (a level 1 onto a volume restored from the level 0): killed at pseudo-random
// delays or once a random part of its blocks is on disk, and deterministically at the CP
// steps (IMGSTREAM_CRASH_AT=journal|root|apply|clean-root). Afterwards the volume is at its previous CP (snapshot s1 only) or, only
// when the kill came after the root record, at the new one (s1 and s2); every snapshot it
// lists and its active file system export like the source's; it checks clean; and the
// same restore run again brings it to s2.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, finished, runCliAsync, sha256File, sleep, type CliResult } from '../support/cli.js';
import { mutate, randomImage, rng, tempDir } from '../support/images.js';
import { inProcessJson, setupOk } from '../support/in-process.js';
import { cliEnv, dump, exportShas, expectClean, expectOneLineError, ok, pool, snapshotNames } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-kill-stream-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'no-catalog-given.json') };
const o = { env, timeoutMs: 120_000 };
const random = rng(0x5eed_4b11);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Lock files appear in the lock dir when a process opens a volume (or the catalog). */
const lockHeld = (dir: string) => fs.existsSync(dir) && fs.readdirSync(dir).length > 0;

interface Run {
  child: ChildProcess;
  done: Promise<CliResult>;
  exited: () => boolean;
}

/** Starts `imgstream ...args` with its own lock dir (cleared first: locks left by killed runs would look held); stdout to a file when given. */
function start(args: string[], locks: string, opts: { stdoutFile?: string; extraEnv?: Record<string, string> } = {}): Run {
  fs.rmSync(locks, { recursive: true, force: true });
  const fd = opts.stdoutFile ? fs.openSync(opts.stdoutFile, 'w') : null;
  const child = spawn(process.execPath, [CLI_BIN, ...args], { env: cliEnv({ ...env, IMGSTREAM_LOCK_DIR: locks, ...opts.extraEnv }), stdio: ['ignore', fd ?? 'pipe', 'pipe'] });
  if (fd !== null) fs.closeSync(fd);
  let ended = false;
  const done = finished(child, 120_000).finally(() => {
    ended = true;
  });
  return { child, done, exited: () => ended };
}

/** Runs to the end; returns its result and how long it worked after taking its volume lock. */
async function timeWork(args: string[], locks: string): Promise<{ ms: number; r: CliResult }> {
  const run = start(args, locks);
  let locked = -1;
  while (!run.exited()) {
    if (locked < 0 && lockHeld(locks)) locked = performance.now();
    await sleep(1);
  }
  const r = await run.done;
  expect(r.code, r.stderr).toBe(0);
  return { ms: performance.now() - (locked < 0 ? performance.now() : locked), r };
}

/** When to kill: a delay after the volume lock appears, or once an output holds some bytes. */
type Trigger = { delayMs: number } | { bytes: number; size: () => number };

/** Starts `args`, waits for the trigger, SIGKILLs it. */
async function runKilled(args: string[], locks: string, trigger: Trigger, opts: { stdoutFile?: string } = {}): Promise<{ killed: boolean; r: CliResult }> {
  const run = start(args, locks, opts);
  while (!run.exited() && !lockHeld(locks)) await sleep(1);
  if ('delayMs' in trigger) await sleep(trigger.delayMs);
  else while (!run.exited() && trigger.size() < trigger.bytes) await sleep(1);
  if (!run.exited()) run.child.kill('SIGKILL');
  const r = await run.done;
  const killed = r.signal === 'SIGKILL';
  if (!killed) expect(r.code, `not killed, so it must have succeeded: ${r.stderr}`).toBe(0);
  return { killed, r };
}

/** Writes `bytes` to `file` leaving its all-zero blocks as holes; returns the bytes allocated. */
function sparseCopy(bytes: Buffer, file: string): number {
  fs.rmSync(file, { force: true });
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, bytes.length);
    const zero = Buffer.alloc(BS);
    for (let off = 0; off < bytes.length; off += BS) {
      const b = bytes.subarray(off, off + BS);
      if (!b.equals(zero.subarray(0, b.length))) fs.writeSync(fd, b, 0, b.length, off);
    }
  } finally {
    fs.closeSync(fd);
  }
  return fs.statSync(file).blocks * 512;
}

const sizeOf = (f: string) => {
  try {
    return fs.statSync(f).size;
  } catch {
    return 0;
  }
};

describe('kill -9 during dump', () => {
  const src = path.join(root, 'big.vol');
  const catalog = path.join(root, 'catalog.json');
  const locks = path.join(root, 'locks-dump');
  let srcSha = '';
  const work: Record<string, { ms: number; streamBytes: number }> = {};

  beforeAll(async () => {
    await setupOk(['volume', 'create', src, '--size', '64M', '--max-snapshots', '8'], { env });
    const raw = path.join(root, 'big.raw');
    // every other block full of random bytes (so zstd has real work), about a third zero
    const img = randomImage(16384, BS, 4242, 0.3);
    const noise = rng(77);
    for (let b = 0; b < 16384; b += 2) for (let i = 64; i < BS; i += 4) img.writeUInt32LE(Math.floor(noise() * 2 ** 32), b * BS + i);
    fs.writeFileSync(raw, img);
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
    fs.rmSync(raw);
    await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
    // how long a dump works and how long its stream is, per codec (these two are the catalog's baseline)
    for (const codec of ['none', 'zstd']) {
      const target = path.join(root, `timing.${codec}`);
      const t = await timeWork(['dump', src, '--level', '0', '--snapshot', 's1', '--to', target, '--compress', codec, '--catalog', catalog, '--json'], locks);
      work[codec] = { ms: t.ms, streamBytes: JSON.parse(t.r.stdout).streamBytes };
      fs.rmSync(target);
    }
    srcSha = sha256File(src);
  }, 180_000);

  /** What the catalog records (`catalog list`, a check run here). */
  const catalogDumps = async () => (await inProcessJson<{ dumps: Array<{ id: string; media: { kind: string; location: string } }> }>(['catalog', 'list', '--catalog', catalog], { env })).dumps;

  for (const codec of ['none', 'zstd']) {
    for (const medium of ['file', 'stdout'] as const) {
      it(`--compress ${codec} to ${medium}: no complete-looking stream, no catalog record, and the next dump works`, async () => {
        const target = path.join(root, `killed.${codec}.${medium}`);
        const args = ['dump', src, '--level', '0', '--snapshot', 's1', '--to', medium === 'file' ? target : '-', '--compress', codec, '--catalog', catalog, '-q'];
        // what the dump has written so far: the stdout file, or its file under the temporary name
        const written = () => {
          if (medium === 'stdout') return sizeOf(target);
          const partial = fs.readdirSync(root).find((n) => n.startsWith(`.${path.basename(target)}.partial-`));
          return partial ? sizeOf(path.join(root, partial)) : 0;
        };
        const recorded = (await catalogDumps()).length;
        const { ms, streamBytes } = work[codec];
        // one kill early (a random delay after the volume is opened), two when a random part of the stream is out
        const triggers: Trigger[] = [{ delayMs: Math.round(random() * 0.3 * ms) }, { bytes: Math.round((0.05 + 0.4 * random()) * streamBytes), size: written }, { bytes: Math.round((0.5 + 0.45 * random()) * streamBytes), size: written }];
        let completed = 0;
        for (const t of triggers) {
          const ctx = `${codec} ${medium}, kill ${'delayMs' in t ? `${t.delayMs} ms after the lock` : `at ${t.bytes} of ${streamBytes} bytes`}`;
          const k = await runKilled(args, locks, t, medium === 'stdout' ? { stdoutFile: target } : {});
          if (!k.killed) {
            completed++; // finished first: a complete, recorded dump; drop it and go on
            fs.rmSync(target, { force: true });
            continue;
          }
          if (medium === 'file') {
            expect(fs.existsSync(target), `${ctx}: the target exists`).toBe(false);
            // a killed dump to a file leaves its hidden temporary file (nothing can remove it at kill -9)
            for (const f of fs.readdirSync(root).filter((n) => n.startsWith(`.${path.basename(target)}.partial-`))) fs.rmSync(path.join(root, f));
          } else {
            const v = await runCliAsync(['verify', target], o);
            // on a loaded machine the kill may land after the last byte went out (while the
            // catalog is written, or the process exits): that stream is whole, and unrecorded
            if (v.code === 0 && sizeOf(target) === streamBytes) {
              fs.rmSync(target);
              continue;
            }
            expectOneLineError(v, `${ctx}: verify of the cut stream`, 9, /incomplete/);
            fs.rmSync(target);
          }
        }
        expect(completed, 'the kills did not land during the dumps').toBeLessThanOrEqual(1);
        // only dumps that finished are recorded
        expect((await catalogDumps()).length, 'the catalog recorded a killed dump').toBe(recorded + completed);
        // a later dump at the same target works, is complete and recorded
        if (medium === 'file') ok(args, o);
        else expect((await start(args, locks, { stdoutFile: target }).done).code).toBe(0);
        const v = cliJson<{ ok: boolean; streams: Array<{ streamId: string; top: string }> }>(['verify', target], o);
        expect(v.ok).toBe(true);
        const recs = await catalogDumps();
        expect(recs).toHaveLength(recorded + completed + 1);
        expect(recs.map((r) => r.id)).toContain(v.streams[0].streamId);
        expect(sha256File(src), 'the source volume changed').toBe(srcSha);
      }, 180_000);
    }
  }
});

describe('kill -9 during restore', () => {
  const src = path.join(root, 'src.vol');
  const catalog = path.join(root, 'restore-catalog.json');
  const l0 = path.join(root, 'src.l0');
  const l1 = path.join(root, 'src.l1');
  const base = path.join(root, 'base.vol');
  const sourceSha: Record<string, string> = {};
  let workMs = 0;
  let baseBytes = Buffer.alloc(0);
  let incomingBytes = 0;
  /** Two restores at a time, each on its own copy of the base volume with its own lock dir. */
  const slots = [0, 1].map((k) => ({ vol: path.join(root, `target-${k}.vol`), locks: path.join(root, `locks-restore-${k}`) }));
  type Slot = (typeof slots)[number];
  const so = (slot: Slot) => ({ env: { ...env, IMGSTREAM_LOCK_DIR: slot.locks }, timeoutMs: 120_000 });

  beforeAll(async () => {
    const blocks = 4096; // 16 MiB
    await setupOk(['volume', 'create', src, '--size', '16M', '--max-snapshots', '8'], { env });
    const raw = path.join(root, 'small.raw');
    const img = randomImage(blocks, BS, 515);
    fs.writeFileSync(raw, img);
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
    await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
    mutate(img, BS, 2500, 516);
    fs.writeFileSync(raw, img);
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
    await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
    dump(src, 0, 's1', l0, catalog, [], o);
    const d1 = dump(src, 1, 's2', l1, catalog, ['--compress', 'none'], o);
    expect(d1.blocks).toBeGreaterThan(1000);
    Object.assign(sourceSha, await exportShas(src, ['s1', 's2'], o));
    ok(['restore', '--from', l0, '--to', base, '-q'], o);
    baseBytes = fs.readFileSync(base);
    incomingBytes = d1.blocks * BS;
    sparseCopy(baseBytes, slots[0].vol);
    workMs = (await timeWork(['restore', '--from', l1, '--to', slots[0].vol, '-q'], slots[0].locks)).ms;
  }, 180_000);

  /** Checks a volume after a kill and returns which state it is in. */
  async function expectPreviousOrNewCp(slot: Slot, ctx: string): Promise<'old' | 'new'> {
    const names = await snapshotNames(slot.vol, so(slot));
    expect([['s1'], ['s1', 's2']], `${ctx}: snapshots ${names.join(',')}`).toContainEqual(names);
    const got = await exportShas(slot.vol, [...names, null], so(slot));
    for (const n of names) expect(got[n], `${ctx}: ${n}`).toBe(sourceSha[n]);
    expect(got.active, `${ctx}: active file system`).toBe(sourceSha[names.at(-1)!]);
    await expectClean(slot.vol, so(slot));
    return names.length === 1 ? 'old' : 'new';
  }

  /** The restore run again finishes the job (or says it was done already). */
  async function expectRerunWorks(slot: Slot, ctx: string): Promise<void> {
    const r = await runCliAsync(['restore', '--from', l1, '--to', slot.vol, '--json'], so(slot));
    if (r.code !== 0) expectOneLineError(r, `${ctx}: rerun`, undefined, /already/);
    expect(await expectClean(slot.vol, so(slot)), `${ctx}: after the rerun`).toEqual(['active', 's1', 's2']);
    expect(await exportShas(slot.vol, ['s2', null], so(slot)), `${ctx}: after the rerun`).toEqual({ s2: sourceSha.s2, active: sourceSha.s2 });
  }

  it('at random moments: the previous CP (or the new one), exact, clean; the rerun works', async () => {
    const n = 4; // each trigger twice (CI time)
    const tally = { old: 0, new: 0, killed: 0 };
    // half the runs are killed a random delay after the volume is opened (up to past the
    // normal end, so some finish); the other half once a random part of the incoming
    // blocks is on disk (the copy is sparse: free VBNs are holes that fill as it writes)
    const triggers = Array.from({ length: n }, (_, i): { delayMs: number } | { part: number } => {
      const frac = (Math.floor(i / 2) + random()) / Math.ceil(n / 2);
      return i % 2 === 0 ? { delayMs: Math.round(frac * 1.2 * workMs) } : { part: 0.05 + 0.75 * frac };
    });
    await pool(slots.length, slots, async (slot, k) => {
      for (let i = k; i < n; i += slots.length) {
        const t = triggers[i];
        const allocated0 = sparseCopy(baseBytes, slot.vol);
        const trigger: Trigger = 'delayMs' in t ? t : { bytes: allocated0 + Math.round(t.part * incomingBytes), size: () => fs.statSync(slot.vol).blocks * 512 };
        const ctx = `run ${i}: kill ${'delayMs' in t ? `${t.delayMs} ms into ${Math.round(workMs)} ms` : `with ${Math.round(t.part * 100)}% of the blocks written`}`;
        const r = await runKilled(['restore', '--from', l1, '--to', slot.vol, '-q'], slot.locks, trigger);
        const state = await expectPreviousOrNewCp(slot, ctx);
        if (!r.killed) expect(state, `${ctx}: finished, yet not at the new CP`).toBe('new');
        tally[state]++;
        if (r.killed) tally.killed++;
        await expectRerunWorks(slot, ctx);
      }
    });
    // workMs is one run's measure: on a machine that got faster since, the late delays
    // outlast the work. Early kills make up the count, so the kill path is always exercised.
    for (let extra = 0; extra < 4 && (tally.killed < n / 2 || tally.old < n / 4); extra++) {
      const slot = slots[0];
      const delayMs = Math.round((0.05 + 0.25 * random()) * workMs);
      const ctx = `extra run ${extra}: kill ${delayMs} ms into ${Math.round(workMs)} ms`;
      sparseCopy(baseBytes, slot.vol);
      const r = await runKilled(['restore', '--from', l1, '--to', slot.vol, '-q'], slot.locks, { delayMs });
      const state = await expectPreviousOrNewCp(slot, ctx);
      if (!r.killed) expect(state, `${ctx}: finished, yet not at the new CP`).toBe('new');
      tally[state]++;
      if (r.killed) tally.killed++;
      await expectRerunWorks(slot, ctx);
    }
    console.log(`kill -9 restore: work ${Math.round(workMs)} ms; ${JSON.stringify(tally)}`);
    expect(tally.killed, 'too few runs were really killed').toBeGreaterThanOrEqual(n / 2);
    expect(tally.old, 'too few kills left the previous CP').toBeGreaterThanOrEqual(n / 4);
  }, 300_000);

  it('IMGSTREAM_CRASH_AT=journal|root|apply|clean-root: the previous CP before the root record, the new one after', async () => {
    const steps = [
      ['journal', 'old'],
      ['root', 'new'],
      ['apply', 'new'],
      ['clean-root', 'new'],
    ] as const;
    await pool(slots.length, slots, async (slot, k) => {
      for (let i = k; i < steps.length; i += slots.length) {
        const [step, want] = steps[i];
        sparseCopy(baseBytes, slot.vol);
        const r = await start(['restore', '--from', l1, '--to', slot.vol, '-q'], slot.locks, { extraEnv: { IMGSTREAM_CRASH_AT: step } }).done;
        expect(r.signal, `${step}: ${r.stderr}`).toBe('SIGKILL');
        expect(await expectPreviousOrNewCp(slot, `crash at ${step}`), step).toBe(want);
        await expectRerunWorks(slot, `crash at ${step}`);
      }
    });
  }, 300_000);

  it('killed while creating a new volume from a level 0: no volume appears; the rerun works', async () => {
    const fresh = path.join(root, 'fresh.vol');
    const locks = path.join(root, 'locks-fresh');
    let killed = 0;
    // the level 0 is written into a temporary file: kill when it has grown (it may be renamed
    // into place between the listing and the stat once the restore ends)
    const tmpSize = () => {
      const t = fs.readdirSync(root).find((x) => x.startsWith('.fresh.vol.restoring-'));
      if (!t) return 0;
      try {
        return fs.statSync(path.join(root, t)).blocks * 512;
      } catch {
        return 0;
      }
    };
    for (const bytes of [1 << 20, 8 << 20, 14 << 20]) {
      fs.rmSync(fresh, { force: true });
      for (const f of fs.readdirSync(root).filter((x) => x.startsWith('.fresh.vol.restoring-'))) fs.rmSync(path.join(root, f));
      const r = await runKilled(['restore', '--from', l0, '--to', fresh, '-q'], locks, { bytes, size: tmpSize });
      if (r.killed) {
        killed++;
        expect(fs.existsSync(fresh), `kill at ${bytes} bytes: a volume appeared`).toBe(false);
      }
    }
    expect(killed).toBeGreaterThanOrEqual(2);
    for (const f of fs.readdirSync(root).filter((x) => x.startsWith('.fresh.vol.restoring-'))) fs.rmSync(path.join(root, f));
    fs.rmSync(fresh, { force: true });
    ok(['restore', '--from', l0, '--to', fresh, '-q'], o);
    expect(await snapshotNames(fresh, o)).toEqual(['s1']);
    expect(await exportShas(fresh, ['s1'], o)).toEqual({ s1: sourceSha.s1 });
  }, 120_000);
});
