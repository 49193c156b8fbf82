// IMGSTREAM_LOCK_DIR that cannot hold lock files (a regular file, or a path through one):
// one line naming the variable and its value, exit 4 (invalid input), nothing changed. It
// was "internal error: ENOTDIR ... (this is a bug ...)", exit 1.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintTree } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { runBundled } from '../support/bundled-cli.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError } from '../support/stream-cli.js';

const root = tempDir('imgstream-cli-lockdir-');
const dir = path.join(root, 'work');
const vol = path.join(dir, 'v.vol');
const file = path.join(root, 'lf');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };

beforeAll(async () => {
  fs.mkdirSync(dir);
  fs.writeFileSync(file, 'not a directory\n');
  await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('IMGSTREAM_LOCK_DIR naming a file', () => {
  it('is one line naming it, exit 4, and nothing changes', async () => {
    for (const lockDir of [file, path.join(file, 'sub')]) {
      for (const args of [['volume', 'info', vol], ['snapshot', 'create', vol, 's'], ['snapshot', 'list', vol]]) {
        const before = fingerprintTree(dir);
        const r = await runBundled(args, { env: { ...env, IMGSTREAM_LOCK_DIR: lockDir } });
        const what = `${lockDir}: ${args.join(' ')}`;
        expectOneLineError(r, what, 4, new RegExp(`^imgstream: IMGSTREAM_LOCK_DIR=${lockDir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not a directory`));
        expect(fingerprintTree(dir), what).toEqual(before);
        expect(fs.readFileSync(file, 'utf8'), what).toBe('not a directory\n');
      }
    }
  });
});
