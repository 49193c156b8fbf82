// A local rsync daemon, the baseline a user would reach for to keep a copy of an image
// file up to date: `rsync --daemon --no-detach` on 127.0.0.1 (a free port), one writable
// module on a directory of the work directory. Started and stopped by the benchmark that
// needs it; killed with the run if the run ends first.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export const RSYNC_MODULE = 'bench';

export function rsyncInstalled(): boolean {
  return spawnSync('rsync', ['--version'], { stdio: 'ignore' }).status === 0;
}

export class RsyncDaemon {
  private readonly stopOnExit = () => this.child.kill('SIGKILL');

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    /** The module's directory: what the daemon receives lands here. */
    readonly dir: string,
  ) {
    process.once('exit', this.stopOnExit);
  }

  /** Starts a daemon whose module `bench` is `<parent>/rsync-module`; resolves once it answers. */
  static async start(parent: string): Promise<RsyncDaemon> {
    const dir = path.join(parent, 'rsync-module');
    fs.mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const conf = path.join(parent, 'rsyncd.conf');
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    fs.writeFileSync(
      conf,
      [
        'use chroot = no',
        `pid file = ${path.join(parent, 'rsyncd.pid')}`,
        `log file = ${path.join(parent, 'rsyncd.log')}`,
        `[${RSYNC_MODULE}]`,
        `    path = ${dir}`,
        '    read only = no',
        `    uid = ${uid}`,
        `    gid = ${gid}`,
        '',
      ].join('\n'),
    );
    const child = spawn('rsync', ['--daemon', '--no-detach', `--config=${conf}`, '--address=127.0.0.1', `--port=${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const daemon = new RsyncDaemon(child, port, dir);
    for (let waited = 0; !(await answers(port)); waited += 50) {
      if (child.exitCode !== null || waited > 10_000) {
        daemon.stop();
        throw new Error(`rsync --daemon did not start: ${stderr.trim() || `exit ${child.exitCode}`}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return daemon;
  }

  /** The rsync URL of a file in the module. */
  url(name: string): string {
    return `rsync://127.0.0.1:${this.port}/${RSYNC_MODULE}/${name}`;
  }

  stop(): void {
    process.removeListener('exit', this.stopOnExit);
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
