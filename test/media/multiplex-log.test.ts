// The backup log of a multiplexed dump spanning tapes, as `tape log` shows it: a source
// whose stream ended on an earlier tape is listed there as such (`earlier (ended on tape
// N)`), never as `complete, 0 parts` as if it were on this tape; and the tar command the
// help gives for printing the log works with GNU tar as installed.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import TapeLog from '../../commands/tape/log.js';
import { incompressibleImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';
import { sh, shellQuote } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-mux-log-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (f: string) => path.join(root, f);
const tapes = ['t1', 't2', 't3', 't4', 't5'].map(at);

interface Source {
  source: number;
  status: string;
  endedIn?: number;
}
interface Logged {
  log: { header: { sequence: number; sources: Source[] }; entries: Array<{ source: number; kind: string }> };
}

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function volumeWith(vol: string, blocks: number, seed: number): Promise<void> {
  await setupOk(['volume', 'create', vol, '--size', '2M', '-q'], { env });
  fs.writeFileSync(`${vol}.raw`, incompressibleImage(blocks, BS, seed));
  await setupOk(['volume', 'import', vol, '--from', `${vol}.raw`, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's1', '-q'], { env });
}

let logs: Logged['log'][] = [];

beforeAll(async () => {
  // two volumes of a few parts each and a small one: the small one ends long before the set does
  await volumeWith(at('a.vol'), 512, 1);
  await volumeWith(at('b.vol'), 512, 2);
  await volumeWith(at('c.vol'), 16, 3);
  // streams go onto tape as their parts become ready: on a loaded machine the small one can
  // end on the last tape with the others; the test needs a run where it ends earlier (a few tries)
  for (let attempt = 0; attempt < 4; attempt++) {
    for (const t of tapes) {
      fs.rmSync(t, { recursive: true, force: true });
      fs.mkdirSync(t);
    }
    const r = await runBundled(['dump', at('a.vol'), at('b.vol'), at('c.vol'), '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes.join(',')}`, '--tape-size', '1200K', '--multiplex', '-q'], { env });
    expect(r.code, r.stderr).toBe(0);
    logs = [];
    for (const t of tapes) {
      if (fs.readdirSync(t).length === 0) continue;
      const l = await runBundled(['tape', 'log', `tape:${t}#1`, '--json'], { env });
      expect(l.code, l.stderr).toBe(0);
      logs.push((JSON.parse(l.stdout) as Logged).log);
    }
    const endedBeforeLast = logs.slice(0, -1).some((l) => l.entries.some((e) => e.kind === 'end'));
    if (endedBeforeLast) break;
  }
});

describe('tape log of a multiplexed dump spanning tapes', () => {
  it('lists a source whose stream ended on an earlier tape as earlier, naming that tape, on every tape after it', async () => {
    expect(logs.length).toBeGreaterThanOrEqual(3);
    let earlier = 0;
    for (const [k, log] of logs.entries()) {
      for (const s of log.header.sources) {
        const here = log.entries.some((e) => e.source === s.source);
        const endedOn = logs.findIndex((l) => l.entries.some((e) => e.source === s.source && (e.kind === 'end' || e.kind === 'aborted'))) + 1;
        if (endedOn > 0 && endedOn < log.header.sequence) {
          expect(here).toBe(false);
          expect(s.status, `source ${s.source} on tape ${k + 1}`).toBe('earlier');
          expect(s.endedIn).toBe(endedOn);
          earlier++;
        } else expect(s.status).not.toBe('earlier');
        // complete here: its end member is here (with or without parts: its last ones may be on the tape before)
        if (s.status === 'complete') expect(log.entries.some((e) => e.source === s.source && e.kind === 'end')).toBe(true);
      }
    }
    expect(earlier).toBeGreaterThan(0);
    const last = logs.length;
    const summary = await runBundled(['tape', 'log', `tape:${tapes[last - 1]}#1`, '--summary'], { env });
    expect(summary.code, summary.stderr).toBe(0);
    const gone = logs[last - 1].header.sources.find((s) => s.status === 'earlier')!;
    expect(gone).toBeDefined();
    expect(summary.stdout).toMatch(new RegExp(`source ${gone.source} \\S+ \\(\\w+\\): earlier \\(ended on tape ${gone.endedIn}\\), stream`));
  });

  it('the tar command its help gives prints the log, with GNU tar', async () => {
    const said = /\((tar [^(]*?) FILE '([^']+)' prints it too/.exec(TapeLog.description ?? '');
    expect(said, TapeLog.description).not.toBeNull();
    const [, tar, member] = said!;
    const r = await sh(`${tar} ${shellQuote(path.join(tapes[0], 'file0001.tar'))} ${shellQuote(member)}`);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.split('\n')[0])).toMatchObject({ format: 'imgstream-backup-log', sequence: 1 });
  });
});
