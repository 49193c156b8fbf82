// The one contract every medium passes (STYLE rule 4), run against each medium that can
// be tested without hardware: memory (the twin), a file, a tape directory, a set of tape
// directories small enough that a stream spans three of them, a peer daemon (run in
// this process, over TLS when openssl can make a certificate), and objects on a Ceph
// object gateway (s3://, when the Ceph packages are installed: test/support/ceph-gateway.ts). The daemon's stream.put
// normally parses what arrives as an image stream; this suite writes arbitrary bytes, so
// its daemon stores them unchecked (test/peer checks validation). What is written comes
// back byte for byte at the position finish() named; streams come back in order; an
// aborted stream is never read as a stream; a target that failed stays failed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ImgstreamError } from '../../src/core/errors.js';
import { IoError } from '../../src/core/errors.js';
import { MemoryMedium, fileSource, fileTarget, peerSource, peerTarget, tapeSource, tapeTarget, type MediaPosition, type StreamSource, type StreamTarget } from '../../src/media/index.js';
import { streamGetService, streamPutService, type PeerClientOptions, type PeerService } from '../../src/peer/index.js';
import { hasOpenssl, makeCert, makeToken, startInProcess } from '../peer/support.js';
import { readAll, streamBytes, writeInPieces } from './stream-data.js';
import { s3Source, s3Target } from '../../src/media/s3/index.js';
import { hasCeph, startGateway } from '../support/ceph-gateway.js';

