// Set up before every test file (test/vitest.config.ts): each test process keeps
// imgstream's per-user state (the catalog, the mirror state) in a directory of its own,
// which every CLI run it starts inherits. A test that names no catalog of its own then
// never writes to the user's (~/.local/state/imgstream), as two protect tests once did.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

if (process.env.IMGSTREAM_TEST_STATE === undefined) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-test-state-'));
  process.env.IMGSTREAM_TEST_STATE = dir;
  process.env.XDG_STATE_HOME = dir;
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
}
