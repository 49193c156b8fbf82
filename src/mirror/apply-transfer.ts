// Applying one transfer's records to a mirror destination (the receiver's part after the
// plan: receiver.ts). A first transfer builds the volume under `.NAME.mirror-new`
// (side-files.ts); the caller links it into place.
//
// Nothing the destination's last CP holds is touched while records arrive: blocks go to
// VBNs that state leaves free, plane blocks to free snapshot slots. A block whose VBN the
// old state still holds (the source freed it, by deleting a snapshot, and reused it) is
// kept in a stage file and goes into the final CP's journal, so it replaces the old
// contents atomically with the switch. The switch is one CP: snapshots the new state
// lacks go, the incoming ones are installed, the active file system becomes the top
// snapshot. A crash before it leaves the previous state; after it, the new one.
//
// What was acknowledged survives a crash of the daemon: the volume and the stage file are
// fsynced before the resume file (`.NAME.mirror-transfer`) says how far the transfer got.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { CorruptError, NetworkError, fromSystemError, InvalidInputError } from '../core/errors.js';
import { applyMapDelta, StreamFormatError } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { WriteBehind } from '../volume/write-behind.js';
import { Volume } from '../volume/volume.js';
import { SparseBitmap } from '../volume/sparse-bitmap.js';
import { OccupancyCursor } from '../volume/occupancy.js';
import { PLANE_ACTIVE } from '../volume/layout.js';
import { decodeRecordIndex, hashChain, recordCrc } from './records.js';
import { RecordInflater } from './record-inflater.js';
import { dropStaleResume, dropUnresumable, readResume, resumeBaseOf, sidePaths, writeResume } from './side-files.js';
import { dataHolds, mapNodeHolds, planeHolds } from './ghost-check.js';
import { identOf, RESUME_LOST, sameSnapshot, type DestinationState, type MirrorChannel, type TransferDone, type TransferPlan } from './protocol.js';

/** JSON with object keys sorted: the same plan hashes the same however it was built. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function planHashOf(plan: TransferPlan): string {
  return createHash('sha256').update(canonical({ ...plan, blocks: 0, bytes: 0 })).digest('hex');
}

/** fdatasync on libuv's threads. */
function datasync(fd: number, file: string): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(fromSystemError(err, file, 'flushing')) : resolve())));
}

/**
 * Receives the records of `plan` after the state `state` was sent, and commits them in one
 * CP. Acknowledges after `ackBytes` of payload or a second.
 */
