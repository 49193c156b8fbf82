// The files a mirror destination keeps beside its volume NAME while a transfer is under
// way (receiver.ts): `.NAME.mirror-new`, the volume a first transfer builds (linked into
// place after its CP); `.NAME.mirror-stage`, blocks for the switching CP's journal;
// `.NAME.mirror-transfer`, how far the transfer got (to resume). What they hold when a
// transfer stopped, and dropping them (`mirror abandon`).
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { BusyError } from '../core/errors.js';
import { Volume } from '../volume/volume.js';
import { VolumeLock } from '../volume/volume-lock.js';

export function sidePaths(volPath: string) {
  const dir = path.dirname(volPath);
  // `.NAME.` unless that would pass the 255-byte name limit: then a hash of NAME, the same every run
  const long = `.${path.basename(volPath)}.`;
  const base = Buffer.byteLength(long) + 16 <= 255 ? long : `.imgstream-${createHash('sha256').update(path.basename(volPath)).digest('hex').slice(0, 16)}.`;
  return {
    fresh: path.join(dir, `${base}mirror-new`),
    resume: path.join(dir, `${base}mirror-transfer`),
    stage: path.join(dir, `${base}mirror-stage`),
  };
}

/** Finishes a first transfer interrupted between its CP and the link into place. */
export function settleFresh(volPath: string): void {
  const { fresh, resume } = sidePaths(volPath);
  if (fs.existsSync(volPath) || !fs.existsSync(fresh)) return;
  let committed = false;
  try {
    const v = Volume.open(fresh, { write: false });
    committed = v.rootRecord.generation > 1 && v.mirrorFlags.mirror;
    v.close();
  } catch {
    committed = false;
  }
  if (!committed) return;
  fs.linkSync(fresh, volPath);
  fs.rmSync(fresh, { force: true });
  fs.rmSync(resume, { force: true });
}

/**
 * What a stopped transfer keeps beside the destination to resume from: the volume being
 * built by a first transfer (`.NAME.mirror-new`), the blocks staged for the final CP
 * (`.NAME.mirror-stage`) and how far it got (`.NAME.mirror-transfer`); bytes as allocated
 * on disk. Blocks a later transfer already wrote into an existing mirror's free space are
 * in the volume file and not counted.
 */
export function partialFiles(volPath: string): { files: string[]; bytes: number } {
  const sides = sidePaths(volPath);
  const files: string[] = [];
  let bytes = 0;
  for (const f of [fs.existsSync(volPath) ? null : sides.fresh, sides.stage, sides.resume]) {
    if (!f) continue;
    try {
      const st = fs.statSync(f);
      files.push(path.basename(f));
      bytes += st.blocks * 512;
    } catch {
      /* absent */
    }
  }
  return { files, bytes };
}

/**
 * Drops what a stopped transfer kept (`mirror abandon`): the next update starts a new
 * transfer. A first transfer that committed but was not linked into place yet is finished
 * instead (it is the mirror). The bytes freed.
 */
export function abandonPartial(volPath: string): { freedBytes: number; files: string[] } {
  settleFresh(volPath);
  const sidesNow = sidePaths(volPath);
  const target = fs.existsSync(volPath) ? volPath : sidesNow.fresh;
  // a transfer under way holds the volume it writes: its files are not ours to drop
  if (fs.existsSync(target) && VolumeLock.holder(target)) throw new BusyError(`${path.basename(volPath)}: a transfer (or another process) is using the destination now`, 'stop it first (mirror start exits on SIGTERM), then abandon');
  const kept = partialFiles(volPath);
  const sides = sidePaths(volPath);
  fs.rmSync(sides.resume, { force: true }); // first: a half-removed partial is never resumed
  fs.rmSync(sides.stage, { force: true });
  if (!fs.existsSync(volPath)) fs.rmSync(sides.fresh, { force: true });
  return { freedBytes: kept.bytes, files: kept.files };
}

