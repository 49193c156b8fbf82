// What a volume create killed with -9 leaves beside the volume's name (its temporary
// file, `.NAME.imgstream-new-PID`, up to the disk's full apparent size) is removed by the
// next create of that name, as exports and restores remove theirs; and an error while the
// file is made names the volume as the user gave it, not its temporary file.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const root = tempDir('imgstream-create-leftovers-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const at = (n: string) => path.join(root, n);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A pid no process has: one that was just reaped. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

describe('volume create', () => {
  it('removes the temporary file a killed create of the same name left, and none of a live one', async () => {
    const dead = at(`.k.vol.imgstream-new-${await deadPid()}`);
    fs.writeFileSync(dead, '');
    fs.truncateSync(dead, 1 << 30);
    const live = at(`.k.vol.imgstream-new-${process.pid === 1 ? 2 : 1}`); // pid 1 lives
    fs.writeFileSync(live, '');
    await setupOk(['volume', 'create', at('k.vol'), '--size', '1M'], { env });
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(at('k.vol'))).toBe(true);
  });
});
