// Check: every block reachable from the active root and from each snapshot root is in
// range and set in its plane (so none is free), no block is reachable twice within one
// tree, each plane holds nothing its tree does not reach, the counters in the root
// record agree, and both root slots are examined. Reads map nodes, never data blocks.
import { decodeRootRecord, ROOT_RECORD_BYTES } from '../format/volume-root.js';
import { noProgress, type Progress } from '../core/progress.js';
import { errorOfCode } from '../core/errors.js';
import { workerScript } from '../core/worker-script.js';
import { Volume } from './volume.js';
import { PLANE_ACTIVE } from './layout.js';
import { SparseBitmap } from './sparse-bitmap.js';

export interface TreeReport {
  name: string;
  mapRoot: number;
  mapNodes: number;
  dataBlocks: number;
  planeBlocks: number;
  problems: string[];
  skipped?: string;
}

/** What the check's worker thread (check-worker.ts) answers. */
export type CheckReply = { report: CheckReport } | { error: { code: string | null; message: string; hint?: string } };

export interface CheckReport {
  ok: boolean;
  path: string;
  generation: number;
  rootSlots: Array<{ slot: number; valid: boolean; generation?: number; reason?: string }>;
  trees: TreeReport[];
  problems: string[];
  /** A restore into the volume stopped while it rewrote the active disk in place: its root and snapshots are checked, its active disk (map and data part old, part new) is not. */
  restoreUnfinished: boolean;
}

const MAX_LISTED = 20;

function checkTree(vol: Volume, name: string, plane: number, mapRoot: number, mapped: number | null): TreeReport {
  const rep: TreeReport = { name, mapRoot, mapNodes: 0, dataBlocks: 0, planeBlocks: vol.countPlane(plane), problems: [] };
  const seen = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
  const problem = (msg: string) => {
    if (rep.problems.length < MAX_LISTED) rep.problems.push(msg);
    else if (rep.problems.length === MAX_LISTED) rep.problems.push('more problems not listed');
  };
  const visit = (vbn: number, what: string) => {
    if (vbn <= 0 || vbn >= vol.nblocks) return problem(`${what} points outside the volume (VBN ${vbn})`);
    if (seen.has(vbn)) problem(`VBN ${vbn} is referenced twice (${what})`);
    seen.add(vbn);
    if (!vol.testBit(plane, vbn)) problem(`${what} at VBN ${vbn} is not in the ${name} plane (it would be free)`);
  };
  try {
    const map = vol.mapOf(name === 'active' ? undefined : name);
    if (map.root !== mapRoot) problem('map root differs from the recorded one');
    map.walk(
      (vbn, level) => {
        rep.mapNodes++;
        visit(vbn, `map node (level ${level})`);
      },
      (lbn, vbn) => {
        rep.dataBlocks++;
        if (lbn >= vol.logicalBlocks) problem(`logical block ${lbn} is beyond the disk size`);
        visit(vbn, `block of LBN ${lbn}`);
      },
    );
  } catch (err) {
    problem(`the map cannot be read: ${(err as Error).message}`);
  }
  const reachable = rep.mapNodes + rep.dataBlocks;
  if (rep.planeBlocks !== reachable) problem(`the ${name} plane holds ${rep.planeBlocks} blocks but ${reachable} are reachable (${rep.planeBlocks - reachable} leaked)`);
  if (mapped !== null && mapped !== rep.dataBlocks) problem(`the root record counts ${mapped} mapped blocks, the map holds ${rep.dataBlocks}`);
  return rep;
}

export function checkVolume(vol: Volume, progress: Progress = noProgress): CheckReport {
  const root = vol.rootRecord;
  const report: CheckReport = { ok: true, path: vol.path, generation: root.generation, rootSlots: [], trees: [], problems: [], restoreUnfinished: vol.restoreUnfinished };
  const bs = vol.blockSize;
  for (const slot of [0, 1]) {
    const b = Buffer.alloc(ROOT_RECORD_BYTES);
    vol.file.read(b, slot * bs);
    const r = decodeRootRecord(b);
    report.rootSlots.push(r.ok ? { slot, valid: true, generation: r.record.generation } : { slot, valid: false, reason: r.reason });
  }
  // one torn slot is what a crash during a root write leaves; the other must be the current one
  if (!report.rootSlots.some((s) => s.valid && s.generation === root.generation)) report.problems.push('no root slot holds the current generation');
  for (const slot of vol.damagedSnapshotSlots) report.problems.push(`snapshot table entry ${slot} is damaged: its snapshot cannot be read (imgstream volume check --drop-damaged-snapshots drops it, so the volume can be written again)`);
  const snaps = vol.snapshots();
  progress.start('checking', snaps.length + 1, 'blocks');
  // a restore stopped while it rewrote the active disk in place: its map blocks may hold the new data already (the rerun installs a new map)
  const active = vol.restoreUnfinished
    ? { name: 'active', mapRoot: root.mapRoot, mapNodes: 0, dataBlocks: 0, planeBlocks: vol.countPlane(PLANE_ACTIVE), problems: [], skipped: 'a restore into it stopped while it rewrote the active disk in place: part old, part new until it is run again' }
    : checkTree(vol, 'active', PLANE_ACTIVE, root.mapRoot, root.mappedBlocks);
  if (active.planeBlocks !== root.usedBlocks) active.problems.push(`the root record counts ${root.usedBlocks} blocks in the active plane, it holds ${active.planeBlocks}`);
  report.trees.push(active);
  progress.update(1);
  snaps.forEach((s, i) => {
    if (s.shadow && s.reusedBlocks > 0) {
      report.trees.push({ name: s.name, mapRoot: s.mapRoot, mapNodes: 0, dataBlocks: 0, planeBlocks: vol.countPlane(vol.layout.snapshotPlane(s.slot)), problems: [], skipped: `shadow snapshot with ${s.reusedBlocks} blocks reused: no longer a consistent image` });
    } else {
      report.trees.push(checkTree(vol, s.name, vol.layout.snapshotPlane(s.slot), s.mapRoot, s.mappedBlocks));
    }
    progress.update(i + 2);
  });
  progress.stop();
  report.ok = report.problems.length === 0 && report.trees.every((t) => t.problems.length === 0);
  return report;
}

/**
 * checkVolume() of the volume at `path` on a worker thread, so the caller's event loop
 * goes on meanwhile (a check of a large volume reads every map node of every tree). The
 * caller keeps the volume from changing (holds its lock). Without the built worker
 * script (tests run from sources), the check runs here.
 */
export async function checkVolumeOffThread(path: string): Promise<CheckReport> {
  const script = workerScript(new URL('../volume/check-worker.js', import.meta.url));
  if (!script) {
    const vol = Volume.openView(path);
    try {
      return checkVolume(vol);
    } finally {
      vol.close();
    }
  }
  const { Worker } = await import('node:worker_threads');
  const reply = await new Promise<CheckReply>((resolve, reject) => {
    const worker = new Worker(script, { workerData: { path } });
    worker.once('message', (m: CheckReply) => resolve(m));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the volume check's thread exited (${code}) without an answer`)));
  });
  if ('report' in reply) return reply.report;
  const { code, message, hint } = reply.error;
  throw code === null ? new Error(message) : errorOfCode(code, message, hint);
}
