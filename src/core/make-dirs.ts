// mkdir -p, one level at a time. Node's recursive mkdir never returns on some paths (under
// /proc, mkdir of a missing name answers ENOENT, of its existing parent EEXIST, and it
// retries forever): `demo --dir /proc/foo` spun at 100% CPU. Here the nearest existing
// ancestor is found first (it must be a directory), then each missing level is made.
import fs from 'node:fs';
import path from 'node:path';

/** Makes `dir` and its missing parents; the first one made (as fs.mkdirSync's recursive form returns it), or undefined when `dir` existed. Throws errors as fs does (code ENOTDIR when an ancestor is a file). */
export function makeDirectories(dir: string, mode?: number): string | undefined {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; ) {
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (st !== null) {
      if (!st.isDirectory()) throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), { code: 'ENOTDIR', syscall: 'mkdir', path: at });
      break;
    }
    missing.push(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  missing.reverse();
  for (const d of missing) {
    try {
      fs.mkdirSync(d, mode === undefined ? undefined : { mode });
    } catch (err) {
      // made meanwhile by another process: as good
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.statSync(d).isDirectory()) throw err;
    }
  }
  return missing[0];
}
