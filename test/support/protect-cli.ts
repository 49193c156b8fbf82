// Running `imgstream protect` in tests: a child process whose --json events are parsed
// as they come, and helpers to wait for the destination to catch up.
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI_BIN, finished, type CliResult } from './cli.js';

export interface ProtectEventLine {
  event: string;
  seq?: number;
  kind?: string;
  end?: string;
  blocks?: number;
  bytes?: number;
  records?: number;
  lagMs?: number;
  journalTo?: number;
  [k: string]: unknown;
}

export interface RunningProtect {
  child: ChildProcess;
  events: ProtectEventLine[];
  done: Promise<CliResult>;
  /** Resolves once an event matches (rejects if the process ends first, or after timeoutMs). */
  waitFor(pred: (e: ProtectEventLine) => boolean, timeoutMs?: number): Promise<ProtectEventLine>;
  stop(): Promise<CliResult>;
  kill9(): Promise<CliResult>;
}

export function startProtect(volume: string, to: string, args: string[], env: Record<string, string>): RunningProtect {
  const child = spawn(process.execPath, [CLI_BIN, 'protect', volume, '--to', to, '--json', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const done = finished(child, 600_000);
  const events: ProtectEventLine[] = [];
  let buf = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        events.push(JSON.parse(line) as ProtectEventLine);
      } catch {
        // not an event line
      }
      for (const w of waiters.splice(0)) w();
    }
  });
  let ended = false;
  void done.then(() => {
    ended = true;
    for (const w of waiters.splice(0)) w();
  });
  return {
    child,
    events,
    done,
    async waitFor(pred, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = events.find(pred);
        if (hit) return hit;
        if (ended) throw new Error(`protect ended before the awaited event: ${JSON.stringify(events.slice(-3))} ${(await done).stderr}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for a protect event; last: ${JSON.stringify(events.slice(-3))}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 200);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
    async stop() {
      child.kill('SIGTERM');
      return done;
    },
    async kill9() {
      child.kill('SIGKILL');
      return done;
    },
  };
}
