// A dump stopped by a signal deletes the snapshot it took, through the server. Another
// dump may be reading that snapshot at that moment (a level sums every snapshot since its
// base; the concurrent model found the stopped dump's snapshot left behind, "could not be
// deleted"): the server then deletes it once the last reader lets go.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { CLI_BIN, run, startServer } from '../nbd/support.js';
import { ServedVolume } from '../../src/control/served-volume.js';
import { VolumeLock } from '../../src/volume/volume-lock.js';

const root = tempDir('imgstream-delete-later-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('a snapshot deleted when its readers let go', () => {
  it('stays while another reader pins it, and goes when that reader ends', async () => {
    const vol = at('v.vol');
    await setupOk(['volume', 'create', vol, '--size', String(1 << 20)], { env });
    await setupOk(['snapshot', 'create', vol, 'taken'], { env });
    const server = await startServer(vol, ['--socket', at('v.sock')], locks);
    const names = async () => (JSON.parse((await run(process.execPath, [CLI_BIN, 'snapshot', 'list', vol, '--json'], { env: { IMGSTREAM_LOCK_DIR: locks } })).stdout).snapshots as Array<{ name: string }>).map((s) => s.name);
    const prev = process.env.IMGSTREAM_LOCK_DIR;
    process.env.IMGSTREAM_LOCK_DIR = locks;
    try {
      const reader = await startServer(vol, ['--snapshot', 'taken'], locks); // another reader pins it
      const served = await ServedVolume.connect(vol, VolumeLock.holder(vol)!);
      try {
        await served.deleteSnapshotWhenUnpinned('taken'); // as a stopped dump asks
      } finally {
        served.close();
      }
      expect(await names()).toEqual(['taken']);
      await reader.stop();
      const deadline = Date.now() + 10_000;
      while ((await names()).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await names()).toEqual([]);
    } finally {
      if (prev === undefined) delete process.env.IMGSTREAM_LOCK_DIR;
      else process.env.IMGSTREAM_LOCK_DIR = prev;
      await server.stop();
    }
  });
});
