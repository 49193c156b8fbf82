// A switch (a boolean flag) given a value: `--master=yes`, `-q=1`, `-q1`. oclif splits the token
// at `=`, sets the switch and takes the value as the next positional argument, so
// `snapshot create v.vol --master=yes` made a snapshot named "yes" and `--json=false`
// blamed the argument before it. Every command refuses it before parsing (base.ts).
import { UsageError } from '../../src/core/errors.js';

/** What oclif's flag definitions tell about a flag here. */
interface FlagShape {
  type: string;
  char?: string;
  allowNo?: boolean;
}

/**
 * Throws a usage error (exit 2) naming the first switch in `argv` given a value; flags
 * are the command's own, its base flags and --json. Tokens after `--` and the values of
 * flags that take one are not looked at.
 */
export function refuseValuedSwitches(flags: Record<string, FlagShape>, argv: readonly string[]): void {
  const long = new Map<string, string>(); // spelling -> the switch's name
  const short = new Map<string, FlagShape & { name: string }>();
  for (const [name, flag] of Object.entries(flags)) {
    if (flag.type === 'boolean') {
      long.set(name, name);
      if (flag.allowNo) long.set(`no-${name}`, name);
    }
    if (flag.char) short.set(flag.char, { ...flag, name });
  }
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (token === '--') return;
    if (token.startsWith('--')) {
      const eq = token.indexOf('=');
      const spelled = token.slice(2, eq === -1 ? undefined : eq);
      if (eq !== -1 && long.has(spelled)) throw valued(`--${spelled}`);
      // an option's value is the next token unless given after `=`
      if (eq === -1 && flags[spelled]?.type === 'option') i++;
    } else if (token.startsWith('-') && token.length > 1) {
      // -q=1, or switches run together before one: -fq=1 (oclif reads -q and then "-=1")
      for (let c = 1; c < token.length; c++) {
        const flag = short.get(token[c]);
        if (!flag) break;
        if (flag.type !== 'boolean') {
          if (c === token.length - 1) i++; // -l 3: its value is the next token
          break;
        }
        // -q=1, and -q1 (oclif took "-1" for an argument: volume create -q1 made a volume named -1)
        if (token[c + 1] === '=' || (c + 1 < token.length && !short.has(token[c + 1]))) throw valued(`-${token[c]}`);
      }
    }
  }
}

function valued(spelled: string): UsageError {
  return new UsageError(`${spelled} takes no value`, `give ${spelled}, or leave it out`);
}
