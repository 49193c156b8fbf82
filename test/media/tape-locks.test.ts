// Two dumps to one tape at once, as a Bacula user runs two jobs on one drive: the second
// waits for the first (one line on stderr says so) and then sizes the tape with the
// first's tape file in it, so no tape ever holds more than --tape-size (each used to size
// the tape from what was published when it began, and both wrote to the end). A single
// dump and a multiplexed one alike; a stop signal ends the wait, nothing written.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incompressibleImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { finished, sleep, spawnCli } from '../support/cli.js';
import { runBundled } from '../support/bundled-cli.js';

const BS = 4096;
const root = tempDir('imgstream-tape-locks-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (f: string) => path.join(root, f);
const [A, B, C] = ['a', 'b', 'c'].map((n) => at(`${n}.vol`));
const TAPE_SIZE = 2 << 20;

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  for (const [i, v] of [A, B, C].entries()) {
    await setupOk(['volume', 'create', v, '--size', '2M', '-q'], { env });
    fs.writeFileSync(`${v}.raw`, incompressibleImage(512, BS, i + 1)); // streams of about 1.2 MiB
    await setupOk(['volume', 'import', v, '--from', `${v}.raw`, '-q'], { env });
    await setupOk(['snapshot', 'create', v, 's1', '-q'], { env });
  }
});

/** Bytes of the tape files on `tape`. */
const used = (tape: string): number => (fs.existsSync(tape) ? fs.readdirSync(tape).reduce((n, f) => n + fs.statSync(path.join(tape, f)).size, 0) : 0);

/** Holds a single dump of a.vol to `tapes` with its stream complete, its trailer not written, until the returned function lets it go. */
async function heldDump(tapes: string[], name: string, extra: string[] = []): Promise<{ go: () => void; done: ReturnType<typeof finished> }> {
  const paused = at(`${name}.paused`);
  const child = spawnCli(['dump', A, '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes.join(',')}`, '--tape-size', String(TAPE_SIZE), '-q', ...extra], { env: { ...env, IMGSTREAM_PAUSE_AT: `dump-completing:${paused}` } });
  const done = finished(child, 60_000);
  for (let waited = 0; !fs.existsSync(paused); waited += 20) {
    if (waited > 30_000 || child.exitCode !== null) throw new Error('the first dump did not reach its pause');
    await sleep(20);
  }
  return { go: () => fs.rmSync(paused), done };
}

describe('two dumps to one tape set at once', () => {
  // newTape: the first dump makes the tapes (--new-tape); the second found them made and did not wait
  for (const [multiplex, newTape] of [[false, false], [true, false], [false, true], [true, true]]) {
    it(`the second (${multiplex ? 'multiplexed' : 'a single dump'}) waits for the first${newTape ? ', which made the tapes,' : ''} and no tape holds more than --tape-size`, async () => {
      const name = `${multiplex ? 'm' : 's'}${newTape ? 'n' : ''}`;
      const tapes = ['1', '2', '3'].map((n) => at(`${name}${n}`));
      if (!newTape) for (const t of tapes) fs.mkdirSync(t);
      const first = await heldDump(tapes, name, newTape ? ['--new-tape'] : []);
      const second = spawnCli(['dump', ...(multiplex ? [B, C, '--multiplex'] : [B]), '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes.join(',')}`, '--tape-size', String(TAPE_SIZE), '-q', ...(newTape ? ['--new-tape'] : [])], { env });
      const secondDone = finished(second, 60_000);
      await sleep(1500); // the second is waiting by now
      expect(second.exitCode).toBeNull();
      first.go();
      const [r1, r2] = [await first.done, await secondDone];
      expect(r1.code, r1.stderr).toBe(0);
      expect(r2.code, r2.stderr).toBe(0);
      expect(r2.stderr).toMatch(new RegExp(`^tape ${tapes[0].replace(/[.]/g, '\\.')}: imgstream process \\d+ \\(dump\\) is writing to it: waiting for it to finish$`, 'm'));
      for (const t of tapes) expect(used(t), t).toBeLessThanOrEqual(TAPE_SIZE);
      // and every dump reads back
      const v = await runBundled(['verify', `tape:${tapes.filter((t) => fs.existsSync(t)).join(',')}`], { env }); // a new tape no dump used is not made
      expect(v.code, v.stderr).toBe(0);
      expect(v.stdout).toMatch(new RegExp(`${multiplex ? 3 : 2} stream\\(s\\) verified`));
    });
  }

  it('a stop signal ends the wait: nothing written, exit 130', async () => {
    const tapes = [at('x1')];
    fs.mkdirSync(tapes[0]);
    const first = await heldDump(tapes, 'x');
    const second = spawnCli(['dump', B, C, '--multiplex', '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes[0]}`], { env });
    const secondDone = finished(second, 60_000);
    await sleep(1500);
    second.kill('SIGINT');
    const r2 = await secondDone;
    expect(r2.code, r2.stderr).toBe(130);
    first.go();
    expect((await first.done).code).toBe(0);
    expect(fs.readdirSync(tapes[0])).toEqual(['file0001.tar']);
  });
});
