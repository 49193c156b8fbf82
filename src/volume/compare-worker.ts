// Worker thread: compares chunks of an image file with what the volume's disk holds
// (planChunk), for an import on the main thread, which gives it every other chunk. It
// reads both files through the main thread's descriptors (one process, one table).
// Answers with the plan; the changed blocks' contents are in the chunk's slot, shared memory.
import { parentPort, workerData } from 'node:worker_threads';
import { fileFetch, planChunk, preadFully, SEGMENT_BYTES, type CompareJob, type CompareReply, type CompareSetup, type DiskReader } from './image-compare.js';

const { imageFd, volumeFd, blockSize: bs, dataStart } = workerData as CompareSetup;

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
const scratch = Buffer.allocUnsafeSlow(Math.max(bs, SEGMENT_BYTES));
const seg = Buffer.allocUnsafeSlow(Math.max(bs, SEGMENT_BYTES));
const readImage = (position: number, buf: Buffer) => reading('image', () => preadFully(imageFd, buf, position));

/** The slots' memory, shared with the main thread, by slot. */
const slots = new Map<number, { olds: Float64Array; out: Buffer }>();

parentPort!.on('message', (job: CompareJob) => {
  let reply: CompareReply;
  try {
    if (job.memory) slots.set(job.slot, { olds: new Float64Array(job.memory.olds), out: Buffer.from(job.memory.out) });
    const { olds, out } = slots.get(job.slot)!;
    reply = { id: job.id, plan: planChunk(disk, olds, job.n, scratch, fileFetch(readImage, seg, bs, job.pos, job.bytes), out) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { side?: 'image' | 'volume' };
    reply = { id: job.id, error: { message: e.message, code: e.code, side: e.side ?? 'volume' } };
  }
  parentPort!.postMessage(reply);
});
