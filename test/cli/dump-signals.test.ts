// SIGTERM or SIGINT stops a running dump cleanly: the partial stream it was writing is
// removed, the snapshot it took is deleted (on a volume it opened, and through a server
// that holds the volume), nothing is recorded, and it exits 143 or 130 with one line.
// Only kill -9 leaves a snapshot behind. Real processes: the dump is slowed down by the
// test knob IMGSTREAM_TEST_SOURCE_RATE, or blocked on a pipe nobody reads. A signal once
// the stream is complete (held there by IMGSTREAM_PAUSE_AT) is too late: the dump
// completes and is recorded, exit 0, and one line says so (it used to say nothing).
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, finished, runCli, sleep, spawnCli, stderrLines, writeImage, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { startServer } from '../nbd/support.js';
import { inProcessJson, setupOk } from '../support/in-process.js';
import { cliWords, sh } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-dump-signals-');
const locks = path.join(root, 'locks');
const catalog = path.join(root, 'catalog.json');
const outDir = path.join(root, 'out');
const vol = path.join(root, 'v.vol');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CATALOG: catalog };
const EXIT = { SIGTERM: 143, SIGINT: 130, SIGHUP: 129 } as const;

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  fs.mkdirSync(outDir);
  // 32 MiB of mostly random blocks: several seconds at the paced rate below
  writeImage(path.join(root, 'v.raw'), 8192, BS, 1, 0.1);
  await setupOk(['volume', 'create', vol, '--size', String(8192 * BS)], { env });
  await setupOk(['volume', 'import', vol, '--from', path.join(root, 'v.raw'), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 'base'], { env });
});

/** Checks that are not what a test is about, run in this process (in-process.ts). */
const check = <T>(args: string[]): Promise<T> => inProcessJson<T>(args, { env });
const snapshots = async (): Promise<string[]> => (await check<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol])).snapshots.map((s) => s.name);
const catalogText = (): string | null => (fs.existsSync(catalog) ? fs.readFileSync(catalog, 'utf8') : null);

async function until(what: string, child: ChildProcess, test: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the dump ended (${child.exitCode ?? child.signalCode}) before ${what}`);
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

/** Bytes of the dump's hidden partial stream in outDir (0 while there is none). */
function partialBytes(): number {
  const p = fs.readdirSync(outDir).find((n) => n.includes('.partial-'));
  return p ? fs.statSync(path.join(outDir, p)).size : 0;
}

async function expectStopped(r: CliResult, signal: keyof typeof EXIT, before: string[], catalogBefore: string | null): Promise<void> {
  const ctx = `exit ${r.code ?? r.signal}, stderr ${JSON.stringify(r.stderr)}`;
  expect(r.signal, ctx).toBeNull();
  expect(r.code, ctx).toBe(EXIT[signal]);
  const lines = stderrLines(r);
  expect(lines, ctx).toHaveLength(1);
  expect(lines[0], ctx).toMatch(new RegExp(`^imgstream: dump of .* stopped by ${signal}: nothing recorded, .*snapshot "dump-l0-[^"]+" it took deleted$`));
  expect(await snapshots(), 'the snapshot the dump took is gone').toEqual(before);
  expect(fs.readdirSync(outDir), 'no partial or complete output is left').toEqual([]);
  expect(catalogText(), 'nothing was recorded').toBe(catalogBefore);
}

