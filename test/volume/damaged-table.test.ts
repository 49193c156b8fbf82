// A damaged snapshot table entry (its checksum fails) made every command fail with exit 9,
// volume check included, so nothing on the volume could be read and nothing repaired.
// Now commands that only read skip the entry (snapshot list says so on stderr), check
// reports it with the other snapshots checked, commands that write refuse the volume
// without changing it, and `volume check --drop-damaged-snapshots` empties the entry,
// after which the volume is written again and the blocks only that snapshot held are free.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { inProcess, inProcessJson, setupOk } from '../support/in-process.js';
import { runCli } from '../support/cli.js';
import { Volume } from '../../src/volume/volume.js';
import { SNAPSHOT_ENTRY_BYTES } from '../../src/format/snapshot-entry.js';

const BS = 4096;
const root = tempDir('imgstream-damaged-table-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog') };
const at = (n: string) => path.join(root, n);
const sha = (p: string) => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('a damaged snapshot table entry', () => {
  it('is skipped by readers, reported by check, refused by writers, and dropped on request', async () => {
    const vol = at('v.vol');
    await setupOk(['volume', 'create', vol, '--size', `${256 * BS}`, '--volume-size', '6M'], { env });
    for (const [i, name] of ['s1', 's2', 's3'].entries()) {
      // each snapshot holds an image of its own: s2's blocks are held by s2 alone
      fs.writeFileSync(at(`${name}.raw`), randomImage(256, BS, 10 + i, 0));
      await setupOk(['volume', 'import', vol, '--from', at(`${name}.raw`)], { env });
      await setupOk(['snapshot', 'create', vol, name], { env });
    }
    const freeBefore = (await inProcessJson<{ freeBlocks: number }>(['volume', 'info', vol], { env })).freeBlocks;
    const v = Volume.open(vol, { write: false });
    const slot = v.snapshot('s2').slot;
    const offset = v.layout.metaOffset(v.layout.tableStart) + slot * SNAPSHOT_ENTRY_BYTES + 30; // inside the entry's checksummed bytes
    v.close();
    const fd = fs.openSync(vol, 'r+');
    fs.writeSync(fd, Buffer.from([0xa5]), 0, 1, offset);
    fs.closeSync(fd);
    const damaged = sha(vol);

    const list = await inProcess(['snapshot', 'list', vol], { env });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/s1[\s\S]*s3/);
    expect(list.stdout).not.toMatch(/s2/);
    expect(list.stderr.trim().split('\n')).toEqual([`imgstream: ${vol}: snapshot table entry ${slot} is damaged: its snapshot is not listed (imgstream volume check --drop-damaged-snapshots drops it)`]);

    const check = await inProcess(['volume', 'check', vol], { env });
    expect(check.code).toBe(9);
    expect(check.stdout).toMatch(/^s1: .*: ok$/m);
    expect(check.stdout).toMatch(/^s3: .*: ok$/m);
    expect(check.stdout).toContain(`problem: snapshot table entry ${slot} is damaged`);

    for (const name of ['s1', 's3']) {
      const out = at(`${name}.out`);
      const r = await inProcess(['volume', 'export', `${vol}@${name}`, '--to', out], { env });
      expect(r.code, r.stderr).toBe(0);
      expect(sha(out)).toBe(sha(at(`${name}.raw`)));
    }

    for (const args of [['snapshot', 'create', vol, 's4'], ['snapshot', 'delete', vol, 's1'], ['dump', vol, '--level', '0', '--to', at('d.ims')]]) {
      const r = args[0] === 'dump' ? runCli(args, { env }) : await inProcess(args, { env });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(9);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(`snapshot table entry ${slot} is damaged`);
      expect(r.stderr).toContain('--drop-damaged-snapshots');
    }
    expect(sha(vol)).toBe(damaged);
    expect(fs.existsSync(at('d.ims'))).toBe(false);

    // killed -9 before the dropping CP commits: the volume is as before (the entry still damaged) and opens for reading
    // (a kill once its root is written leaves it dropped: the CP's own crash tests, volume/crash-points)
    for (const step of ['journal']) {
      const killed = runCli(['volume', 'check', vol, '--drop-damaged-snapshots'], { env: { ...env, IMGSTREAM_CRASH_AT: `${step}:v.vol` } });
      expect(killed.signal, `${step}: ${killed.stderr}`).toBe('SIGKILL');
      const after = await inProcess(['snapshot', 'list', vol], { env });
      expect(after.code, `${step}: ${after.stderr}`).toBe(0);
      expect(after.stdout).toMatch(/s1[\s\S]*s3/);
      const names = (await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env })).snapshots.map((x) => x.name);
      expect(names, step).toEqual(['s1', 's3']);
      expect((await inProcess(['volume', 'check', vol], { env })).code, `${step}: still damaged`).toBe(9);
      for (const name of ['s1', 's3']) {
        const out = at(`${name}.${step}.out`);
        const r = await inProcess(['volume', 'export', `${vol}@${name}`, '--to', out], { env });
        expect(r.code, r.stderr).toBe(0);
        expect(sha(out), `${step}: ${name}`).toBe(sha(at(`${name}.raw`)));
      }
    }

    const drop = await inProcess(['volume', 'check', vol, '--drop-damaged-snapshots'], { env });
    expect(drop.code, drop.stderr).toBe(0);
    expect(drop.stdout).toContain(`dropped damaged snapshot table entries ${slot} (their snapshots are lost)`);
    expect(drop.stdout).toMatch(/: clean$/m);
    // s2's blocks are free again
    const freeAfter = (await inProcessJson<{ freeBlocks: number }>(['volume', 'info', vol], { env })).freeBlocks;
    expect(freeAfter).toBeGreaterThanOrEqual(freeBefore + 256);
    await setupOk(['snapshot', 'create', vol, 's4'], { env });
    const names = (await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env })).snapshots.map((s) => s.name);
    expect(names).toEqual(['s1', 's3', 's4']);
    for (const name of ['s1', 's3', 's4']) {
      const out = at(`${name}.out2`);
      const r = await inProcess(['volume', 'export', `${vol}@${name}`, '--to', out], { env });
      expect(r.code, r.stderr).toBe(0);
      expect(sha(out)).toBe(sha(at(`${name === 's4' ? 's3' : name}.raw`)));
    }
    const again = await inProcess(['volume', 'check', vol, '--drop-damaged-snapshots'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('no damaged snapshot table entry');
  });
});