interface MediumUnderTest {
  /** Writes the i-th stream (0-based) appended to this medium. */
  target(i: number): StreamTarget;
  /** Sources that together hold every stream of the medium, in order. */
  sources(): StreamSource[];
  /** A target whose writes fail (a full disk, a full tape). */
  failing?: () => StreamTarget;
  /** Tapes a stream of BIG bytes must span on this medium. */
  tapesPerBigStream?: number;
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-media-contract-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let dirs = 0;
function freshDir(name: string): string {
  const d = path.join(root, `${name}-${dirs++}`);
  fs.mkdirSync(d);
  return d;
}

const MiB = 1 << 20;

// the peer daemons: one storing whatever arrives, one whose disk is full. A daemon that
// fails in the middle of a stream is heard of a few MiB later (what the client sent
// meanwhile sits in socket buffers), at the latest by finish(): test/peer covers that;
// here the full daemon refuses the stream at once, so the first write fails
const peerRoot = path.join(root, 'peer');
fs.mkdirSync(peerRoot);
const drain = async (bytes: AsyncIterable<Buffer>) => {
  for await (const b of bytes) void b;
};
const storeAnything: Map<string, PeerService> = new Map([
  ['stream.put', streamPutService({ validate: drain })],
  ['stream.get', streamGetService],
]);
const diskFull: Map<string, PeerService> = new Map([['stream.put', async () => Promise.reject(new IoError('no space left on the device (test)'))]]);
const peerCert = hasOpenssl ? makeCert(root, 'peer') : null;
const peerToken = makeToken(root, 'peer-token', hasOpenssl ? {} : { contents: 'contract-test-token-0123456789\n' });
const peerDaemon = await startInProcess({ root: peerRoot, tokenFile: peerToken, ...(peerCert ? { tls: { cert: peerCert.cert, key: peerCert.key } } : { plain: true }), services: storeAnything });
const fullDaemon = await startInProcess({ root: peerRoot, tokenFile: peerToken, plain: true, services: diskFull });
afterAll(async () => {
  await peerDaemon.stop();
  await fullDaemon.stop();
});
// the object store: a Ceph gateway with one bucket; each medium under test is a prefix
const gateway = hasCeph ? await startGateway(['contract']) : null;
afterAll(() => gateway?.stop());
if (gateway) for (const [k, v] of Object.entries(gateway.env)) process.env[k] = v;
const s3Opts = { endpoint: gateway?.endpoint, pathStyle: true, readChunk: 1 << 20 }; // several ranged GETs per stream
let prefixes = 0;

const peerClient: PeerClientOptions = { tokenFile: peerToken, ...(peerCert ? { tls: { fingerprint: peerCert.fingerprint } } : { plain: true }) };

/** Write sizes: single bytes, odd sizes around tar's 512 and a record, and a multi-MiB write. */
const WRITE_SIZES = [1, 1, 7, 511, 512, 513, 10240, 65536, 3 * MiB + 123, 1, 100_000, 777_777];
const BIG = WRITE_SIZES.reduce((a, b) => a + b, 0); // about 3.9 MiB
/** Three tapes of this size hold BIG bytes, two do not. */
const SPAN_TAPE_SIZE = 1_600_000;

const media: Array<{ name: string; canFail: boolean; open: () => MediumUnderTest }> = [
  {
    name: 'memory',
    canFail: false, // the in-memory twin has nothing that could fail
    open: () => {
      const m = new MemoryMedium();
      return { target: () => m.target(), sources: () => [m.source()] };
    },
  },
  {
    name: 'file',
    canFail: fs.existsSync('/dev/full'),
    open: () => {
      const dir = freshDir('file');
      const file = (i: number) => path.join(dir, `stream-${String(i).padStart(3, '0')}`);
      return {
        target: (i) => fileTarget(file(i)),
        sources: () =>
          fs
            .readdirSync(dir)
            .filter((n) => /^stream-[0-9]{3}$/.test(n))
            .sort()
            .map((n) => fileSource(path.join(dir, n))),
        failing: () => fileTarget('/dev/full'), // every write: ENOSPC
      };
    },
  },
  {
    name: 'tape directory',
    canFail: true,
    open: () => {
      const dir = freshDir('tape');
      return {
        target: (i) => tapeTarget({ tapes: [dir], streamId: `stream-${i}` }),
        sources: () => [tapeSource({ tapes: [dir] })],
        failing: () => tapeTarget({ tapes: [freshDir('small-tape')], tapeSize: 300_000, streamId: 'too-big' }),
        tapesPerBigStream: 1,
      };
    },
  },
  {
    name: 'tape directories, spanning',
    canFail: true,
    open: () => {
      const set = freshDir('tape-set');
      const tapes = Array.from({ length: 12 }, (_, i) => path.join(set, `t${String(i + 1).padStart(2, '0')}`));
      for (const t of tapes) fs.mkdirSync(t);
      return {
        target: (i) => tapeTarget({ tapes, tapeSize: SPAN_TAPE_SIZE, streamId: `stream-${i}`, label: `contract ${i}` }),
        sources: () => [tapeSource({ tapes })],
        failing: () => tapeTarget({ tapes: [freshDir('small-a'), freshDir('small-b')], tapeSize: 300_000, streamId: 'too-big' }),
        tapesPerBigStream: 3,
      };
    },
  },
  {
    name: 'peer daemon',
    canFail: true,
    open: () => {
      const dir = freshDir('peer/medium');
      const name = (i: number) => `${path.relative(peerRoot, dir)}/stream-${String(i).padStart(3, '0')}`;
      return {
        target: (i) => peerTarget(`peer://127.0.0.1:${peerDaemon.info.port}/${name(i)}`, peerClient),
        sources: () =>
          fs
            .readdirSync(dir)
            .filter((n) => /^stream-[0-9]{3}$/.test(n))
            .sort()
            .map((n) => peerSource(`peer://127.0.0.1:${peerDaemon.info.port}/${path.relative(peerRoot, dir)}/${n}`, peerClient)),
        failing: () => peerTarget(`peer://127.0.0.1:${fullDaemon.info.port}/${name(999)}`, { tokenFile: peerToken, plain: true }),
      };
    },
  },
  ...(gateway
    ? [
        {
          name: 's3 (Ceph object gateway)',
          canFail: true,
          open: (): MediumUnderTest => {
            const prefix = `s3://contract/m${prefixes++}/`;
            return {
              target: (i) => s3Target(`${prefix}stream-${String(i).padStart(3, '0')}`, s3Opts),
              sources: () => [s3Source(prefix, s3Opts)],
              failing: () => s3Target(`s3://no-such-bucket/m${prefixes++}/x`, s3Opts), // the bucket does not exist
            };
          },
        },
      ]
    : []),
];

describe.each(media)('medium contract: $name', ({ open, canFail }) => {
  it('gives back a stream written in writes of every size byte for byte, at the position finish() named', async () => {
    const m = open();
    const data = streamBytes(BIG, 1);
    const t = m.target(0);
    expect(await writeInPieces(t, data, WRITE_SIZES)).toBe(WRITE_SIZES.length);
    const pos = await t.finish();
    const back = await readAll(m.sources());
    expect(back).toHaveLength(1);
    expect(back[0].bytes.length).toBe(data.length);
    expect(back[0].bytes.equals(data)).toBe(true);
    expect(back[0].position).toEqual(pos);
    if (m.tapesPerBigStream !== undefined) expect(pos.tapes).toHaveLength(m.tapesPerBigStream);
  });

  it('gives back streams appended to it in order, an empty one included', async () => {
    const m = open();
    const sizes = [300_000, 0, 1_700_000, 5, BIG];
    const datas = sizes.map((n, i) => streamBytes(n, 100 + i));
    const positions: MediaPosition[] = [];
    for (const [i, d] of datas.entries()) {
      const t = m.target(i);
      await writeInPieces(t, d, [4096, 1, 200_000]);
      positions.push(await t.finish());
    }
    const back = await readAll(m.sources());
    expect(back.map((b) => b.bytes.length)).toEqual(sizes);
    for (const [i, b] of back.entries()) {
      expect(b.bytes.equals(datas[i]), `stream ${i}`).toBe(true);
      expect(b.position).toEqual(positions[i]);
    }
    expect(new Set(positions.map((p) => JSON.stringify(p))).size).toBe(sizes.length);
  });

  it('leaves nothing a reader takes for a stream when a stream is aborted', async () => {
    const m = open();
    const first = streamBytes(100_000, 7);
    const t0 = m.target(0);
    await t0.write(first);
    const pos0 = await t0.finish();

    const t1 = m.target(1);
    await writeInPieces(t1, streamBytes(BIG, 8), [MiB]); // enough to fill tapes on the spanning medium
    await t1.abort();
    await t1.abort(); // twice: still never throws
    let back = await readAll(m.sources());
    expect(back).toHaveLength(1);
    expect(back[0].bytes.equals(first)).toBe(true);
    expect(back[0].position).toEqual(pos0);

    // and the medium takes the next stream as if nothing happened
    const third = streamBytes(50_000, 9);
    const t2 = m.target(2);
    await t2.write(third);
    const pos2 = await t2.finish();
    back = await readAll(m.sources());
    expect(back.map((b) => b.bytes.length)).toEqual([first.length, third.length]);
    expect(back[1].bytes.equals(third)).toBe(true);
    expect(back[1].position).toEqual(pos2);
  });

  it.skipIf(!canFail)('rejects every write and finish() after a write failed', async () => {
    const m = open();
    const t = m.failing!();
    let failure: unknown = null;
    for (let i = 0; i < 64 && !failure; i++) await t.write(streamBytes(256 << 10, i)).catch((err) => (failure = err));
    expect(failure).toBeInstanceOf(ImgstreamError);
    await expect(t.write(Buffer.alloc(1))).rejects.toBeInstanceOf(ImgstreamError);
    await expect(t.finish()).rejects.toBeInstanceOf(ImgstreamError);
    await t.abort();
    expect(await readAll(m.sources())).toEqual([]);
  });
});
