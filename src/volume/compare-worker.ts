// Worker thread: compares chunks of an image file with what the volume's disk holds
// (planChunk), for an import on the main thread, which gives it every other chunk. It
// reads both files through the main thread's descriptors (one process, one table).
// Answers with the plan and the changed blocks' contents, packed.
import { parentPort, workerData } from 'node:worker_threads';
import { fileFetch, planChunk, preadFully, SEGMENT_BYTES, type CompareJob, type CompareReply, type CompareSetup, type DiskReader, type Frame } from './image-compare.js';

const { imageFd, volumeFd, blockSize: bs, dataStart, chunkBytes } = workerData as CompareSetup;

/** Tags a failed read with the file it was on, for the main thread's message. */
function reading<T>(side: 'image' | 'volume', read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw Object.assign(err as Error, { side });
  }
}

const disk: DiskReader = {
  blockSize: bs,
  read(buf, vbn) {
    const got = reading('volume', () => preadFully(volumeFd, buf, (dataStart + vbn) * bs));
    buf.fill(0, got); // past the end of a sparse volume file: zeros
  },
};
const frame: Frame = { data: Buffer.allocUnsafeSlow(chunkBytes), olds: new Float64Array(0) };
const scratch = Buffer.allocUnsafeSlow(Math.max(bs, SEGMENT_BYTES));
const seg = Buffer.allocUnsafeSlow(Math.max(bs, SEGMENT_BYTES));
const readImage = (position: number, buf: Buffer) => reading('image', () => preadFully(imageFd, buf, position));

parentPort!.on('message', (job: CompareJob) => {
  let reply: CompareReply;
  const transfer: ArrayBuffer[] = [];
  try {
    frame.olds = job.olds;
    const plan = planChunk(disk, frame, job.n, scratch, fileFetch(readImage, seg, bs, job.pos, job.bytes));
    const blocks = Buffer.allocUnsafeSlow(plan.changed.length * bs);
    plan.changed.forEach((k, i) => frame.data.copy(blocks, i * bs, k * bs, (k + 1) * bs));
    reply = { id: job.id, plan, blocks: blocks.buffer as ArrayBuffer };
    transfer.push(reply.blocks);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { side?: 'image' | 'volume' };
    reply = { id: job.id, error: { message: e.message, code: e.code, side: e.side ?? 'volume' } };
  }
  parentPort!.postMessage(reply, transfer);
});
