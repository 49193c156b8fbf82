// Running a command in this process as if it were a CLI process of its own: with the
// test's environment (cli-env.ts), what it writes to stdout and stderr (and console)
// captured instead of shown, and the exit code it leaves in process.exitCode taken as
// its exit code, then put back. Used by in-process.ts (setup and checks through a
// command's class) and bundled-cli.ts (the executable's main() on the built bundle).
import { format } from 'node:util';
import type { CliResult } from './cli.js';
import { withCliEnv } from './cli-env.js';

/**
 * Runs `fn` with `env` applied and its output captured; its exit code is what `fn`
 * returns, else what it left in process.exitCode, else 0.
 */
export function runCaptured(env: Record<string, string | undefined>, fn: () => Promise<number | undefined | void>): Promise<CliResult> {
  return withCliEnv(env, async () => {
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
      const returned = await fn();
      code = returned ?? process.exitCode;
    } finally {
      stdout.write = writeOut;
      stderr.write = writeErr;
      Object.assign(console, { log, error });
      process.exitCode = savedExit;
    }
    const stdoutText = out.join('');
    return { code: code === undefined ? 0 : Number(code), signal: null, stdout: stdoutText, stderr: err.join(''), stdoutBytes: Buffer.from(stdoutText) };
  });
}
