// Worker thread: checkVolume() of the volume at workerData.path, opened as a read-only
// view (the thread that starts it holds the volume's lock meanwhile), for a caller whose
// event loop must go on (a peer daemon scrubbing a protection destination's base while
// it serves other sessions). Answers once: the report, or the error as code, message, hint.
import { parentPort, workerData } from 'node:worker_threads';
import { ImgstreamError } from '../core/errors.js';
import { checkVolume, type CheckReply } from './check.js';
import { Volume } from './volume.js';

let reply: CheckReply;
try {
  const vol = Volume.openView((workerData as { path: string }).path);
  try {
    reply = { report: checkVolume(vol) };
  } finally {
    vol.close();
  }
} catch (err) {
  const e = err as Error;
  reply = { error: { code: err instanceof ImgstreamError ? err.code : null, message: e.message, ...(err instanceof ImgstreamError && err.hint ? { hint: err.hint } : {}) } };
}
parentPort!.postMessage(reply);
