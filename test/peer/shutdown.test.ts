// A daemon stopping (servePeer's signal, SIGTERM in the CLI) with connections open, in this
// process: every conversation is interrupted where it is and told, through the protocol's
// error message, that the daemon is shutting down (code network): a transfer coming in
// (stream.put: its temporary file goes), one going out (stream.get), a connection idle
// before its request; a transfer that completed meanwhile is still confirmed; the daemon
// ends at once, and a service that ignores the signal only delays it by the grace period.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectPeer, streamGetService, streamPutService, type PeerChannel, type PeerMessage, type PeerService } from '../../src/peer/index.js';
import { makeToken, startInProcess, waitFor } from './support.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-peer-stop-'));
const dataDir = path.join(root, 'data');
fs.mkdirSync(dataDir);
const token = makeToken(root);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

let finishedAfterStop = false;
const services = new Map<string, PeerService>([
  // stores any bytes: the transfer, not the stream format, is under test
  ['stream.put', streamPutService({ validate: async (bytes) => { for await (const b of bytes) void b; } })],
  ['stream.get', streamGetService],
  // a transfer whose last step is under way when the daemon stops: it completes and says so
  [
    'test.finishing',
    async (ch, _hello, ctx) => {
      await ch.send({ type: 'ready' });
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      await new Promise((r) => setTimeout(r, 50)); // its fsync, say
      finishedAfterStop = true;
      await ch.send({ type: 'done' });
    },
  ],
  // does not look at the signal nor at its connection for a long while
  [
    'test.deaf',
    async (ch) => {
      await ch.send({ type: 'ready' });
      await new Promise((r) => setTimeout(r, 8000));
    },
  ],
]);

const stopAt = async () => startInProcess({ root: dataDir, tokenFile: token, plain: true, services });

async function open(port: number, hello: Record<string, unknown> | null): Promise<PeerChannel> {
  const ch = await connectPeer(`peer://127.0.0.1:${port}`, { tokenFile: token, plain: true });
  if (hello) await ch.send(hello);
  return ch;
}

/** Messages until an error message (returned) or the end; fails on anything else than `allowed` types. */
async function untilError(ch: PeerChannel, allowed: string[]): Promise<{ error: Record<string, unknown> | null; seen: PeerMessage[] }> {
  const seen: PeerMessage[] = [];
  for (;;) {
    const m = await ch.receive();
    if (m === null) return { error: null, seen };
    if (m.msg.error) return { error: m.msg.error as Record<string, unknown>, seen };
    expect(allowed, JSON.stringify(m.msg)).toContain(m.msg.type);
    seen.push(m);
  }
}

const SHUTTING_DOWN = { code: 'network', message: 'the daemon is shutting down', hint: 'run it again once the daemon is back' };

describe('a peer daemon that stops', () => {
  it('interrupts an upload, a download and an idle connection at once, tells each client, and leaves no temporary file', async () => {
    fs.writeFileSync(path.join(dataDir, 'big'), Buffer.alloc(48 << 20, 7));
    const d = await stopAt();
    const put = await open(d.info.port, { op: 'stream.put', name: 'up', force: false });
    expect((await put.receive())?.msg).toEqual({ type: 'ready' });
    await put.send({ type: 'data' }, Buffer.alloc(1 << 20, 1));
    await waitFor(() => fs.readdirSync(dataDir).some((f) => f.startsWith('.up.partial-')), 'the upload to start');
    const get = await open(d.info.port, { op: 'stream.get', name: 'big' });
    const header = await get.receive();
    expect(header?.msg).toEqual({ type: 'stream', bytes: 48 << 20 });
    expect((await get.receive())?.msg).toEqual({ type: 'data' }); // under way, read slowly from here
    const idle = await open(d.info.port, null);

    const t0 = Date.now();
    await d.stop();
    expect(Date.now() - t0, 'the daemon waited for its transfers').toBeLessThan(1500);

    const up = await untilError(put, []);
    expect(up.error).toEqual(SHUTTING_DOWN);
    const down = await untilError(get, ['data']);
    expect(down.error).toEqual(SHUTTING_DOWN);
    expect(down.seen.length, 'the download was cut short').toBeLessThan(46);
    expect((await untilError(idle, [])).error).toEqual(SHUTTING_DOWN);
    for (const ch of [put, get, idle]) expect(await ch.receive().catch(() => null)).toBeNull(); // and the connection closed
    expect(fs.readdirSync(dataDir)).toEqual(['big']);
    expect(d.logs.some((l) => /stream\.put failed: network: the daemon is shutting down$/.test(l))).toBe(true);
    expect(d.logs.some((l) => /stream\.get failed: network: the daemon is shutting down$/.test(l))).toBe(true);
    expect(d.logs.some((l) => /closed: the daemon is shutting down$/.test(l))).toBe(true);
  });

  it('still confirms a transfer that completes as it stops', async () => {
    const d = await stopAt();
    const ch = await open(d.info.port, { op: 'test.finishing' });
    expect((await ch.receive())?.msg).toEqual({ type: 'ready' });
    await d.stop();
    expect(finishedAfterStop).toBe(true);
    expect((await ch.receive())?.msg).toEqual({ type: 'done' });
    await ch.close();
  });

  it('tells the client of a service that ignores the signal too, and cuts it after the grace period', async () => {
    const d = await stopAt();
    const ch = await open(d.info.port, { op: 'test.deaf' });
    expect((await ch.receive())?.msg).toEqual({ type: 'ready' });
    const t0 = Date.now();
    await d.stop();
    expect(Date.now() - t0, 'the grace period bounds the wait: the service is not waited for').toBeLessThan(7000);
    expect((await untilError(ch, [])).error).toEqual(SHUTTING_DOWN);
  });
});
