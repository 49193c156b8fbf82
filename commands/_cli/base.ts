// What every imgstream command shares: --json, --quiet, progress rendering, and errors
// printed as one line with the exit code from the table in src/core/errors.ts.
import { Command, Flags, type Interfaces } from '@oclif/core';
import chalk from 'chalk';
import { escapeControls } from '../../src/core/control-chars.js';
import { EXIT_CODES, EXIT_INTERNAL, ImgstreamError } from '../../src/core/errors.js';
import type { Progress } from '../../src/core/progress.js';
import { progressFor } from './progress-bar.js';
import { refuseValuedSwitches } from './valued-switch.js';

// oclif's FlagOutput and ArgOutput, which its package does not export
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ParsedValues = { [name: string]: any };

export abstract class ImgstreamCommand extends Command {
  static override enableJsonFlag = true;
  static override baseFlags = {
    quiet: Flags.boolean({ char: 'q', description: 'Show no progress bar.', helpGroup: 'GLOBAL' }),
  };

  protected override async parse<F extends ParsedValues, B extends ParsedValues, A extends ParsedValues>(
    options?: Interfaces.Input<F, B, A>,
    argv: string[] = this.argv,
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    const given = (options ?? this.ctor) as { flags?: object; baseFlags?: object; enableJsonFlag?: boolean };
    refuseValuedSwitches({ ...(given.enableJsonFlag ? { json: { type: 'boolean' } } : {}), ...given.baseFlags, ...given.flags } as Parameters<typeof refuseValuedSwitches>[0], argv);
    return super.parse(options, argv);
  }

  /** Progress shown on a terminal unless --json or --quiet. */
  protected progress(): Progress {
    const quiet = this.argv.includes('--quiet') || this.argv.includes('-q');
    return progressFor(!this.jsonEnabled() && !quiet);
  }

  /** Prints a line of human output (not with --json). */
  protected say(text = ''): void {
    if (!this.jsonEnabled()) process.stdout.write(`${text}\n`);
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<void> {
    let code: string;
    let exit: number;
    let message: string;
    let hint: string | undefined;
    let details: unknown;
    if (err instanceof ImgstreamError) {
      code = err.code;
      exit = err.exitCode;
      message = err.message;
      hint = err.hint;
      details = err.details;
    } else if (err.oclif?.exit !== undefined || err.name === 'CLIError' || /Parse|Flag|Arg|Validation/.test(err.constructor?.name ?? '')) {
      // oclif's own parse errors: unknown flags, missing arguments, bad option values
      code = 'usage';
      exit = EXIT_CODES.usage.exit;
      // (a missing argument's long description wraps onto indented lines: joined to the line they continue)
      const lines = (/^Missing \d+ required args?:/.test(err.message) ? err.message.replace(/\n[ \t]+(?=\S)/g, ' ') : err.message)
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !/^See more help with/.test(l));
      // oclif: "Missing 2 required args:" then a line "name  description" for each
      const missing = /^Missing \d+ required args?:$/.test(lines[0] ?? '')
        ? lines.slice(1).map((l) => {
            const [, name, what] = /^(\S+)\s*(.*)$/.exec(l)!;
            // its description after a colon: descriptions hold parentheses of their own
            return what ? `${name.toUpperCase()}: ${what.replace(/\.$/, '')}` : name.toUpperCase();
          })
        : null;
      // oclif: "The following error(s) occurred:" then "--a=V cannot also be provided when using --b", once for each side
      const conflict = /^The following errors? occurred:$/.test(lines[0] ?? '') ? /^(--[\w-]+)(?:=.*)? cannot also be provided when using (--[\w-]+)/.exec(lines[1] ?? '') : null;
      // oclif: "Parsing --level Expected an integer less than or equal to 9 but received: 10"
      const value = /^Parsing (--[\w-]+) Expected (.*) but received: (.*)$/.exec(lines.join(' '));
      // oclif: "Expected --compress=lz4 to be one of: zstd, none"
      const choice = /^Expected (--[\w-]+)=(.*) to be one of: (.*)$/.exec(lines.join(' '));
      // oclif: "The following error(s) occurred:" then "Missing required flag to", once for each
      const missingFlags = /^The following errors? occurred:$/.test(lines[0] ?? '') ? lines.slice(1).map((l) => /^Missing required flag ([\w-]+)$/.exec(l)?.[1]) : [];
      message = missing
        ? `missing argument${missing.length > 1 ? 's' : ''} ${missing.join('; ')}`
        : missingFlags.length > 0 && missingFlags.every(Boolean)
          ? `missing flag${missingFlags.length > 1 ? 's' : ''} ${missingFlags.map((f) => `--${f}`).join(', ')}`
          : conflict
            ? `${conflict[1]} cannot be combined with ${conflict[2]}`
            : value
              ? `${value[1]} ${value[3]}: expected ${value[2]}`
              : choice
                ? `${choice[1]} ${choice[2]}: expected one of ${choice[3]}`
                : lines.join(' ');
      // a flag's value that is malformed or out of range is invalid input (4), as a bad size or
      // name is: the command line itself was well formed
      if (value || choice) {
        code = 'invalid-input';
        exit = EXIT_CODES['invalid-input'].exit;
      }
      hint = `see: imgstream ${this.id?.replaceAll(':', ' ') ?? ''} --help`;
      if (err.oclif?.exit === 0) exit = 0;
    } else {
      code = 'internal';
      exit = EXIT_INTERNAL;
      message = `internal error: ${err.message}`;
      hint = 'this is a bug; run again with IMGSTREAM_DEBUG=1 for details and report it';
      if (process.env.IMGSTREAM_DEBUG) process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = exit;
    if (exit === 0) return;
    // the hint in parentheses, unless it holds some itself: then after a semicolon (never nested)
    if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify({ error: { code, exit, message, hint, ...(details === undefined ? {} : { details }) } })}\n`);
    // names the user gave may hold control characters: escaped, so the error stays one line
    // and no escape sequence reaches the terminal (the JSON object escapes them itself)
    const line = escapeControls(`imgstream: ${message}${hint ? (/[()]/.test(hint) ? `; ${hint}` : ` (${hint})`) : ''}`);
    // NO_COLOR (https://no-color.org): any value but the empty string turns colour off
    process.stderr.write(`${process.stderr.isTTY && !process.env.NO_COLOR ? chalk.red(line) : line}\n`);
  }
}
