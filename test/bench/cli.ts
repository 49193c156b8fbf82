// The built imgstream executable, run the way a user runs it (a fresh node process).
import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from './measure.js';

// dist/test/bench/cli.js -> dist/commands/_cli/bin.js
export const CLI_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../commands/_cli/bin.js');

export function assertCliBuilt(): void {
  if (!fs.existsSync(CLI_BIN)) throw new Error(`${CLI_BIN} is missing: run npm run build first`);
}

/** Arguments for spawning the CLI: [node, [bin, ...args]]. */
export function cliCommand(args: string[]): [string, string[]] {
  return [process.execPath, [CLI_BIN, ...args]];
}

/** Runs `imgstream ARGS --json` and returns the parsed result (the last stdout line). */
export function cliJson<T>(args: string[]): T {
  const [cmd, argv] = cliCommand([...args, '--json']);
  return parseJsonOutput<T>(run(cmd, argv));
}

export function parseJsonOutput<T>(stdout: string): T {
  const text = stdout.trim();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`imgstream --json printed something that is not JSON: ${text.slice(0, 200)}`);
  }
}
