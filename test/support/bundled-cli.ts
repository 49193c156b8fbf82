// The executable's own main() (src/cli/main.ts), from the built bundle the executable
// loads, run in this process: the same argument handling, flag parsing, command code,
// one-line errors and exit codes as `node dist/commands/_cli/bin.js ...`, without the
// 0.15-0.2 s of CPU a process spends starting. For suites that run a command many times
// to check how it fails (bad-input.test.ts); each such suite also runs a share of its
// cases as real processes and requires the same output from both. No stdin: a case that
// reads it runs as a process (cli.ts). Calls run one at a time (captured-run.ts).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { LoadedCli } from '../../src/cli/load.js';
import { CLI_BIN, REPO_ROOT, type CliResult } from './cli.js';
import { runCaptured } from './captured-run.js';

let bundle: LoadedCli | undefined;

/** What a run here found that a process would hide by exiting: files it left open (descriptor -> path). */
export interface BundledResult extends CliResult {
  leakedFds: string[];
}

/**
 * This process's open files (descriptors of paths) and what each names. Sockets and pipes
 * are left out: the test may run CLI processes beside a run here, whose stdio they are.
 */
function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith('/')) fds.set(fd, target);
    } catch {
      // the directory's own descriptor, closed by now
    }
  }
  return fds;
}

/** Runs `imgstream ...args` here, as the executable would: its exit code and what it printed. */
export async function runBundled(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<BundledResult> {
  if (args.includes('-')) throw new Error(`runBundled: imgstream ${args.join(' ')} reads stdin or writes stdout: run it as a process (runCli)`);
  // required as Node would (no code cache: compiled once for this process)
  bundle ??= createRequire(import.meta.url)(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'imgstream.cjs')) as LoadedCli;
  const cli = bundle;
  // the environment a CLI process gets from runCli (cli.ts): vitest's NODE_ENV=test would put oclif in development mode
  const env = { OCLIF_SKIP_NEW_VERSION_CHECK: 'true', OCLIF_DISABLE_ENGINE_WARNING: 'true', NODE_ENV: undefined, IMGSTREAM_DEBUG: undefined, FORCE_COLOR: undefined, ...opts.env };
  const fdsBefore = openFds();
  const drains = new Set(process.stdout.listeners('drain'));
  try {
    const r = await runCaptured(env, () => cli.main(args, pathToFileURL(CLI_BIN).href));
    // a stream being destroyed closes its file on libuv's threads: given up to 1 s
    const leaked = () => [...openFds()].filter(([fd, target]) => fdsBefore.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`);
    let leakedFds = leaked();
    for (let waited = 0; leakedFds.length > 0 && waited < 1000; waited += 10) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      leakedFds = leaked();
    }
    return { ...r, leakedFds };
  } finally {
    // oclif's flush() waits for a 'drain' of stdout that a captured write never emits: its
    // listener, left once per run, is dropped here (a process exits with it)
    for (const l of process.stdout.listeners('drain')) if (!drains.has(l)) process.stdout.removeListener('drain', l as () => void);
  }
}
