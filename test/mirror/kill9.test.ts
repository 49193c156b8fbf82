// kill -9 of real `imgstream mirror update` processes at random moments, to a destination
// on this machine (the receiving side runs in the same process, so each kill also kills
// the destination's writer mid-transfer). After every kill the destination is either
// absent (a first transfer never completed) or checks clean and holds exactly a state
// the source had at an update: its previous one or the new one, never a mix. After all
// of them an update without a kill converges, and resumes instead of starting over.
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, finished, sha256, spawnCli, writeImage } from '../support/cli.js';
import { mutate, rng, tempDir } from '../support/images.js';
import { checkReportOf, imageSha } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 4096; // 16 MiB
const root = tempDir('imgstream-mirror-kill9-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const src = path.join(root, 'src.vol');
const dest = path.join(root, 'dest.vol');
const random = rng(0x51ed);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** sha256 of the mirror's disk (null: no mirror), read here as `volume export` reads it (oracle.ts). */
const destActive = async (): Promise<string | null> => (fs.existsSync(dest) ? imageSha(dest, env) : null);

// 8 rounds (4 s each): the suite runs in CI's 15 minutes
const ROUNDS = 8;

/** Kills the update once it has written a resume point newer than `since` (or lets it be, once it ended). */
async function killAtResumePoint(child: ChildProcess, since: number, done: Promise<unknown>): Promise<void> {
  const resume = path.join(path.dirname(dest), `.${path.basename(dest)}.mirror-transfer`);
  let ended = false;
  void done.then(() => (ended = true));
  while (!ended) {
    const st = fs.statSync(resume, { throwIfNoEntry: false });
    if (st && st.mtimeMs >= since && ackedIn(resume) > 0) {
      child.kill('SIGKILL');
      return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The records a resume file says the destination holds (0 when it cannot be read: being replaced). */
function ackedIn(file: string): number {
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { acked?: number }).acked ?? 0;
  } catch {
    return 0;
  }
}

describe('kill -9 during mirror update', () => {
  it(`leaves the destination at a complete state, ${ROUNDS} times, then converges`, async () => {
    const imgFile = path.join(root, 'img');
    const img = writeImage(imgFile, BLOCKS, BS, 31, 0.2);
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`, '--max-snapshots', '16'], { env });
    let killedMidway = 0;
    let resumedAfterKill = 0;
    let prev: string | null = null;
    let since: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // the last round is not left to chance: a 12 MB change killed once its transfer wrote
      // a resume point (the destination acknowledged part of it), so the clean update after
      // it has something to resume whatever the machine's speed
      const last = round === ROUNDS - 1;
      mutate(img, BS, round === 0 ? 0 : last ? 3000 : 1200 + Math.floor(random() * 1500), 1000 + round);
      fs.writeFileSync(imgFile, img);
      await setupOk(['volume', 'import', src, '--from', imgFile], { env });
      const now = sha256(img);
      since.push(now);
      // slow enough (4 MiB/s) that most kills land in the transfer itself
      const child = spawnCli(['mirror', 'update', src, '--to', dest, '--limit-rate', '4M', '--json'], { env });
      const done = finished(child, 120_000);
      let timer: NodeJS.Timeout | undefined;
      if (last) void killAtResumePoint(child, Date.now(), done);
      else timer = setTimeout(() => child.kill('SIGKILL'), 200 + Math.floor(random() * (round === 0 ? 3000 : 1800)));
      const r = await done;
      clearTimeout(timer);
      if (r.signal === 'SIGKILL') killedMidway++;
      else expect(r.code, r.stderr).toBe(0);
      const got = await destActive();
      if (got === null) expect(prev, `round ${round}: the destination vanished`).toBe(null);
      else {
        // a killed transfer may be finished by the next run: any state the source had
        // since the destination's last one is complete
        expect([prev, ...since], `round ${round}: destination is not a complete state`).toContain(got);
        expect((await checkReportOf(dest, env)).ok, `round ${round}`).toBe(true);
      }
      // every other round, finish the update (it resumes when the killed one got far)
      if (round % 2 === 1 || got === null) {
        const fin = cliJson<{ transfers: Array<{ resumedRecords: number }> }>(['mirror', 'update', src, '--to', dest, '--json'], { env });
        if (fin.transfers.some((t) => t.resumedRecords > 0)) resumedAfterKill++;
        expect(await destActive(), `round ${round}: after a clean update`).toBe(now);
      }
      prev = await destActive();
      if (prev === now) since = [];
    }
    expect(killedMidway).toBeGreaterThanOrEqual(ROUNDS / 2);
    expect(resumedAfterKill).toBeGreaterThan(0);
    // nothing left over beside the destination
    expect(fs.readdirSync(root).filter((f) => f.startsWith('.dest.vol'))).toEqual([]);
  });
});
