// Whether two paths name one file: by device and inode when both exist (hard links,
// symbolic links and different spellings alike), else by where they lead (the real path
// of the directory, and the name in it), so a file about to be created is known too.
import fs from 'node:fs';
import path from 'node:path';

function place(p: string): string {
  const abs = path.resolve(p);
  let dir: string;
  try {
    dir = fs.realpathSync(path.dirname(abs));
  } catch {
    dir = path.dirname(abs);
  }
  return path.join(dir, path.basename(abs));
}

export function sameFile(a: string, b: string): boolean {
  let sa: fs.Stats | null = null;
  let sb: fs.Stats | null = null;
  try {
    sa = fs.statSync(a);
  } catch {
    /* absent, or not reachable: compared by place */
  }
  try {
    sb = fs.statSync(b);
  } catch {
    /* the same */
  }
  if (sa && sb) return sa.dev === sb.dev && sa.ino === sb.ino;
  return place(a) === place(b);
}
