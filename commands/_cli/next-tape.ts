// Asks for the next tape on a terminal when a dump fills one; elsewhere there is no one
// to ask, and the dump fails with a hint to give every tape up front.
import readline from 'node:readline/promises';

export function nextTapePrompt(): ((n: number) => Promise<string | null>) | undefined {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return undefined;
  return async (n) => {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
    try {
      const answer = (await rl.question(`tape full: directory or device of tape ${n} (empty to stop): `)).trim();
      return answer || null;
    } finally {
      rl.close();
    }
  };
}