export async function applyTransfer(volPath: string, ch: MirrorChannel, plan: TransferPlan, state: DestinationState, log: (l: string) => void, ackBytes: number, zstd: boolean): Promise<TransferDone> {
  const sides = sidePaths(volPath);
  const planHash = planHashOf(plan);
  let resume = readResume(sides.resume);
  // a stopped transfer kept here that this plan is not (a copy of the source volume, the
  // same uuid, plans its own): what it kept goes, said as every drop is (the source shows it)
  let discarded: string | undefined;
  // (state.resume is null for one whose records are not in the volume at NAME: describeDestination)
  if (resume && (!state.resume || resume.transferId !== plan.transferId || resume.planHash !== planHash)) {
    if (state.resume) discarded = `dropped the stopped transfer ${resume.transferId} kept at the destination: another transfer begins (${plan.transferId})`;
    resume = null;
  }
  const initial = !state.exists;
  if (initial && !resume && fs.existsSync(sides.fresh)) {
    // a stopped first transfer this one does not resume (another plan): its half-built volume is not built on
    discarded ??= `dropped the stopped transfer kept at the destination (${path.basename(sides.fresh)}): another transfer begins (${plan.transferId})`;
    dropStaleResume(volPath);
  }
  if (discarded) log(`mirror ${path.basename(volPath)}: ${discarded}`);
  if (initial && !fs.existsSync(sides.fresh)) {
    resume = null; // a volume made now holds nothing acknowledged before
    const g = plan.volume;
    Volume.create(sides.fresh, { size: g.logicalSize, blockSize: g.blockSize, nblocks: g.nblocks, maxSnapshots: g.maxSnapshots, uuid: g.uuid });
  }
  const vol = Volume.open(initial ? sides.fresh : volPath, { write: true, mirror: true });
  const writes = new WriteBehind(vol.file, { direct: true });
  let stageFd: number | null = null;
  let committed = false;
  // the resume file records progress of this transfer: a failure keeps it to resume from
  let resumable = !!resume && resume.acked > 0;
  let inFlight: Promise<void> | null = null;
  try {
    if (vol.rootRecord.mapDepth !== plan.volume.mapDepth) throw new InvalidInputError('mirror: unsupported volume geometry');
    const here = new Map(vol.snapshots().map((s) => [s.id, s] as const));
    for (const id of plan.keep) {
      const h = here.get(id);
      const p = plan.snapshots.find((s) => s.id === id);
      if (!h || !p || !sameSnapshot(identOf(h), identOf(p))) throw new InvalidInputError(`mirror: snapshot id ${id} is not the same on both sides`, 'run imgstream mirror resync');
    }
    const incoming = plan.snapshots.filter((s) => plan.incoming.includes(s.id));
    let leaving = vol.snapshots().filter((s) => !plan.keep.includes(s.id));
    // not enough free slots for the new snapshots while the old ones are still here: let
    // the old ones go first, in a CP of their own (a consistent state, if not a source's).
    // Those that are the active file system (its top among them: the newest) hold no blocks
    // of their own and only go, oldest first, as far as their slots are needed.
    if (vol.freeSnapshotSlots().length < incoming.length && !resume) {
      const active = vol.rootRecord.mapRoot;
      let slots = vol.freeSnapshotSlots().length; // a dropped slot is free after the CP
      const drop = (s: SnapshotEntry) => {
        vol.dropSnapshotEntry(s.name);
        slots++;
      };
      for (const s of leaving) if (s.mapRoot !== active) drop(s);
      for (const s of leaving) if (s.mapRoot === active && slots < incoming.length) drop(s);
      vol.commit();
      if (vol.freeSnapshotSlots().length < incoming.length) throw new InvalidInputError(`mirror: ${incoming.length} snapshots arrive and the destination has ${vol.freeSnapshotSlots().length} free slots`);
      leaving = vol.snapshots().filter((s) => !plan.keep.includes(s.id));
    }
    const free = vol.freeSnapshotSlots();
    const slotOf = new Map<number, number>();
    if (resume) for (const [id, slot] of Object.entries(resume.slots)) slotOf.set(Number(id), slot);
    else incoming.forEach((s, i) => slotOf.set(s.id, free[i]));
    for (const s of incoming) if (slotOf.get(s.id) === undefined || !free.includes(slotOf.get(s.id)!)) throw new CorruptError('mirror: the resume state does not fit the volume');
    if (!resume) {
      fs.rmSync(sides.stage, { force: true });
      // (after the CP above that let old snapshots go: the state the records are written beside)
      resume = { transferId: plan.transferId, planHash, acked: 0, chain: hashChain.start(), slots: Object.fromEntries(slotOf), staged: [], stageBytes: 0, base: resumeBaseOf(vol, !initial) };
    }
    stageFd = fs.openSync(sides.stage, 'a+', 0o600);
    fs.ftruncateSync(stageFd, resume.stageBytes); // drop what was written after the last acknowledgement
    const staged = new Map(resume.staged.map((s) => [s.vbn, s.offset] as const));
    const stagedAt = (v: number) => staged.get(v);
    let stageBytes = resume.stageBytes;
    const acked = resume.acked;
    await ch.send({ ready: { resumeFrom: acked, ...(discarded ? { discarded } : {}) } });
    if (acked > 0) log(`mirror ${path.basename(volPath)}: resuming transfer ${plan.transferId} after ${acked} records`);

    const bs = vol.blockSize;
    const inflate = new RecordInflater();
    const written = new Map<number, Set<number>>(incoming.map((s) => [s.id, new Set<number>()]));
    const arrived = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
    const occupied = new OccupancyCursor(vol);
    let chain = hashChain.start();
    let next = 0;
    let sinceAck = 0;
    let lastAck = Date.now();
    let blocks = 0;
    let bytes = 0;
    // An acknowledgement syncs the volume and the stage file, then records how far the
    // transfer got and tells the source. The syncs run on libuv's threads while records
    // keep arriving (one acknowledgement in flight at a time): what is written after a
    // sync started is simply not counted by it.
    let ackedUpTo = acked;
    let ackFailure: unknown = null;
    let savedUpTo = acked;
    const progressPoint = () => ({ acked: next, chain, staged: [...staged].map(([vbn, offset]) => ({ vbn, offset })), stageBytes });
    /** Makes what arrived up to `point` durable and records it in the resume file. */
    const persist = async (point: ReturnType<typeof progressPoint>) => {
      await writes.written(); // the data of the records up to the point
      await datasync(vol.file.fd, vol.file.path);
      await datasync(stageFd!, sides.stage);
      writeResume(volPath, { ...resume!, ...point });
      resumable ||= point.acked > 0;
      savedUpTo = Math.max(savedUpTo, point.acked);
    };
    /**
     * The source went away: keep what arrived (every record before `next` is written
     * whole), so the next update resumes after it, acknowledged or not.
     */
    const keepProgress = async () => {
      while (inFlight) await inFlight;
      if (next > savedUpTo) await persist(progressPoint()).catch(() => undefined); // a failed ack send does not stop it
    };
    const ack = () => {
      const point = progressPoint();
      sinceAck = 0;
      lastAck = Date.now();
      inFlight = (async () => {
        await persist(point);
        await ch.send({ ack: point.acked });
        ackedUpTo = point.acked;
      })()
        .catch((err: unknown) => {
          ackFailure ??= err;
        })
        .finally(() => {
          inFlight = null;
        });
    };
    for (;;) {
      let m: Awaited<ReturnType<MirrorChannel['receive']>>;
      try {
        m = await ch.receive();
      } catch (err) {
        await keepProgress();
        throw err;
      }
      if (!m) {
        await keepProgress();
        throw new NetworkError(`mirror: the source went away after ${next} records`, 'run the update again: it resumes');
      }
      if (m.msg.error) {
        // a source that stopped (a daemon shutting down: network) gave up on nothing in the data
        const e = m.msg.error as { code?: string; message?: string; hint?: string };
        await keepProgress();
        throw e.code === 'network' ? new NetworkError(`mirror: the source stopped: ${e.message}`, e.hint ?? 'run it again: it resumes') : new InvalidInputError(`mirror: the source gave up: ${e.message ?? 'unknown error'}`);
      }
      if (m.msg.end) {
        const end = m.msg.end as { records: number; chain: string };
        if (end.records !== next || end.chain !== chain) throw new CorruptError(`mirror: transfer ${plan.transferId} does not check out (${next} records received, ${end.records} sent)`);
        break;
      }
      const i = m.msg.rec;
      const { crc, length, kind } = m.msg;
      if (i !== next || !m.payload || typeof kind !== 'string' || !Number.isInteger(crc) || !Number.isInteger(length)) throw new CorruptError(`mirror: record ${String(i)} out of order (expected ${next})`);
      const ghost = m.msg.ghost === true;
      if (ghost !== i < acked) throw new CorruptError(`mirror: record ${i} ${ghost ? 'resent as a ghost but never acknowledged' : 'acknowledged before but resent'}`);
      const wire = m.payload;
      let payload = wire;
      let payloadCrc = m.payloadCrc;
      if (m.msg.enc !== undefined) {
        if (m.msg.enc !== 'zstd' || !zstd || ghost) throw new CorruptError(`mirror: record ${i} is encoded as ${String(m.msg.enc)}, which was not agreed`);
        payload = inflate.decompress(wire, length as number, i);
        payloadCrc = undefined;
        ch.recycle?.(wire, Promise.resolve());
      }
      if (!ghost && (length !== payload.length || (payloadCrc ?? recordCrc(payload)) !== crc)) throw new CorruptError(`mirror: record ${i} is damaged (checksum)`);
      chain = hashChain.add(chain, i, kind, length as number, crc as number);
      if (ghost && i === acked - 1 && chain !== resume.chain) {
        fs.rmSync(sides.resume, { force: true });
        throw new CorruptError('mirror: the source no longer has what it sent before', 'the transfer starts over on the next update');
      }
      // a ghost whose blocks are not where it was acknowledged into: nothing of this transfer is resumed (the files go: finally)
      const lost = (): never => {
        resumable = false;
        throw new CorruptError(`mirror: ${RESUME_LOST} (record ${i} of ${acked}): the volume was replaced or changed since`, 'the update starts that transfer over');
      };
      let idx;
      try {
        idx = decodeRecordIndex(kind, payload, bs, ghost);
      } catch (err) {
        if (err instanceof StreamFormatError) throw new CorruptError(`mirror: record ${i}: ${err.message}`);
        throw err;
      }
      if (idx.kind === 'plane') {
        const snap = plan.snapshots[idx.snapshotIndex];
        const slot = snap ? slotOf.get(snap.id) : undefined;
        if (slot === undefined) throw new CorruptError(`mirror: record ${i} carries a plane of a snapshot that is not arriving`);
        idx.chunks.forEach((c, k) => {
          if (!(c >= 0 && c < vol.layout.planeBlocks)) throw new CorruptError(`mirror: record ${i}: plane block ${c} outside the volume`);
          if (idx.data) vol.writeSlotPlane(slot, c, idx.data.subarray(k * bs, (k + 1) * bs));
          written.get(snap.id)!.add(c);
        });
        if (ghost && !planeHolds(vol, payload, slot, idx.chunks, crc as number)) lost();
      } else if (idx.kind === 'mapdelta') {
        for (const d of idx.nodes) {
          const v = d.vbn;
          if (!(v > 0 && v < vol.nblocks) || arrived.has(v) || !(d.base > 0 && d.base < vol.nblocks)) throw new CorruptError(`mirror: record ${i}: map node for VBN ${v} ${arrived.has(v) ? 'twice' : 'outside the volume'}`);
          arrived.add(v);
          blocks++;
          bytes += bs;
          const held = occupied.has(v);
          if (ghost) {
            if (held && !staged.has(v)) throw new CorruptError(`mirror: staged block for VBN ${v} is missing`);
            if (!mapNodeHolds(vol, d, stagedAt, stageFd)) lost();
            continue;
          }
          if (!occupied.has(d.base)) throw new CorruptError(`mirror: record ${i}: the base of map node ${v} (VBN ${d.base}) is not on the destination`, 'run imgstream mirror resync');
          const nodeBuf = Buffer.alloc(bs);
          vol.readBlock(d.base, nodeBuf);
          applyMapDelta(nodeBuf, d);
          if (held) {
            staged.set(v, stageBytes);
            fs.writeSync(stageFd, nodeBuf, 0, bs, stageBytes);
            stageBytes += bs;
          } else vol.file.write(nodeBuf, vol.layout.vbnOffset(v));
        }
      } else {
        const { vbns } = idx;
        const data = idx.data;
        let runStart = -1;
        const runs: Array<[number, number]> = [];
        const flushRun = (end: number) => {
          if (runStart < 0) return;
          if (!ghost) runs.push([runStart, end]);
          runStart = -1;
        };
        for (let k = 0; k < vbns.length; k++) {
          const v = vbns[k];
          if (!(v > 0 && v < vol.nblocks) || arrived.has(v)) throw new CorruptError(`mirror: record ${i}: block for VBN ${v} ${arrived.has(v) ? 'twice' : 'outside the volume'}`);
          arrived.add(v);
          if (occupied.has(v)) {
            // the old state holds this VBN: keep the block aside for the final CP's journal
            flushRun(k);
            if (!ghost) {
              staged.set(v, stageBytes);
              fs.writeSync(stageFd, data!, k * bs, bs, stageBytes);
              stageBytes += bs;
            } else if (!staged.has(v)) throw new CorruptError(`mirror: staged block for VBN ${v} is missing`);
            continue;
          }
          if (runStart >= 0 && v !== vbns[k - 1] + 1) flushRun(k);
          if (runStart < 0) runStart = k;
        }
        flushRun(vbns.length);
        if (ghost && !dataHolds(vol, payload, vbns, crc as number, stagedAt, stageFd)) lost();
        // written behind: the VBNs are free in the old state, so nothing reads them before the CP
        for (const [from, to] of runs) await writes.write(data!.subarray(from * bs, to * bs), vol.layout.vbnOffset(vbns[from]));
        blocks += vbns.length;
        bytes += vbns.length * bs;
      }
      next++;
      // its block data may still be being written from it
      if (payload === wire) ch.recycle?.(wire, writes.written());
      else inflate.recycle(payload, writes.written());
      if (ackFailure) throw ackFailure;
      if (!ghost) {
        sinceAck += payload.length;
        if (!inFlight && (sinceAck >= ackBytes || Date.now() - lastAck > 1000)) ack();
      }
    }
    // complete and verified: switch to the new state in one CP
    while (inFlight) await inFlight;
    if (ackFailure) throw ackFailure;
    if (next > ackedUpTo) {
      ack();
      while (inFlight) await inFlight;
      if (ackFailure) throw ackFailure;
    }
    const usedBefore = vol.nblocks - 1 - vol.countFree();
    for (const s of incoming) vol.clearSlotPlaneExcept(slotOf.get(s.id)!, written.get(s.id)!);
    await writes.drain();
    vol.file.sync();
    // Staged blocks travel in the CP's journal, a free block each. Without that much room
    // (a source that reused most of what a deleted snapshot held), a CP of its own lets the
    // leaving snapshots go first (a consistent state: the previous one less what the source
    // no longer holds), the blocks that arrived in place held back from its journal: that
    // frees the VBNs the staged blocks go to, and they are written in place. Not when the
    // active file system or a snapshot that stays holds them all (it would free none).
    const inPlace = arrived.size - staged.size;
    const journalRoom = vol.nblocks - 1 - usedBefore - inPlace - 2 * vol.meta.dirtyCount() - 4 * vol.layout.planeBlocks - 8;
    const stays = [PLANE_ACTIVE, ...vol.snapshots().filter((s) => plan.keep.includes(s.id)).map((s) => vol.layout.snapshotPlane(s.slot))];
    const freedByDrop = () => [...staged.keys()].some((v) => !stays.some((p) => vol.testBit(p, v)));
    if (staged.size > journalRoom && leaving.length > 0 && freedByDrop()) {
      // this CP moves the volume's generation on: the resume file says so first (everything
      // arrived is recorded in it already), so a stop after it still resumes here
      writeResume(volPath, { ...resume, ...progressPoint(), base: { ...resume.base!, ownCp: true } });
      for (const v of arrived.values()) if (!staged.has(v)) vol.reserve(v);
      for (const s of leaving) vol.dropSnapshotEntry(s.name);
      vol.commit();
      for (const v of arrived.values()) if (!staged.has(v)) vol.unreserve(v);
      leaving = [];
    }
    const scratch = Buffer.alloc(bs);
    const holds = new OccupancyCursor(vol);
    for (const [v, off] of staged) {
      fs.readSync(stageFd, scratch, 0, bs, off);
      if (holds.has(v)) vol.stageBlock(v, scratch);
      else vol.file.write(scratch, vol.layout.vbnOffset(v)); // the last CP no longer holds it
    }
    vol.file.sync();
    for (const s of leaving) vol.dropSnapshotEntry(s.name);
    // a snapshot that stays and that the source made shadow since (its blocks not reused there yet) is made shadow here, in this CP
    for (const p of plan.snapshots) if (p.shadow && plan.keep.includes(p.id) && !here.get(p.id)!.shadow) vol.markShadowEntry(p.name);
    for (const s of incoming) {
      const e: SnapshotEntry = { ...s, slot: slotOf.get(s.id)! };
      vol.installSnapshot(e);
    }
    vol.resetActiveTo(plan.top.name);
    vol.markRecorded(arrived);
    vol.setMirrorFlags({ mirror: true, broken: false });
    vol.commit();
    committed = true;
    const generation = vol.rootRecord.generation;
    const usedAfter = vol.nblocks - 1 - vol.countFree();
    const deallocated = Math.max(0, usedBefore + blocks - staged.size - usedAfter);
    vol.close();
    if (initial) {
      fs.linkSync(sides.fresh, volPath);
      fs.rmSync(sides.fresh, { force: true });
    }
    fs.closeSync(stageFd);
    stageFd = null;
    fs.rmSync(sides.stage, { force: true });
    fs.rmSync(sides.resume, { force: true });
    const done: TransferDone = { generation, blocks, bytes, deallocated, resumed: acked, staged: staged.size, mode: plan.mode, top: plan.top.name, transferId: plan.transferId, snapshots: plan.snapshots.length, compression: zstd ? 'zstd' : 'none' };
    await ch.send({ done });
    log(`mirror ${path.basename(volPath)}: transfer ${plan.transferId} (${plan.mode}) committed at CP ${generation}: ${blocks} blocks, top ${plan.top.name}`);
    return done;
  } catch (err) {
    while (inFlight) await inFlight; // its syncs use the files closed below
    await writes.settle();
    if (!committed) {
      try {
        vol.abort();
      } catch {
        /* closing below is enough */
      }
    }
    throw err;
  } finally {
    await writes.close();
    vol.close();
    if (stageFd !== null) fs.closeSync(stageFd);
    // failed with nothing recorded to resume from: nothing stays behind (the source drops its snapshot)
    if (!committed && !resumable) dropUnresumable(volPath, initial);
  }
}
