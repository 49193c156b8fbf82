// `mirror start` stopped by SIGTERM (systemd's stop) or SIGINT (Ctrl-C) in the middle of a
// transfer: the real process, the real signal. It must cut the transfer, exit 0 at once
// (not wait for the next tick, not need a second signal), leave the destination at its
// previous state, and the next update must resume what was acknowledged. `mirror update`
// stopped so says so in one line, exits 130 (SIGINT) or 143 (SIGTERM), leaves the
// relationship stopped (neither "transferring" nor failed: the user stopped it, and the next
// update resumes it), and its bytes count in the transfer's total.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, finished, runCli, sha256, spawnCli, writeImage } from '../support/cli.js';
import { mutate, tempDir } from '../support/images.js';
import { imageSha } from '../support/oracle.js';
import { inProcessJson, setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 4096; // 16 MiB
const root = tempDir('imgstream-mirror-signals-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const src = path.join(root, 'src.vol');
const dest = path.join(root, 'dest.vol');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** sha256 of the disk at VOL (null: no volume), read here as `volume export` reads it (oracle.ts). */
const active = async (vol: string): Promise<string | null> => (fs.existsSync(vol) ? imageSha(vol, env) : null);

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `mirror start`, signals it once the transfer has written something, and returns how it ended. */
async function stopMidTransfer(signal: 'SIGTERM' | 'SIGINT' | 'SIGKILL', sideFile: string, args = ['mirror', 'start', src, '--to', dest, '--every', '1h', '--limit-rate', '3M', '--json']) {
  const child = spawnCli(args, { env });
  const done = finished(child, 60_000);
  await until(sideFile, () => fs.existsSync(path.join(root, sideFile)));
  await new Promise((r) => setTimeout(r, 1500)); // past the first acknowledgement
  const sent = Date.now();
  child.kill(signal);
  const r = await done;
  return { ...r, stopMs: Date.now() - sent };
}

/** Changes 3000 blocks of the source's image (seeded), imports it, and returns the new image. */
async function changeSource(seed: number): Promise<Buffer> {
  const file = path.join(root, 'img');
  const img = fs.readFileSync(file);
  mutate(img, BS, 3000, seed);
  fs.writeFileSync(file, img);
  await setupOk(['volume', 'import', src, '--from', file], { env });
  return img;
}

/** `mirror update` with its rate held down, so a signal finds it mid-transfer. */
const slowUpdate = () => ['mirror', 'update', src, '--to', dest, '--limit-rate', '3M', '-q'];

describe('mirror start and signals', () => {
  it('SIGTERM mid-transfer cuts it, exits 0, and the next update resumes; SIGINT likewise', async () => {
    const imgFile = path.join(root, 'img');
    const img = writeImage(imgFile, BLOCKS, BS, 77, 0.1);
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', src, '--from', imgFile], { env });

    // a first (full) transfer, stopped by SIGTERM
    const term = await stopMidTransfer('SIGTERM', '.dest.vol.mirror-new');
    expect(term.signal, term.stderr).toBe(null);
    expect(term.code, term.stderr).toBe(0);
    expect(term.stopMs).toBeLessThan(5000);
    expect(term.stderr).not.toMatch(/update failed/);
    expect(term.stderr).toMatch(/stopped/);
    expect(fs.existsSync(dest)).toBe(false); // its previous state: none
    const first = cliJson<{ transfers: Array<{ resumedRecords: number; mode: string }> }>(['mirror', 'update', src, '--to', dest, '--json'], { env });
    expect(first.transfers[0].mode).toBe('full');
    expect(first.transfers[0].resumedRecords).toBeGreaterThan(0);
    expect(await active(dest)).toBe(sha256(img));

    // an incremental, stopped by SIGINT
    mutate(img, BS, 3000, 5);
    fs.writeFileSync(imgFile, img);
    await setupOk(['volume', 'import', src, '--from', imgFile], { env });
    const before = await active(dest);
    const int = await stopMidTransfer('SIGINT', '.dest.vol.mirror-stage');
    expect(int.code, int.stderr).toBe(0);
    expect(int.stopMs).toBeLessThan(5000);
    expect(await active(dest)).toBe(before);
    const status = cliJson<{ relationships: Array<{ state: string; lastAttempt: { error: string | null; stoppedBy?: string } }> }>(['mirror', 'status', src, '--json'], { env });
    expect(status.relationships[0].lastAttempt.error).toMatch(/stopped/);
    expect(status.relationships[0].state).toBe('stopped'); // as README says of mirror start: recorded as stopped
    expect(status.relationships[0].lastAttempt.stoppedBy).toBe('SIGINT');
    const second = cliJson<{ transfers: Array<{ resumedRecords: number; mode: string }> }>(['mirror', 'update', src, '--to', dest, '--json'], { env });
    expect(second.transfers[0].resumedRecords).toBeGreaterThan(0);
    expect(await active(dest)).toBe(sha256(img));
    expect(fs.readdirSync(root).filter((f) => f.startsWith('.dest.vol'))).toEqual([]);
  }, 90_000);

  it('mirror update stopped by SIGINT says so in one line, exits 130, and the next update resumes, counting every attempt', async () => {
    const img = await changeSource(6);
    const before = await active(dest);
    const int = await stopMidTransfer('SIGINT', '.dest.vol.mirror-stage', slowUpdate());
    expect(int.code, int.stderr).toBe(130);
    expect(int.stderr.trim()).toMatch(/^imgstream: stopped by SIGINT before the transfer completed \(the next update resumes it/);
    expect(int.stderr.trim().split('\n')).toHaveLength(1);
    expect(await active(dest)).toBe(before);
    // (the --json status of a stopped run runs as a process in the tests before and after; the text one here)
    const status = await inProcessJson<{ relationships: Array<{ state: string; partial: { bytes: number } | null; lastAttempt: { error: string | null; stoppedBy?: string }; pending: { top: { name: string } } }> }>(['mirror', 'status', src], { env });
    expect(status.relationships[0].state).toBe('stopped');
    expect(status.relationships[0].lastAttempt.stoppedBy).toBe('SIGINT');
    expect(status.relationships[0].lastAttempt.error).toMatch(/stopped by SIGINT/);
    // text: stopped, not an error; the stopped transfer below the latest completed ones, resumable
    const text = runCli(['mirror', 'status', src], { env }).stdout.split('\n');
    expect(text[0]).toMatch(/dest\.vol {2}stopped {2}last /);
    expect(text[0]).not.toMatch(/error/);
    const stoppedLine = new RegExp(`^ {2}\\S+ {2}\\w+ to ${status.relationships[0].pending.top.name.replaceAll('.', '\\.')}: stopped by SIGINT part way, [\\d.]+ [KM]iB sent: the next update resumes it$`);
    expect(text.filter((l) => stoppedLine.test(l)), text.join('\n')).toHaveLength(1);
    // a resumed attempt stopped again: what both stopped attempts sent is recorded
    type Pending = { relationships: Array<{ pending: { bytesSent: number } }> };
    const sentFirst = (await inProcessJson<Pending>(['mirror', 'status', src], { env })).relationships[0].pending.bytesSent;
    const again = await stopMidTransfer('SIGINT', '.dest.vol.mirror-stage', ['mirror', 'update', src, '--to', dest, '--limit-rate', '1M', '-q']); // slower: stopped before it completes
    expect(again.code, again.stderr).toBe(130);
    const sentBoth = (await inProcessJson<Pending>(['mirror', 'status', src], { env })).relationships[0].pending.bytesSent;
    expect(sentBoth - sentFirst).toBeGreaterThan(100_000);
    const next = cliJson<{ transfers: Array<{ resumedRecords: number; bytes: number; totalBytes: number }> }>(['mirror', 'update', src, '--to', dest, '--json'], { env });
    expect(next.transfers[0].resumedRecords).toBeGreaterThan(0);
    // what the stopped attempts sent (1.5 s or more at 3 MB/s the first) counts in the total
    expect(sentFirst).toBeGreaterThan(3_000_000);
    expect(next.transfers[0].totalBytes - next.transfers[0].bytes).toBe(sentBoth);
    expect(await active(dest)).toBe(sha256(img));
  }, 90_000);

  it('mirror status tells a transfer killed outright (kill -9) from one under way: stopped, resumed by the next update', async () => {
    const img = await changeSource(7);
    const killed = await stopMidTransfer('SIGKILL', '.dest.vol.mirror-stage', slowUpdate());
    expect(killed.signal).toBe('SIGKILL');
    const status = cliJson<{ relationships: Array<{ state: string; lastAttempt: { pid: number } }> }>(['mirror', 'status', src, '--json'], { env });
    expect(status.relationships[0].state).toBe('stopped');
    const text = runCli(['mirror', 'status', src], { env });
    expect(text.stdout).toMatch(/dest\.vol {2}stopped /);
    expect(text.stdout).toContain(`\n  its process ${status.relationships[0].lastAttempt.pid} is gone (killed outright): the next update resumes the transfer`);
    const next = cliJson<{ transfers: Array<{ resumedRecords: number }> }>(['mirror', 'update', src, '--to', dest, '--json'], { env });
    expect(next.transfers[0].resumedRecords).toBeGreaterThan(0);
    expect(await active(dest)).toBe(sha256(img));
    expect((await inProcessJson<{ relationships: Array<{ state: string }> }>(['mirror', 'status', src], { env })).relationships[0].state).toBe('idle');
  }, 90_000);

  it('mirror resync stopped by SIGINT says to run the resync again (an update is refused until one completes), and mirror status says so', async () => {
    expect(runCli(['mirror', 'break', dest], { env }).code).toBe(0);
    const img = await changeSource(8);
    const int = await stopMidTransfer('SIGINT', '.dest.vol.mirror-stage', ['mirror', 'resync', src, '--to', dest, '--limit-rate', '3M', '-q']);
    expect(int.code, int.stderr).toBe(130);
    expect(int.stderr.trim()).toBe(`imgstream: stopped by SIGINT before the resync completed (the mirror stays broken off until a resync completes; run it again, it starts over: imgstream mirror resync ${src} --to ${dest})`);
    const status = cliJson<{ relationships: Array<{ state: string; lastAttempt: { stoppedBy?: string; resync?: boolean } }> }>(['mirror', 'status', src, '--json'], { env });
    expect(status.relationships[0]).toMatchObject({ state: 'stopped', lastAttempt: { stoppedBy: 'SIGINT', resync: true } });
    expect(runCli(['mirror', 'status', src], { env }).stdout).toMatch(/: resync stopped by SIGINT part way, [\d.]+ [KM]iB sent: the mirror stays broken off until a resync completes \(run it again: it starts over\)\n/);
    // the hint runs as printed
    expect(runCli(['mirror', 'update', src, '--to', dest, '-q'], { env }).code).toBe(4); // still broken off
    // dropping what the stopped resync kept leaves it broken off, and mirror status says so
    expect(runCli(['mirror', 'abandon', src, '--to', dest], { env }).code).toBe(0);
    expect(cliJson<{ relationships: Array<{ state: string }> }>(['mirror', 'status', src, '--json'], { env }).relationships[0].state).toBe('broken');
    expect(runCli(['mirror', 'resync', src, '--to', dest, '-q'], { env }).code).toBe(0);
    expect(await active(dest)).toBe(sha256(img));
  }, 90_000);

  it('mirror start --every 30d waits its 30 days after the first update (a timer past 24.8 days used to fire at once: updates back to back), until SIGTERM', async () => {
    const child = spawnCli(['mirror', 'start', src, '--to', dest, '--every', '30d', '--max-runs', '2', '--json'], { env });
    const done = finished(child, 60_000);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until('the first update', () => out.includes('"update"'));
    await new Promise((r) => setTimeout(r, 1500));
    expect(child.exitCode, 'still waiting for its next tick').toBeNull();
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(out.split('\n').filter((l) => l.includes('"update"'))).toHaveLength(1);
    expect(r.stderr).not.toMatch(/TimeoutOverflowWarning/);
  });
  it('mirror update signalled once the mirror committed completes, exits 0 and says the signal came too late', async () => {
    const img = await changeSource(8);
    const pause = path.join(root, 'pause-committed');
    const child = spawnCli(['mirror', 'update', src, '--to', dest, '-q'], { env: { ...env, IMGSTREAM_PAUSE_AT: `mirror-committed:${pause}` } });
    const done = finished(child, 60_000);
    await until('the destination committed', () => fs.existsSync(pause));
    child.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    fs.rmSync(pause);
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual(['SIGINT came too late to stop the update (the mirror had committed it): it was finished']);
    expect(await active(dest)).toBe(sha256(img));
    expect((await inProcessJson<{ relationships: Array<{ state: string }> }>(['mirror', 'status', src], { env })).relationships[0].state).toBe('idle');
  }, 60_000);
});