describe('a dump stopped by a signal', () => {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    it(`${signal} while writing a file: exit ${EXIT[signal]}, partial file and snapshot removed`, async () => {
      const before = await snapshots();
      const cat = catalogText();
      const child = spawnCli(['dump', vol, '--level', '0', '--to', path.join(outDir, 'v.l0'), '--compress', 'none', '-q'], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '4M' } });
      const done = finished(child, 60_000);
      // stream bytes on disk: the snapshot is taken and the dump is well under way
      await until('its partial stream has bytes', child, () => partialBytes() > 0);
      child.kill(signal);
      await expectStopped(await done, signal, before, cat);
    }, 90_000);
  }

  it('SIGINT delivered twice at once (as timeout does: its command, then its process group) stops it cleanly, as one does', async () => {
    const before = await snapshots();
    const cat = catalogText();
    const child = spawnCli(['dump', vol, '--level', '0', '--to', path.join(outDir, 'v.l0'), '--compress', 'none', '-q'], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '4M' } });
    const done = finished(child, 60_000);
    await until('its partial stream has bytes', child, () => partialBytes() > 0);
    // back to back (a loaded machine once kept the test from its 5 ms pause for a quarter
    // second: two signals then, which end a dump at once, as they should)
    child.kill('SIGINT');
    child.kill('SIGINT');
    await expectStopped(await done, 'SIGINT', before, cat);
  }, 90_000);

  it('SIGTERM while blocked on a pipe nobody reads: it does not wait for the reader', async () => {
    const before = await snapshots();
    const cat = catalogText();
    const child = spawnCli(['dump', vol, '--level', '0', '--to', '-', '--compress', 'none', '-q'], { env });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    // the first bytes of the stream: the snapshot is taken; then the reader stops reading
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    child.stdout!.pause();
    await sleep(300);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the dump did not end within 15 s of SIGTERM: ${stderr}`)), 15_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    child.stdout!.destroy();
    await expectStopped({ code, signal: null, stdout: '', stderr, stdoutBytes: Buffer.alloc(0) }, 'SIGTERM', before, cat);
    expect(stderr).toMatch(/the stream on stdout is incomplete/);
  }, 90_000);

  it('SIGTERM of a dump through a server: the server deletes the snapshot it took for the dump', async () => {
    const server = await startServer(vol, ['--socket', path.join(root, 'v.sock')], locks);
    try {
      const before = await snapshots();
      const cat = catalogText();
      const child = spawnCli(['dump', vol, '--level', '0', '--to', path.join(outDir, 'served.l0'), '--compress', 'none', '-q'], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '4M' } });
      const done = finished(child, 60_000);
      await until('its partial stream has bytes', child, () => partialBytes() > 0);
      expect((await snapshots()).filter((s) => s.startsWith('dump-l0-')), 'the server took the dump its snapshot').toHaveLength(1);
      child.kill('SIGTERM');
      await expectStopped(await done, 'SIGTERM', before, cat);
    } finally {
      await server.stop();
    }
  }, 90_000);

  it('leaves the volume consistent, and the next dump completes and is recorded', async () => {
    expect((await check<{ ok: boolean }>(['volume', 'check', vol])).ok).toBe(true);
    const r = cliJson<{ level: number }>(['dump', vol, '--level', '0', '--snapshot', 'base', '--to', path.join(outDir, 'v.l0')], { env });
    expect(r.level).toBe(0);
    expect((JSON.parse(catalogText()!) as { dumps: unknown[] }).dumps).toHaveLength(1);
  }, 60_000);

  it('a catalog damaged while the dump runs: the complete stream and its snapshot are kept, one line says so, catalog rebuild records it', async () => {
    const before = await snapshots();
    const saved = catalogText();
    const out = path.join(outDir, 'unrecorded.l0');
    const child = spawnCli(['dump', vol, '--level', '0', '--to', out, '--compress', 'none', '-q'], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '16M' } });
    const done = finished(child, 60_000);
    await until('its partial stream has bytes', child, () => partialBytes() > 0);
    fs.writeFileSync(catalog, '{"format": "imgstream-catalog", "version": 1, "dumps": [{"id'); // another process damaged it meanwhile
    const r = await done;
    expect(r.code, r.stderr).toBe(9);
    const lines = stderrLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/is complete but not recorded in the catalog \(its snapshot "dump-l0-[^"]+" is kept\) \(mend or move the catalog, then record the dump with: imgstream catalog rebuild/);
    expect(lines[0]).toContain(`imgstream catalog rebuild --from ${out} --catalog ${catalog})`); // runs as printed
    const kept = (await snapshots()).filter((n) => !before.includes(n));
    expect(kept, 'the dump\'s snapshot is kept: a later level builds on it').toHaveLength(1);
    cliOk(['verify', out], { env });
    fs.rmSync(catalog);
    const rebuilt = cliJson<{ records: number }>(['catalog', 'rebuild', '--from', out], { env });
    expect(JSON.stringify(rebuilt)).toContain(kept[0]);
    // clean up for the other cases: the snapshot, the stream, the catalog as it was
    await setupOk(['snapshot', 'delete', vol, kept[0]], { env });
    fs.rmSync(out);
    if (saved === null) fs.rmSync(catalog, { force: true });
    else fs.writeFileSync(catalog, saved);
  }, 90_000);

  it('a dump to /dev/null (run for its timing) is not recorded and leaves no snapshot: no later level builds on a stream nobody has', async () => {
    const before = await snapshots();
    const catalogBefore = catalogText();
    const r = runCli(['dump', vol, '--level', '0', '--to', '/dev/null'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/-> \/dev\/null \(.* stream, sha256 [0-9a-f]{16}\.\.\.\): not recorded in the catalog \(\/dev\/null keeps nothing: no later level builds on it\), its snapshot deleted/);
    expect(catalogText()).toBe(catalogBefore);
    expect(await snapshots()).toEqual(before);
    // the same with the stream on stdout, redirected there
    const piped = await sh(`${cliWords(['dump', vol, '--level', '0', '--to', '-'])} > /dev/null`, { env });
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).toMatch(/-> stdout \(.* stream, sha256 [0-9a-f]{16}\.\.\.\): not recorded in the catalog \(stdout keeps nothing: no later level builds on it\), its snapshot deleted/);
    expect(catalogText()).toBe(catalogBefore);
    expect(await snapshots()).toEqual(before);
    // a snapshot the user named is kept, and said so (not "deleted")
    for (const [to, shell] of [['/dev/null', ''], ['tape:/dev/null', ''], ['-', ' > /dev/null']]) {
      const named = await sh(`${cliWords(['dump', vol, '--level', '0', '--snapshot', 'base', '--to', to])}${shell}`, { env });
      expect(named.code, named.stderr).toBe(0);
      expect(to === '-' ? named.stderr : named.stdout, to).toMatch(/: not recorded in the catalog \(\S+ keeps nothing: no later level builds on it\), snapshot "base" kept$/m);
      expect(await snapshots()).toEqual(before);
    }
    expect(catalogText()).toBe(catalogBefore);
    // stdout into a file keeps it: recorded
    const kept = await sh(`${cliWords(['dump', vol, '--level', '0', '--to', '-'])} > ${JSON.stringify(path.join(root, 'stdout.l0'))}`, { env });
    expect(kept.code, kept.stderr).toBe(0);
    expect(catalogText()).not.toBe(catalogBefore);
  });

  it('SIGINT once the stream is complete (its trailer not yet written): completed and recorded, exit 0, one line says the signal came too late', async () => {
    const out = path.join(outDir, 'late.l0');
    const cat = path.join(root, 'late.json');
    const paused = path.join(root, 'late.paused');
    const child = spawnCli(['dump', vol, '--level', '0', '--snapshot', 'base', '--to', out, '--catalog', cat, '-q'], { env: { ...env, IMGSTREAM_PAUSE_AT: `dump-completing:${paused}` } });
    const done = finished(child, 60_000);
    await until('the stream is complete', child, () => fs.existsSync(paused));
    child.kill('SIGINT');
    await sleep(200);
    fs.rmSync(paused);
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(stderrLines(r), r.stderr).toEqual(['SIGINT came too late to stop the dump (its stream was complete): it was finished and recorded']);
    expect((JSON.parse(fs.readFileSync(cat, 'utf8')) as { dumps: unknown[] }).dumps).toHaveLength(1);
    cliOk(['verify', out], { env });
    fs.rmSync(out);
  }, 90_000);
});

