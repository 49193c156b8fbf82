// The peer daemon against hostile and faulty clients, as a real `imgstream serve peer`
// process on 127.0.0.1 (issue 18, section 4): silent connections that never authenticate
// cannot keep a client holding the token out, on plain TCP or TLS, even by the hundred;
// an authenticated client beyond --max-connections is told "busy" (exit 7); a client
// trickling a message byte by byte is dropped by --frame-timeout; an error reaches the
// client once and never names the daemon's paths; an aborted upload to a nested name
// leaves no directory behind.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePeerFrame } from '../../src/format/peer-protocol.js';
import { connectPeer, type PeerChannel, type PeerClientOptions, type PeerMessage } from '../../src/peer/index.js';
import { MIRROR_PROTOCOL } from '../../src/mirror/protocol.js';
import { hideDaemonPaths } from '../../src/peer/daemon-paths.js';
import { runCliAsync } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { hasOpenssl, listTree, makeCert, makeToken, startDaemon, waitFor, type DaemonProcess, type TestCert } from './support.js';

const root = tempDir('imgstream-peer-hard-');
const store = path.join(root, 'store');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const cli = (args: string[]) => runCliAsync(args, { env, timeoutMs: 60_000 });

let token: string;
let cert: TestCert;

beforeAll(() => {
  fs.mkdirSync(store, { recursive: true });
  if (!hasOpenssl) return;
  token = makeToken(root, 'token');
  cert = makeCert(root, 'daemon');
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** `n` TCP connections that connect and then say nothing. */
async function silentConnections(port: number, n: number): Promise<net.Socket[]> {
  const all = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s));
        s.on('error', () => {});
        s.once('error', reject);
        s.resume();
      }),
    ),
  );
  return all;
}

/** Every message until the daemon closes (or the connection fails). */
async function drain(ch: PeerChannel): Promise<PeerMessage[]> {
  const got: PeerMessage[] = [];
  for (;;) {
    try {
      const m = await ch.receive();
      if (m === null) return got;
      got.push(m);
    } catch {
      return got;
    }
  }
}

