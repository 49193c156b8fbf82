// Reads a passphrase typed on the terminal without echoing it: stdin in raw mode, the
// question on stderr. Backspace erases a character, Ctrl-U the line; Enter ends it;
// Ctrl-C interrupts the command as it would anywhere else; Ctrl-D on an empty line means
// no passphrase. Only for a terminal: the caller checks canPrompt() first.
import { InvalidInputError } from '../../src/core/errors.js';

export function canPrompt(): boolean {
  return process.stdin.isTTY === true && typeof process.stdin.setRawMode === 'function';
}

export function readHidden(question: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(question);
  return new Promise<string>((resolve, reject) => {
    let typed = '';
    const finish = (then: () => void) => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      then();
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish(() => resolve(typed));
        if (ch === '\u0003') return finish(() => process.kill(process.pid, 'SIGINT'));
        if (ch === '\u0004') {
          if (typed === '') return finish(() => reject(new InvalidInputError('no passphrase typed (end of input at the prompt)')));
        } else if (ch === '\u007f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
        else if (ch === '\u0015') typed = '';
        else if (ch >= ' ') typed += ch;
      }
    };
    input.setEncoding('utf8');
    input.setRawMode(true);
    input.on('data', onData);
    input.resume();
  });
}
