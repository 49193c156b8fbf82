// One contract, every protection destination (STYLE rule 4): the in-memory twin, a local
// directory and a directory on a peer daemon answer a shipper the same way: states,
// refusals (with their codes, leaving the destination as it was), one shipper at a time,
// and what they store rebuilds the model's disk.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IntervalBlock, ProtectDestination } from '../../src/journal/destination-api.js';
import { LocalProtectDestination, MemoryProtectDestination, PeerProtectDestination } from '../../src/journal/destination.js';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { fileSink } from '../../src/volume/image-io.js';
import { CLI_BIN, finished, listeningPort } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { makeToken } from '../peer/support.js';
import { endOf, MODEL_BLOCK_SIZE, MODEL_T0, modelImages, modelSource, seedImage, shippedInterval } from '../support/protect-model.js';

const root = tempDir('imgstream-protect-contract-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
process.env.IMGSTREAM_LOCK_DIR = env.IMGSTREAM_LOCK_DIR;
let daemon: { port: number; stop: () => Promise<unknown> } | null = null;
let token = '';

beforeAll(async () => {
  token = makeToken(root);
  fs.mkdirSync(path.join(root, 'peer'));
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', path.join(root, 'peer'), '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const done = finished(child, 120_000);
  daemon = { port: await listeningPort(child, done), stop: async () => (child.kill('SIGTERM'), await done) };
});
afterAll(async () => {
  await daemon?.stop();
  fs.rmSync(root, { recursive: true, force: true });
});

async function imageOfLocal(dir: string, seq: number): Promise<Buffer> {
  const out = path.join(root, `img-${process.hrtime.bigint()}.raw`);
  await exportProtectedAsOf(dir, new Date(endOf(SEED, seq)).toISOString(), (size) => fileSink(out, { force: false, size }));
  const img = fs.readFileSync(out);
  fs.rmSync(out);
  return img;
}

const SEED = 21;

interface Subject {
  make(): ProtectDestination;
  imageAt(seq: number): Promise<Buffer>;
}

const memory = new MemoryProtectDestination();
const subjects: Record<string, () => Subject> = {
  memory: () => ({ make: () => memory, imageAt: async (seq) => memory.imageAt(seq) }),
  local: () => ({ make: () => new LocalProtectDestination(path.join(root, 'local.cdp')), imageAt: (seq) => imageOfLocal(path.join(root, 'local.cdp'), seq) }),
  peer: () => ({
    make: () => new PeerProtectDestination(`peer://127.0.0.1:${daemon!.port}/remote.cdp`, { tokenFile: token, plain: true }),
    imageAt: (seq) => imageOfLocal(path.join(root, 'peer', 'remote.cdp'), seq),
  }),
};

async function* blocksOf(list: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of list) yield b;
}

describe.each(Object.keys(subjects))('protection destination contract: %s', (name) => {
  it('answers states, refuses what breaks the contract (leaving it as it was), holds one shipper, rebuilds the model', async () => {
    const s = subjects[name]();
    const source = modelSource(SEED);
    let d = s.make();
    expect(await d.open(source, 3_600_000)).toEqual({ seeded: false, intervalSeq: 0, journalTo: 0, window: null, keepMs: 3_600_000, keepWas: null });
    // every refusal ends with the destination reopened (a peer session ends with a failed transfer)
    const refused = async (p: Promise<unknown>, code: string, text: RegExp) => {
      await expect(p).rejects.toMatchObject({ code, message: expect.stringMatching(text) });
      await d.close();
      d = s.make();
      return d.open(source, 3_600_000);
    };
    expect(await refused(d.append(shippedInterval(SEED, 1)), 'invalid-input', /not seeded/)).toMatchObject({ seeded: false });
    expect(await d.seed(seedImage(SEED))).toEqual({ seeded: true, intervalSeq: 0, journalTo: 0, window: { start: MODEL_T0, end: MODEL_T0 }, keepMs: 3_600_000, keepWas: null });
    expect(await refused(d.seed(seedImage(SEED)), 'invalid-input', /already seeded/)).toMatchObject({ intervalSeq: 0 });
    for (let seq = 1; seq <= 4; seq++) expect((await d.append(shippedInterval(SEED, seq))).intervalSeq).toBe(seq);
    const at4 = { seeded: true, intervalSeq: 4, journalTo: 40, window: { start: MODEL_T0, end: endOf(SEED, 4) }, keepMs: 3_600_000, keepWas: null };
    expect(await refused(d.append(shippedInterval(SEED, 6)), 'invalid-input', /interval 6 does not follow interval 4/)).toEqual(at4);
    const disordered = { ...shippedInterval(SEED, 5), blockCount: 2, blocks: blocksOf([{ lbn: 9, data: null }, { lbn: 3, data: null }]) };
    expect(await refused(d.append(disordered), 'invalid-input', /block 3 is out of order/)).toEqual(at4);
    const miscounted = { ...shippedInterval(SEED, 5), blockCount: 3, blocks: blocksOf([{ lbn: 1, data: Buffer.alloc(MODEL_BLOCK_SIZE, 7) }]) };
    expect(await refused(d.append(miscounted), 'invalid-input', /1 blocks, but its count says 3/)).toEqual(at4);
    const short = { ...shippedInterval(SEED, 5), blockCount: 1, blocks: blocksOf([{ lbn: 1, data: Buffer.alloc(100) }]) };
    expect(await refused(d.append(short), 'invalid-input', /has 100 bytes, not 4096/)).toEqual(at4);
    // one shipper at a time
    await expect(s.make().open(source, 3_600_000)).rejects.toMatchObject({ code: 'busy' });
    expect((await d.append(shippedInterval(SEED, 5))).intervalSeq).toBe(5);
    await d.close();
    // another volume, another geometry: refused; the same one resumes where it was
    await expect(s.make().open(modelSource(SEED + 1), 3_600_000)).rejects.toMatchObject({ code: 'invalid-input', message: expect.stringMatching(/protects volume/) });
    await expect(s.make().open({ ...source, logicalSize: source.logicalSize * 2 }, 3_600_000)).rejects.toMatchObject({ code: 'invalid-input' });
    d = s.make();
    expect(await d.open(source, 3_600_000)).toEqual({ seeded: true, intervalSeq: 5, journalTo: 50, window: { start: MODEL_T0, end: endOf(SEED, 5) }, keepMs: 3_600_000, keepWas: null });
    await d.close();
    // no retention given: the destination keeps its own; a new one is said with the old
    d = s.make();
    expect(await d.open(source, null)).toMatchObject({ keepMs: 3_600_000, keepWas: null });
    await d.close();
    d = s.make();
    expect(await d.open(source, 7_200_000)).toMatchObject({ keepMs: 7_200_000, keepWas: 3_600_000 });
    await d.close();
    const model = modelImages(SEED, 5);
    for (const seq of [0, 3, 5]) expect((await s.imageAt(seq)).equals(model[seq]), `point ${seq}`).toBe(true);
  }, 30_000);
});
