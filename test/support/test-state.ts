// Set up before every test file (test/vitest.config.ts): each test process keeps
// imgstream's per-user state (the catalog, the mirror state) in a directory of its own,
// which every CLI run it starts inherits. A test that names no catalog of its own then
// never writes to the user's (~/.local/state/imgstream), as two protect tests once did.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

// What a test file sets in process.env for the commands it runs in this process
// (IMGSTREAM_LOCK_DIR, IMGSTREAM_MIRROR_STATE…) is put back once it is done: with
// --no-isolate the next file in this worker ran its commands with that file's lock
// directory, which its cleanup had removed (and the locks made it again, left behind).
const imgstreamEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('IMGSTREAM_') && k !== 'IMGSTREAM_TEST_STATE'));
afterAll(() => {
  for (const k of Object.keys(process.env)) if (k.startsWith('IMGSTREAM_') && k !== 'IMGSTREAM_TEST_STATE' && !(k in imgstreamEnv)) delete process.env[k];
  Object.assign(process.env, imgstreamEnv);
});

// Removed once the file is done (a worker ended by the runner gets no 'exit' event, and
// left one empty directory per file behind): the next file in this worker makes its own.
if (process.env.IMGSTREAM_TEST_STATE === undefined) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-test-state-'));
  process.env.IMGSTREAM_TEST_STATE = dir;
  process.env.XDG_STATE_HOME = dir;
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    delete process.env.IMGSTREAM_TEST_STATE;
    delete process.env.XDG_STATE_HOME;
  });
}

// An imgstream process a test file started and left running (a server, a shipper, a
// daemon whose test failed before it stopped them) is killed once the file is done: it
// would hold its volume and a CPU for the files after it, and outlive the run.
afterAll(() => {
  for (const pid of leftoverChildren()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
});

/** This process's children that run the imgstream CLI. */
function leftoverChildren(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('/commands/_cli/bin.js')) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}
