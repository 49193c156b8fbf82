// Setup and checks that are not what a test is about (creating a volume, importing an
// image into it, taking or deleting a snapshot; listing snapshots, the catalog, a
// destination's window; exporting a snapshot to compare it) run in this process through
// the command's own class: the same flag parsing, the same code, the same one-line error
// and exit code, without starting a process for each step (a process costs about 0.2 s of
// CPU before it does anything, and the suite ran thousands). What a test is about still
// runs as a real process (cli.ts); these commands themselves are tested as processes
// elsewhere. Calls run one at a time with the test's environment, what a command prints
// captured, not shown (captured-run.ts).
import { Config, type Command } from '@oclif/core';
import VolumeCreate from '../../commands/volume/create.js';
import VolumeImport from '../../commands/volume/import.js';
import VolumeExport from '../../commands/volume/export.js';
import VolumeInfo from '../../commands/volume/info.js';
import VolumeCheck from '../../commands/volume/check.js';
import SnapshotCreate from '../../commands/snapshot/create.js';
import SnapshotDelete from '../../commands/snapshot/delete.js';
import SnapshotList from '../../commands/snapshot/list.js';
import CatalogList from '../../commands/catalog/list.js';
import ProtectStatus from '../../commands/protect/status.js';
import MirrorStatus from '../../commands/mirror/status.js';
import { REPO_ROOT, writeImage, type CliResult } from './cli.js';
import { runCaptured } from './captured-run.js';

/** Setup: what setupOk runs. */
const SETUP: Record<string, Command.Class> = {
  'volume create': VolumeCreate,
  'volume import': VolumeImport,
  'snapshot create': SnapshotCreate,
  'snapshot delete': SnapshotDelete,
};

/** Checks: what inProcess runs besides (they change nothing but the file an export writes). */
const CHECKS: Record<string, Command.Class> = {
  'volume export': VolumeExport,
  'volume info': VolumeInfo,
  'volume check': VolumeCheck,
  'snapshot list': SnapshotList,
  'catalog list': CatalogList,
  'protect status': ProtectStatus,
  'mirror status': MirrorStatus,
};

let config: Promise<Config> | undefined;

/**
 * Runs `imgstream ...args` here and fails unless it succeeds (as cliOk does); returns what
 * it printed on stdout. Only the setup commands above, and no stdin.
 */
export async function setupOk(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<string> {
  const id = args.slice(0, 2).join(' ');
  if (!SETUP[id]) throw new Error(`setupOk: "${id}" is not a setup command (${Object.keys(SETUP).join(', ')}): run it with cliOk`);
  const r = await inProcess(args, opts);
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Runs `imgstream ...args` here, as runCli would as a process: its exit code, and what it
 * printed. Only the setup and check commands above, no stdin, and no export to stdout.
 */
export function inProcess(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  const id = args.slice(0, 2).join(' ');
  const Cmd = SETUP[id] ?? CHECKS[id];
  if (!Cmd) throw new Error(`inProcess: "${id}" runs as a process (cliOk): not one of ${[...Object.keys(SETUP), ...Object.keys(CHECKS)].join(', ')}`);
  if (args.includes('-')) throw new Error(`inProcess: imgstream ${args.join(' ')} reads stdin or writes stdout: run it with cliOk`);
  config ??= Config.load(REPO_ROOT);
  return runCaptured(opts.env ?? {}, async () => {
    // a failure is printed and leaves its exit code, as in the CLI (commands/_cli/base.ts)
    await Cmd.run(args.slice(2), await config);
  });
}

/** inProcess, failing unless the command succeeds; returns its result (as cliOk does). */
export async function inProcessOk(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<CliResult> {
  const r = await inProcess(args, opts);
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r;
}

/** inProcess of `...args --json`, failing unless it succeeds; its stdout parsed (as cliJson does). */
export async function inProcessJson<T = any>(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<T> {
  return JSON.parse((await inProcessOk([...args, '--json'], opts)).stdout) as T;
}

/** A 1 MiB volume (8 snapshot slots) holding a random image written to `raw`, with snapshot s1 of it. */
export async function volumeWithSnapshot(vol: string, raw: string, env: Record<string, string>): Promise<void> {
  writeImage(raw, 256, 4096, 1);
  await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '8'], { env });
  await setupOk(['volume', 'import', vol, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's1'], { env });
}
