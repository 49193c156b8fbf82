// Who uses a destination's base volume in this process. The volume lock is per process
// (a process never waits for itself), but a peer daemon serves several connections at
// once: a restore reading the base (protect.export) and a shipper's fold writing it must
// not overlap there either. A fold finding the base claimed waits for the next append; a
// restore waits for the fold.
import path from 'node:path';
import { BusyError } from '../core/errors.js';

const claimed = new Set<string>();

/** Claims the base at `file` for this process's caller; throws BusyError when another caller here holds it. Returns the release. */
export function claimBase(file: string): () => void {
  const key = path.resolve(file);
  if (claimed.has(key)) throw new BusyError(`${file}: the base volume is in use by another request of this process`, 'wait for it to finish');
  claimed.add(key);
  let released = false;
  return () => {
    if (!released) claimed.delete(key);
    released = true;
  };
}
