// What tests read of a volume only to compare it (the disk's sha256 at the active file
// system or a snapshot, the snapshot names, a check report), read in this process through
// the calls the commands make (withVolumeAccess, exportVolumeAt): the same locks, the same
// path through a serving process, the same errors, without starting a process for each
// look. The commands under test still run as real processes; `volume export`,
// `snapshot list` and `volume check` themselves are tested as processes elsewhere.
import { createHash } from 'node:crypto';
import { exportVolumeAt, withVolumeAccess } from '../../src/control/index.js';
import type { CheckReport } from '../../src/volume/check.js';
import { parseVolumeRef } from '../../src/volume/index.js';
import { Volume } from '../../src/volume/volume.js';
import { snapshotJson } from '../../commands/snapshot/create.js';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { applyEnv, withCliEnv } from './cli-env.js';

/** Feeds what `imgstream volume export SPEC --to -` writes (SPEC: VOL or VOL@SNAPSHOT) to `take`, in order. */
function exportInto(spec: string, env: Record<string, string | undefined>, take: (data: Buffer) => void): Promise<void> {
  return withCliEnv(env, async () => {
    const ref = parseVolumeRef(spec);
    try {
      await exportVolumeAt(ref.volume, ref.snapshot, () => ({
        write(data: Buffer) {
          take(data);
        },
        async finish() {},
        discard() {},
      }));
    } catch (err) {
      throw new Error(`volume export ${spec}: ${(err as Error).message}`);
    }
  });
}

/** sha256 of what `imgstream volume export SPEC --to -` writes. */
export async function imageSha(spec: string, env: Record<string, string | undefined> = {}): Promise<string> {
  const hash = createHash('sha256');
  await exportInto(spec, env, (data) => hash.update(data));
  return hash.digest('hex');
}

/** What `imgstream volume export SPEC --to -` writes: the whole logical disk. */
export async function imageBytes(spec: string, env: Record<string, string | undefined> = {}): Promise<Buffer> {
  const parts: Buffer[] = [];
  // the exporter reuses its buffer once write returns
  await exportInto(spec, env, (data) => parts.push(Buffer.from(data)));
  return Buffer.concat(parts);
}

/** What `imgstream volume export DEST --as-of ASOF --to -` writes of a protection destination. */
export function asOfBytes(dest: string, asOf: string, env: Record<string, string | undefined> = {}): Promise<Buffer> {
  const parts: Buffer[] = [];
  return withCliEnv(env, async () => {
    await exportProtectedAsOf(dest, asOf, () => ({
      write(data: Buffer) {
        parts.push(Buffer.from(data));
      },
      async finish() {},
      discard() {},
    }));
    return Buffer.concat(parts);
  });
}

/** The snapshots `imgstream snapshot list VOL --json` prints, oldest first. */
export function snapshotsOf(vol: string, env: Record<string, string | undefined> = {}): Promise<Array<ReturnType<typeof snapshotJson>>> {
  return withCliEnv(env, () => withVolumeAccess(vol, { write: false }, async (v) => (await v.snapshots()).map(snapshotJson)));
}

/** Same as snapshotNamesOf, at once, of a volume no process serves (opened here under its lock). */
export function snapshotNamesSync(vol: string, env: Record<string, string | undefined> = {}): string[] {
  const restore = applyEnv(env);
  try {
    const v = Volume.open(vol, { write: false });
    try {
      return v.snapshots().map((s) => s.name);
    } finally {
      v.close();
    }
  } finally {
    restore();
  }
}

/** The snapshot names `imgstream snapshot list VOL` prints, oldest first. */
export function snapshotNamesOf(vol: string, env: Record<string, string | undefined> = {}): Promise<string[]> {
  return withCliEnv(env, () => withVolumeAccess(vol, { write: false }, async (v) => (await v.snapshots()).map((s) => s.name)));
}

/** The report `imgstream volume check VOL --json` prints. */
export function checkReportOf(vol: string, env: Record<string, string | undefined> = {}): Promise<CheckReport> {
  return withCliEnv(env, () => withVolumeAccess(vol, { write: false }, (v) => v.check()));
}
