// Lines of information read as information: "imgstream: ..." is how an error reads (the
// one line a failing command prints), so what mirror start logs about itself (it starts,
// it stops) and what tape log notes (the catalog's copy of a backup log) never begin
// with it. A failed update in mirror start's log still reads as an error.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, finished, runCli, sleep, spawnCli, stderrLines, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const root = tempDir('imgstream-info-lines-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (name: string) => path.join(root, name);
const TIME = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  for (const [i, name] of ['a.vol', 'b.vol'].entries()) {
    await setupOk(['volume', 'create', at(name), '--size', '1M', '-q'], { env });
    writeImage(at(`${name}.img`), 256, 4096, 10 + i);
    await setupOk(['volume', 'import', at(name), '--from', at(`${name}.img`), '-q'], { env });
  }
}, 60_000);

describe('mirror start', () => {
  it('logs that it starts and how it stops as information, each after its time; a failed update as an error', async () => {
    const src = at('a.vol');
    const once = runCli(['mirror', 'start', src, '--to', at('m1.vol'), '--every', '1s', '--max-runs', '1'], { env, timeoutMs: 60_000 });
    expect(once.code, once.stderr).toBe(0);
    expect(stderrLines(once)).toEqual([expect.stringMatching(new RegExp(`^${TIME} mirroring ${esc(src)} to ${esc(at('m1.vol'))} every 1s$`))]);

    // stopped by SIGTERM between runs: exit 0, and it says so as information
    const child = spawnCli(['mirror', 'start', src, '--to', at('m2.vol'), '--every', '1h'], { env });
    const done = finished(child, 60_000);
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    for (const end = Date.now() + 30_000; !/full transfer/.test(out); await sleep(50)) if (Date.now() > end) throw new Error(`no transfer logged: ${out}`);
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(stderrLines(r)).toEqual([expect.stringMatching(new RegExp(`^${TIME} mirroring ${esc(src)} to ${esc(at('m2.vol'))} every 1h$`)), expect.stringMatching(new RegExp(`^${TIME} stopped by SIGTERM$`))]);

    // an update that fails (the mirror is broken off): logged as an error, and the loop's last line is the error
    expect(runCli(['mirror', 'break', at('m1.vol')], { env }).code).toBe(0);
    const failed = runCli(['mirror', 'start', src, '--to', at('m1.vol'), '--every', '1s', '--max-runs', '1'], { env, timeoutMs: 60_000 });
    expect(failed.code, failed.stderr).toBe(4);
    const lines = stderrLines(failed);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`^${TIME} mirroring `));
    expect(lines[1]).toMatch(new RegExp(`^${TIME} imgstream: update failed \\(attempt 1\\): ${esc(at('m1.vol'))}: the mirror was broken off`));
    expect(lines[2]).toMatch(/^imgstream: .*the last update to .* failed/);
  }, 120_000);
});

describe('tape log', () => {
  it('prints the catalog\'s copy of a missing log with a note that is not an error line (none with --json: "from" says it)', () => {
    const catalog = at('mux.json');
    const tape = at('tape');
    const dump = runCli(['dump', at('a.vol'), at('b.vol'), '--level', '0', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '--catalog', catalog, '-q'], { env, timeoutMs: 60_000 });
    expect(dump.code, dump.stderr).toBe(0);
    // the tape file cut just before its last member, the backup log
    const { log } = cliJson<{ log: { entries: Array<{ offset: number; size: number }> } }>(['tape', 'log', `tape:${tape}#1`, '--catalog', catalog], { env });
    const logAt = Math.max(...log.entries.map((e) => e.offset + 512 + Math.ceil(e.size / 512) * 512));
    const cut = at('cut');
    fs.mkdirSync(cut);
    fs.writeFileSync(path.join(cut, 'file0001.tar'), fs.readFileSync(path.join(tape, 'file0001.tar')).subarray(0, logAt));

    for (const extra of [[], ['--summary']]) {
      const r = runCli(['tape', 'log', `tape:${cut}#1`, '--catalog', catalog, ...extra], { env });
      expect(r.code, r.stderr).toBe(0);
      expect(stderrLines(r)).toEqual([`tape ${cut} file 1: its backup log is damaged or missing; printing the catalog's copy`]);
      expect(r.stdout).toMatch(/multiplexed dump/);
    }
    const json = runCli(['tape', 'log', `tape:${cut}#1`, '--catalog', catalog, '--json'], { env });
    expect(json.code, json.stderr).toBe(0);
    expect(json.stderr).toBe('');
    expect((JSON.parse(json.stdout) as { from: string }).from).toBe('catalog');
  }, 120_000);
});
