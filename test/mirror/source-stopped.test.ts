// A replica pull whose source stops part way: a peer daemon sending it (replicate.pull)
// that shuts down refuses its next record and says why, as its channel does
// (FramedChannel.interrupt). The puller exits 12 with the daemon's reason and hint, not
// as a refusal of the data (4); the replica keeps its previous state, and the next pull
// converges.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { NetworkError } from '../../src/core/errors.js';
import { channelPair, MirrorState, sendMirror, type MirrorChannel } from '../../src/mirror/index.js';
import { receiveReplica } from '../../src/mirror/run.js';
import { Volume } from '../../src/volume/volume.js';
import { exportImage } from '../../src/volume/export.js';
import { exportToBuffer, randomImage, tempDir } from '../support/images.js';

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BS = 4096;
const BLOCKS = 1024;

/** The daemon's side of the channel once it is shutting down after `records` records: data refused, messages without one still sent. */
function stoppingAfter(ch: MirrorChannel, records: number): MirrorChannel {
  let sent = 0;
  return {
    async send(msg, payload, crc, owned) {
      if (payload && typeof msg.rec === 'number' && sent++ >= records) throw new NetworkError('the daemon is shutting down', 'run it again once the daemon is back');
      return ch.send(msg, payload, crc, owned);
    },
    receive: () => ch.receive(),
    close: () => ch.close(),
    get bytesSent() {
      return ch.bytesSent;
    },
  };
}

async function pull(src: string, replica: string, stopAfter: number | null): Promise<unknown> {
  const [daemonSide, pullerSide] = channelPair();
  const received = receiveReplica(replica, pullerSide, 'peer://127.0.0.1:1/src.vol').then(
    () => null,
    (err: unknown) => err,
  );
  const vol = Volume.open(src, { write: false });
  try {
    const ch = stopAfter === null ? daemonSide : stoppingAfter(daemonSide, stopAfter);
    await sendMirror(vol, ch, { destination: 'replica r', name: 'r', op: 'replicate', top: 'm1', state: new MirrorState(path.join(dir, 'state.json')) }).catch(() => undefined);
  } finally {
    vol.close();
    daemonSide.close();
  }
  return received;
}

async function digest(ref: string, snapshot?: string): Promise<string> {
  const vol = Volume.open(ref, { write: false });
  try {
    return createHash('sha256').update(await exportToBuffer((sink) => exportImage(vol, snapshot, sink))).digest('hex');
  } finally {
    vol.close();
  }
}

describe('a replica pull whose source shuts down', () => {
  it('fails with the network exit code and the daemon\'s reason, keeps the replica as it was, and the next pull converges', async () => {
    const src = path.join(dir, 'src.vol');
    const replica = path.join(dir, 'replica.vol');
    Volume.create(src, { size: BLOCKS * BS, blockSize: BS });
    const img = randomImage(BLOCKS, BS, 3, 0.1);
    const vol = Volume.open(src, { write: true });
    try {
      for (let b = 0; b < BLOCKS; b++) vol.writeLogical(b, img.subarray(b * BS, (b + 1) * BS));
      vol.commit();
      vol.createSnapshot('m1', { master: true });
    } finally {
      vol.close();
    }

    const err = await pull(src, replica, 2);
    expect(err).toBeInstanceOf(NetworkError);
    expect((err as NetworkError).exitCode).toBe(12);
    expect((err as NetworkError).message).toBe('mirror: the source stopped: the daemon is shutting down');
    expect((err as NetworkError).hint).toBe('run it again once the daemon is back');
    // a first pull that stopped leaves no replica that could be taken for one
    const left = fs.existsSync(replica) ? Volume.open(replica, { write: false }) : null;
    try {
      expect(left?.snapshots().map((s) => s.name) ?? []).toEqual([]);
    } finally {
      left?.close();
    }

    expect(await pull(src, replica, null)).toBeNull();
    expect(await digest(replica, 'm1')).toBe(await digest(src, 'm1'));
    expect(await digest(replica)).toBe(await digest(src, 'm1'));
  });
});
