// What the executable does with its arguments, bundled with the commands (the bundle
// exports it): `help` before a topic or command asks for its help; oclif runs the command;
// an error raised before a command runs (unknown command, unknown topic) is printed as one
// line, as a command prints its own (commands/_cli/base.ts), with --json its JSON object too. The exit code is returned,
// not taken: bin.js exits with it, and the tests run the CLI in their own process through
// this same function (test/support/bundled-cli.ts). A write to stdout that failed is one
// line and exit 10 (output-failure.ts).
import { run } from '@oclif/core';
import { escapeControls } from '../core/control-chars.js';
import { EXIT_CODES } from '../core/errors.js';
import { outputDrained, reportOutputFailure, watchOutput } from './output-failure.js';

/**
 * Runs `imgstream ...given`; `url`: the executable's module URL (oclif finds the package
 * from it). Returns the exit code to leave with, or undefined when the command ended as it
 * chose (process.exitCode holds its code).
 */
export async function main(given: string[], url: string): Promise<number | undefined> {
  // `imgstream help [TOPIC|COMMAND...]` is the same as `imgstream [TOPIC|COMMAND...] --help`
  const argv = given[0] === 'help' ? [...given.slice(1), '--help'] : given;
  watchOutput();
  try {
    await run(argv, url);
    // (not oclif's flush(): it waits for a 'drain' that a failed stdout never emits)
    await outputDrained();
    return reportOutputFailure(Number(process.exitCode ?? 0));
  } catch (err) {
    const e = err as Error & { oclif?: { exit?: number } };
    if (e.oclif?.exit === 0) {
      await outputDrained();
      return reportOutputFailure(0) ?? 0;
    }
    reportOutputFailure(1);
    const message = (e.message ?? String(e))
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .join(' ')
      .replace(/^command (\S+) not found\.?/i, (_m, id: string) => `unknown command "${id.replaceAll(':', ' ')}"`);
    const exit = e.oclif?.exit && e.oclif.exit > 0 ? e.oclif.exit : EXIT_CODES.usage.exit;
    const hint = 'see: imgstream --help';
    // with --json, the error object on stdout too, as a command prints it (commands/_cli/base.ts)
    const dashdash = argv.indexOf('--');
    if (argv.slice(0, dashdash === -1 ? undefined : dashdash).includes('--json')) {
      const code = Object.entries(EXIT_CODES).find(([, v]) => v.exit === exit)?.[0] ?? 'usage';
      process.stdout.write(`${JSON.stringify({ error: { code, exit, message, hint } })}\n`);
    }
    process.stderr.write(`${escapeControls(`imgstream: ${message} (${hint})`)}\n`);
    return exit;
  }
}
