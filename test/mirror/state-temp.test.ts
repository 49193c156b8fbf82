// The mirror state is replaced whole: its next version is written beside it as
// FILE.PID.tmp and renamed over it. A command killed between the two leaves that file;
// the next save removes it when its writer is gone, and never a running writer's.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { MirrorState } from '../../src/mirror/state.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-state-temp-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('the mirror state file', () => {
  it("removes the next versions killed writers left, and keeps a running writer's", () => {
    const file = path.join(root, 'mirrors.json');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // a pid whose process is gone
    const running = spawn('sleep', ['30']);
    try {
      const stale = `${file}.${dead}.tmp`;
      const live = `${file}.${running.pid}.tmp`;
      const other = path.join(root, 'other.json.1.tmp'); // another file's: not this state's
      for (const f of [stale, live, other]) fs.writeFileSync(f, '{"half": ');
      const state = new MirrorState(file);
      state.recordReplica('0ec173d6-0000-4000-8000-000000000000', '/replica.vol', { id: 1, name: 's1', generation: 1, createdMs: 0, reusedBlocks: 0 });
      expect(fs.existsSync(stale), 'a killed writer\'s').toBe(false);
      expect(fs.existsSync(live), 'a running writer\'s').toBe(true);
      expect(fs.existsSync(other), 'another file\'s').toBe(true);
      expect(new MirrorState(file).replicas('0ec173d6-0000-4000-8000-000000000000')).toHaveLength(1);
    } finally {
      running.kill('SIGKILL');
    }
  });
});
