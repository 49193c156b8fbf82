// Running `imgstream protect` in tests: a child process whose --json events are parsed
// as they come, and helpers to wait for the destination to catch up.
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI_BIN, finished, type CliResult } from './cli.js';
import { inProcess } from './in-process.js';

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
  /**
   * Resolves once the destination's window ends after `t` (ms): an interval that ends after
   * it, or (nothing written since) the window moved on by the shipper's quiet updates,
   * which print no event. A client's last reply can come after the boundary of the interval
   * that holds its write, so waiting for an interval event alone can wait for ever.
   */
  waitCovered(t: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<CliResult>;
  kill9(): Promise<CliResult>;
}

export function startProtect(volume: string, to: string, args: string[], env: Record<string, string>): RunningProtect {
  // the options `protect status` needs to reach the same destination
  const reach: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--plain') reach.push('--plain');
    else if (['--token-file', '--tls-ca', '--tls-fingerprint'].includes(args[i])) reach.push(args[i], args[++i]);
  }
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
    async waitCovered(t, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      const covered = (e: ProtectEventLine) => e.event === 'interval' && Date.parse(String(e.end)) > t;
      // an interval event usually comes first; `protect status` (run here) only when none does
      const quietFrom = Date.now() + 1500;
      for (;;) {
        if (events.some(covered)) return;
        if (ended) throw new Error(`protect ended before its destination covered ${new Date(t).toISOString()}: ${JSON.stringify(events.slice(-3))} ${(await done).stderr}`);
        if (Date.now() < quietFrom) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        const st = await inProcess(['protect', 'status', to, '--json', ...reach], { env });
        const end = st.code === 0 ? Date.parse((JSON.parse(st.stdout) as { window: { end: string } | null }).window?.end ?? '') : NaN;
        if (end > t) return;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${to} to cover ${new Date(t).toISOString()} (window ends ${Number.isNaN(end) ? st.stderr.trim() || 'nowhere' : new Date(end).toISOString()}); last events: ${JSON.stringify(events.slice(-3))}`);
        await new Promise((r) => setTimeout(r, 750));
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
