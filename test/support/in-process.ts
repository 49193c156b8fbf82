// Setup that is not what a test is about (creating a volume, importing an image into it,
// taking or deleting a snapshot) run in this process through the command's own class:
// the same flag parsing, the same code, the same one-line error and exit code, without
// starting a process for each step. What a test is about still runs as a real process
// (cli.ts); these commands themselves are tested as processes elsewhere. Calls run one
// at a time with the test's environment (cli-env.ts); what a command prints is captured,
// not shown.
import { format } from 'node:util';
import { Config, type Command } from '@oclif/core';
import VolumeCreate from '../../commands/volume/create.js';
import VolumeImport from '../../commands/volume/import.js';
import SnapshotCreate from '../../commands/snapshot/create.js';
import SnapshotDelete from '../../commands/snapshot/delete.js';
import { REPO_ROOT, writeImage } from './cli.js';
import { withCliEnv } from './cli-env.js';

const COMMANDS: Record<string, Command.Class> = {
  'volume create': VolumeCreate,
  'volume import': VolumeImport,
  'snapshot create': SnapshotCreate,
  'snapshot delete': SnapshotDelete,
};

let config: Promise<Config> | undefined;

/**
 * Runs `imgstream ...args` here and fails unless it succeeds (as cliOk does); returns what
 * it printed on stdout. Only the setup commands above, and no stdin.
 */
export function setupOk(args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<string> {
  const id = args.slice(0, 2).join(' ');
  const Cmd = COMMANDS[id];
  if (!Cmd) throw new Error(`setupOk: "${id}" is not a setup command (${Object.keys(COMMANDS).join(', ')}): run it with cliOk`);
  if (args.includes('-')) throw new Error(`setupOk: imgstream ${args.join(' ')} reads stdin: run it with cliOk`);
  config ??= Config.load(REPO_ROOT);
  return withCliEnv(opts.env ?? {}, async () => {
    const out: string[] = [];
    const err: string[] = [];
    const { stdout, stderr } = process;
    const writeOut = stdout.write;
    const writeErr = stderr.write;
    const { log, error } = console;
    const savedExit = process.exitCode;
    process.exitCode = undefined;
    stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof stdout.write;
    stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof stderr.write;
    // oclif prints --json output with console.log
    console.log = (...a: unknown[]) => void out.push(`${format(...a)}\n`);
    console.error = (...a: unknown[]) => void err.push(`${format(...a)}\n`);
    let code: number | string | null | undefined;
    try {
      // a failure is printed and leaves its exit code, as in the CLI (commands/_cli/base.ts)
      await Cmd.run(args.slice(2), await config);
      code = process.exitCode;
    } finally {
      stdout.write = writeOut;
      stderr.write = writeErr;
      Object.assign(console, { log, error });
      process.exitCode = savedExit;
    }
    if (code !== undefined && code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${code}: ${err.join('').trim()}`);
    return out.join('');
  });
}

/** A 1 MiB volume (8 snapshot slots) holding a random image written to `raw`, with snapshot s1 of it. */
export async function volumeWithSnapshot(vol: string, raw: string, env: Record<string, string>): Promise<void> {
  writeImage(raw, 256, 4096, 1);
  await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '8'], { env });
  await setupOk(['volume', 'import', vol, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's1'], { env });
}
