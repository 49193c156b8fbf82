// Compressed mirror records: through a real peer daemon the wire bytes fall for
// compressible blocks and the replica is exact; a destination that predates compression
// (it does not accept the offer) and a source that does not offer it still mirror, raw;
// a damaged compressed record is refused and the destination left as it was.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, finished, spawnCli, listeningPort } from '../support/cli.js';
import { mutate, rng, tempDir } from '../support/images.js';
import { makeToken } from '../peer/support.js';
import { Volume } from '../../src/volume/volume.js';
import { localDestination, MirrorState, sendMirror, type MirrorChannel, type MirrorResult } from '../../src/mirror/index.js';
import { imageSha } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB
const root = tempDir('imgstream-mirror-zstd-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (f: string) => path.join(root, f);
let token = '';

beforeAll(() => {
  token = makeToken(root);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Blocks like a file system's: a third random, the rest text and zeros. */
function compressibleImage(blocks: number, seed: number): Buffer {
  const r = rng(seed);
  const img = Buffer.alloc(blocks * BS);
  for (let b = 0; b < blocks; b++) {
    const x = r();
    const blk = img.subarray(b * BS, (b + 1) * BS);
    if (x < 0.33) for (let k = 0; k < BS; k += 4) blk.writeUInt32LE(Math.floor(r() * 4294967296), k);
    else if (x < 0.9) blk.write(`block ${b} of a file: ${'the quick brown fox jumps over the lazy dog '.repeat(100)}`.slice(0, BS));
  }
  return img;
}

/** sha256 of the disk at REF, read here as `volume export` reads it (oracle.ts). */
const active = (ref: string): Promise<string> => imageSha(ref, env);

async function daemon(dir: string) {
  fs.mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const done = finished(child, 120_000);
  const port = await listeningPort(child, done);
  return { port, stop: async () => (child.kill('SIGTERM'), await done) };
}

async function inProcess(src: string, dest: string, opts: { compress: 'zstd' | 'none'; destCompress?: boolean; tamper?: (msg: Record<string, unknown>, payload?: Buffer) => void }): Promise<MirrorResult> {
  const vol = Volume.open(src, { write: true, mirror: true });
  const d = localDestination(dest, undefined, { compress: opts.destCompress });
  const tamper = opts.tamper;
  const ch: MirrorChannel = tamper
    ? { ...d.channel, send: (msg, payload, crc, owned) => (tamper(msg, payload), d.channel.send(msg, payload, crc, owned)), receive: () => d.channel.receive(), close: () => d.channel.close(), bytesSent: 0 }
    : d.channel;
  try {
    return await sendMirror(vol, ch, { destination: dest, name: path.basename(dest), op: 'mirror.update', state: new MirrorState(at('engine-state.json')), compress: opts.compress });
  } finally {
    d.channel.close();
    await d.settled;
    vol.close();
  }
}

describe('compressed mirror records', () => {
  it('through a peer daemon: fewer wire bytes for compressible blocks, an exact replica', async () => {
    const img = compressibleImage(BLOCKS, 3);
    fs.writeFileSync(at('img'), img);
    await setupOk(['volume', 'create', at('src.vol'), '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', at('src.vol'), '--from', at('img')], { env });
    const d = await daemon(at('peer'));
    try {
      const peer = (name: string) => [`--to`, `peer://127.0.0.1:${d.port}/${name}`, '--token-file', token, '--plain', '--json'];
      type R = { bytes: number; dataBytes: number; compression: string; blocks: number };
      const raw = cliJson<R>(['mirror', 'update', at('src.vol'), ...peer('raw'), '--compress', 'none'], { env });
      const z = cliJson<R>(['mirror', 'update', at('src.vol'), ...peer('z')], { env });
      expect(raw.compression).toBe('none');
      expect(z.compression).toBe('zstd');
      expect(z.blocks).toBe(raw.blocks);
      expect(raw.bytes).toBeGreaterThan(raw.dataBytes);
      expect(z.bytes).toBeLessThan(raw.bytes * 0.6);
      const want = await active(at('src.vol'));
      expect(await active(path.join(at('peer'), 'z'))).toBe(want);
      expect(await active(path.join(at('peer'), 'raw'))).toBe(want);
      // an incremental, compressed too
      mutate(img, BS, 200, 4);
      for (let b = 0; b < BLOCKS; b += 7) img.write(`changed ${b} `.repeat(300).slice(0, BS), b * BS);
      fs.writeFileSync(at('img'), img);
      await setupOk(['volume', 'import', at('src.vol'), '--from', at('img')], { env });
      const raw2 = cliJson<R>(['mirror', 'update', at('src.vol'), ...peer('raw'), '--compress', 'none'], { env });
      const z2 = cliJson<R>(['mirror', 'update', at('src.vol'), ...peer('z')], { env });
      expect(z2.blocks).toBe(raw2.blocks);
      expect(z2.bytes).toBeLessThan(raw2.bytes * 0.6);
      expect(await active(path.join(at('peer'), 'z'))).toBe(await active(at('src.vol')));
      const status = cliJson<{ relationships: Array<{ destination: string; recent: Array<{ compression: string }> }> }>(['mirror', 'status', at('src.vol'), '--json'], { env });
      expect(status.relationships.find((r) => r.destination.endsWith('/z'))!.recent.map((t) => t.compression)).toEqual(['zstd', 'zstd']);
      // the sender killed -9 mid-transfer: the mirror is not there yet, and the next update resumes
      const child = spawnCli(['mirror', 'update', at('src.vol'), ...peer('killed'), '--limit-rate', '1M'], { env });
      const ended = finished(child, 60_000);
      const resumeFile = path.join(at('peer'), '.killed.mirror-transfer');
      const until = Date.now() + 20_000;
      while (!fs.existsSync(resumeFile) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGKILL');
      expect((await ended).signal).toBe('SIGKILL');
      expect(fs.existsSync(path.join(at('peer'), 'killed'))).toBe(false);
      const resumed = cliJson<{ transfers: Array<{ resumedRecords: number; compression: string }> }>(['mirror', 'update', at('src.vol'), ...peer('killed')], { env });
      expect(resumed.transfers[0].resumedRecords).toBeGreaterThan(0);
      expect(resumed.transfers[0].compression).toBe('zstd');
      expect(await active(path.join(at('peer'), 'killed'))).toBe(await active(at('src.vol')));
      // the daemon logs the killed sender as the network fault it is, not as damage: the
      // connection ended, or was reset (the kernel resets it when the killed sender left
      // data unread), depending on when the kill came
      const log = (await d.stop()).stderr;
      expect(log).toMatch(/mirror\.update failed: network: (mirror: the source went away after \d+ records|peer [\d.]+:\d+: connection reset)/);
      expect(log).not.toMatch(/failed: corrupt/);
    } finally {
      await d.stop();
    }
  }, 60_000);

  it('mirrors raw to a destination that predates compression, and from a source that does not offer it', async () => {
    const old = await inProcess(at('src.vol'), at('old-dest.vol'), { compress: 'zstd', destCompress: false });
    expect(old.compression).toBe('none');
    const none = await inProcess(at('src.vol'), at('none-dest.vol'), { compress: 'none' });
    expect(none.compression).toBe('none');
    const z = await inProcess(at('src.vol'), at('z-dest.vol'), { compress: 'zstd' });
    expect(z.compression).toBe('zstd');
    expect(z.bytes).toBeLessThan(old.bytes * 0.6);
    const want = await active(at('src.vol'));
    for (const v of ['old-dest.vol', 'none-dest.vol', 'z-dest.vol']) expect(await active(at(v)), v).toBe(want);
  });

  it('refuses a damaged compressed record and leaves the destination as it was', async () => {
    let hit = 0;
    const tamper = (msg: Record<string, unknown>, payload?: Buffer) => {
      if (msg.enc === 'zstd' && payload && hit++ === 1) payload[Math.floor(payload.length / 2)] ^= 0x40;
    };
    await expect(inProcess(at('src.vol'), at('bad-dest.vol'), { compress: 'zstd', tamper })).rejects.toMatchObject({ code: 'corrupt' });
    expect(hit).toBeGreaterThan(1);
    expect(fs.existsSync(at('bad-dest.vol'))).toBe(false);
  });
});