describe.skipIf(!hasOpenssl)('the peer daemon against hostile clients', () => {
  let d: DaemonProcess;
  let clientOpts: PeerClientOptions;
  beforeAll(async () => {
    d = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', token, '--tls-cert', cert.cert, '--tls-key', cert.key]);
    clientOpts = { tokenFile: token, tls: { fingerprint: cert.fingerprint } };
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('lets a client in past 40, then 140 silent unauthenticated connections (TLS), at once', async () => {
    const flags = ['--token-file', token, '--tls-fingerprint', cert.fingerprint];
    const silent: net.Socket[] = [];
    try {
      for (const n of [40, 100]) {
        silent.push(...(await silentConnections(d.info.port, n)));
        const started = Date.now();
        const r = await cli(['verify', `peer://127.0.0.1:${d.info.port}/nosuch`, ...flags]);
        // not "busy" (7), not a TLS handshake cut short (12): the daemon answers the request itself
        expect(r.stderr).toMatch(/nosuch: no such stream on the peer/);
        expect(r.code).toBe(3);
        expect(Date.now() - started).toBeLessThan(20_000); // a CLI start on a loaded machine; the old code answered at once, but "busy"
      }
      expect(d.stderr()).toMatch(/dropped for a newer connection \(more than 16 waiting to authenticate\)/);
    } finally {
      for (const s of silent) s.destroy();
    }
    expect(d.alive()).toBe(true);
  });

  it('tells an authenticated client beyond --max-connections "busy" (exit 7) over TLS', async () => {
    const busy = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', token, '--tls-cert', cert.cert, '--tls-key', cert.key, '--max-connections', '1']);
    const holder = await connectPeer(`peer://127.0.0.1:${busy.info.port}`, clientOpts);
    try {
      const r = await cli(['verify', `peer://127.0.0.1:${busy.info.port}/nosuch`, '--token-file', token, '--tls-fingerprint', cert.fingerprint]);
      expect(r.code).toBe(7);
      expect(r.stderr.trim()).toMatch(/^imgstream: peer 127\.0\.0\.1:\d+: the daemon is busy: too many connections \(1\) \(try again later\)$/);
      // the holder is served all the same, and once it leaves the next client gets in
      await holder.send({ op: 'stream.get', name: 'nosuch' });
      const [m] = await drain(holder);
      expect((m.msg.error as { code: string }).code).toBe('not-found');
      const next = await connectPeer(`peer://127.0.0.1:${busy.info.port}`, clientOpts);
      await next.close();
    } finally {
      await holder.close();
      await busy.stop();
    }
    await expect(connectPeer(`peer://127.0.0.1:${d.info.port}`, clientOpts).then((c) => c.close())).resolves.toBeUndefined();
  });

  it('drops an authenticated client that trickles a message a byte at a time (--frame-timeout)', async () => {
    const slow = await startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--frame-timeout', '1', '--idle-timeout', '60']);
    try {
      const ch = await connectPeer(`peer://127.0.0.1:${slow.info.port}`, { tokenFile: token, plain: true });
      const frame = encodePeerFrame({ op: 'stream.get', name: 'nosuch' }, null);
      const socket = (ch as unknown as { socket: net.Socket }).socket;
      const started = Date.now();
      let i = 0;
      const trickle = setInterval(() => {
        if (i < frame.head.length && !socket.destroyed) socket.write(frame.head.subarray(i, ++i));
      }, 250);
      try {
        await drain(ch);
      } finally {
        clearInterval(trickle);
      }
      const took = Date.now() - started;
      expect(took).toBeGreaterThan(900);
      expect(took).toBeLessThan(8000);
      expect(i).toBeLessThan(frame.head.length);
      await waitFor(() => /a message took longer than 1 s to arrive/.test(slow.stderr()), 'the daemon to log the frame timeout', 5000);
      // a client that sends whole messages is not affected
      const ok = await connectPeer(`peer://127.0.0.1:${slow.info.port}`, { tokenFile: token, plain: true });
      await new Promise((r) => setTimeout(r, 1500));
      await ok.send({ op: 'stream.get', name: 'nosuch' });
      const [m] = await drain(ok);
      expect((m.msg.error as { code: string }).code).toBe('not-found');
    } finally {
      await slow.stop();
    }
  });

  it('sends a mirror error once, naming the peer name and never the daemon\'s paths', async () => {
    fs.mkdirSync(path.join(store, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(store, 'sub', 'g.vol'), 'not a volume\n');
    const ch = await connectPeer(`peer://127.0.0.1:${d.info.port}`, clientOpts);
    await ch.send({ op: 'mirror.update', name: 'sub/g.vol', protocol: MIRROR_PROTOCOL, volume: {} });
    const got = await drain(ch);
    expect(got).toHaveLength(1);
    const e = got[0].msg.error as { code: string; message: string };
    expect(e.code).toBe('not-a-volume');
    expect(e.message).toBe('sub/g.vol: not an imgstream volume, so not a mirror');
    expect((e as { hint?: string }).hint).toBe('a mirror update creates its destination: give a path that does not exist yet');
    await ch.close();

    // the same through the CLI, a directory in the way: one line, no path of the daemon
    fs.mkdirSync(path.join(store, 'dir'));
    const vol = path.join(root, 'v.vol');
    await setupOk(['volume', 'create', vol, '--size', '1M', '-q'], { env });
    const r = await cli(['mirror', 'update', vol, '--to', `peer://127.0.0.1:${d.info.port}/dir`, '--token-file', token, '--tls-fingerprint', cert.fingerprint]);
    expect(r.code).toBe(5);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/dir: is a directory, not a volume/);
    expect(r.stderr).not.toContain(root);
    expect(r.stderr).not.toContain(fs.realpathSync(store));
    // and to a directory on this machine: the path named once
    const local = await cli(['mirror', 'update', vol, '--to', path.join(store, 'dir')]);
    expect(local.code).toBe(5);
    expect(local.stderr.split(path.join(store, 'dir')).length - 1, local.stderr).toBe(1);
  });

  it('removes the directories an aborted upload to a nested name created, and keeps those that were there', async () => {
    fs.mkdirSync(path.join(store, 'keep'));
    const before = listTree(store);
    for (const name of ['a/b/c.l0', 'keep/x/y/z.l0']) {
      // no stream at all: the daemon refuses it
      const ch = await connectPeer(`peer://127.0.0.1:${d.info.port}`, clientOpts);
      await ch.send({ op: 'stream.put', name });
      expect((await ch.receive())?.msg.type).toBe('ready');
      expect(fs.existsSync(path.join(store, path.dirname(name)))).toBe(true);
      await ch.send({ type: 'data' }, Buffer.alloc(64 << 10, 7));
      const [m] = await drain(ch);
      expect((m.msg.error as { code: string }).code).toBe('not-a-volume');
      await waitFor(() => listTree(store).join() === before.join(), `${name}'s directories to go`, 5000);
      // cut: the client goes away in the middle
      const cut = await connectPeer(`peer://127.0.0.1:${d.info.port}`, clientOpts);
      await cut.send({ op: 'stream.put', name });
      expect((await cut.receive())?.msg.type).toBe('ready');
      await cut.send({ type: 'data' }, Buffer.alloc(100, 1));
      cut.destroy();
      await waitFor(() => listTree(store).join() === before.join(), `${name}'s directories to go after a cut`, 5000);
    }
    expect(listTree(store)).toContain('keep/');
  });
});

describe('hideDaemonPaths', () => {
  it('names files inside the directory as clients do, temporary files by their owner, other paths not at all', () => {
    const roots = ['/srv/img/', '/srv/img'];
    expect(hideDaemonPaths('/srv/img/vm/.m.vol.mirror-new: no space left on device', roots)).toBe('vm/m.vol: no space left on device');
    expect(hideDaemonPaths('/srv/img/.x.l0.partial-4711: EIO', roots)).toBe('x.l0: EIO');
    expect(hideDaemonPaths('cannot list /srv/img', roots)).toBe("cannot list the daemon's directory");
    expect(hideDaemonPaths('lock /var/lock/imgstream/abc.lock (held) and /srv/imgother/x', roots)).toBe('lock (a path on the daemon) (held) and (a path on the daemon)');
    expect(hideDaemonPaths('peer://host:1/a/b: 1/2 done, and/or', roots)).toBe('peer://host:1/a/b: 1/2 done, and/or');
  });
});
