// A volume another process serves, reached through its control socket: the same
// operations as a volume opened here (access.ts VolumeAccess), run by the server between
// two of its NBD requests. Reading a snapshot's planes and blocks needs no round trip per
// block: pin the snapshot in the server, then read it through a lockless view
// (Volume.openView), which is safe while the pin holds (see there).
import fs from 'node:fs';
import { InvalidInputError, NotFoundError, errorOfCode } from '../core/errors.js';
import { CONTROL_PROTOCOL_VERSION, type ControlErrorBody, type ControlHello } from '../format/control-protocol.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { StorageImageSummary } from '../image/index.js';
import type { CheckReport } from '../volume/check.js';
import type { VolumeInfo } from '../volume/info.js';
import { Volume } from '../volume/volume.js';
import type { LockHolder } from '../volume/volume-lock.js';
import { IoError } from '../core/errors.js';
import { ControlClient } from './control-client.js';
import type { VolumeAccess } from './access.js';

export interface SnapshotCreateOptions {
  shadow?: boolean;
  master?: boolean;
  /** Pin it for this connection at once. */
  pin?: boolean;
  /** Pin it, and let the server delete it once nobody pins it (when this connection ends at the latest). */
  temporary?: boolean;
}

export class ServedVolume implements VolumeAccess {
  readonly kind = 'served';

  private constructor(
    readonly path: string,
    private readonly client: ControlClient,
    /** Who serves the volume and how (the answer to hello). */
    readonly server: ControlHello,
  ) {}

  /**
   * Connects to the control socket the lock holder advertises. Rejects when nothing
   * answers there (the server stopped), when the socket belongs to another user, or when
   * the server serves another file.
   */
  static async connect(path: string, holder: LockHolder): Promise<ServedVolume> {
    const socket = holder.control;
    if (!socket) throw new IoError(`${path}: its holder has no control socket`);
    const st = fs.statSync(socket);
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) throw new IoError(`${socket}: control socket of another user`);
    let serverPath: string | null = null;
    const localize = (text: string) => (serverPath !== null && serverPath !== path && text.startsWith(`${serverPath}:`) ? `${path}${text.slice(serverPath.length)}` : text);
    const errorFor = (e: ControlErrorBody) => errorOfCode(e.code, localize(e.message), e.hint, e.details);
    const gone = () => new IoError(`${path}: the server (imgstream process ${holder.pid}) closed the control connection`, 'it stopped or was killed: run the command again');
    const client = await ControlClient.connect(socket, errorFor, gone);
    try {
      const hello = await client.request<ControlHello>('hello', { pid: process.pid, protocol: CONTROL_PROTOCOL_VERSION });
      const vst = fs.statSync(path);
      if (hello.dev !== vst.dev || hello.ino !== vst.ino) throw new IoError(`${socket}: serves another volume than ${path}`);
      serverPath = hello.volume;
      return new ServedVolume(path, client, hello);
    } catch (err) {
      client.close();
      throw err;
    }
  }

  get blockSize(): number {
    return this.server.blockSize;
  }

  get servedBy(): number {
    return this.server.pid;
  }

  /** True when the server opened the volume read-only: nothing changes it while it serves. */
  get readOnly(): boolean {
    return this.server.readOnly;
  }

  /** Any registered op (ops.ts registerControlOp), e.g. another module's mirror.*. */
  request<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    return this.client.request<T>(op, args);
  }

  snapshots(): Promise<SnapshotEntry[]> {
    return this.request<SnapshotEntry[]>('snapshot.list');
  }

  async snapshot(name: string): Promise<SnapshotEntry> {
    const e = (await this.snapshots()).find((s) => s.name === name);
    if (!e) throw new NotFoundError(`${this.path}: no snapshot named "${name}"`, `list them with: imgstream snapshot list ${this.path}`);
    return e;
  }

  createSnapshot(name: string, opts: SnapshotCreateOptions = {}): Promise<SnapshotEntry> {
    return this.request<SnapshotEntry>('snapshot.create', { name, shadow: !!opts.shadow, master: !!opts.master, pin: !!opts.pin, temporary: !!opts.temporary });
  }

  deleteSnapshot(name: string): Promise<SnapshotEntry> {
    return this.request<SnapshotEntry>('snapshot.delete', { name });
  }

  /** Deletes a snapshot now, or, while other readers pin it, as soon as the last lets go (a dump's own snapshot that another dump reads). */
  deleteSnapshotWhenUnpinned(name: string): Promise<SnapshotEntry> {
    return this.request<SnapshotEntry>('snapshot.delete', { name, whenUnpinned: true });
  }

  renameSnapshot(from: string, to: string): Promise<SnapshotEntry> {
    return this.request<SnapshotEntry>('snapshot.rename', { from, to });
  }

  shadowSnapshot(name: string): Promise<SnapshotEntry> {
    return this.request<SnapshotEntry>('snapshot.shadow', { name });
  }

  async info(): Promise<VolumeInfo> {
    return { ...(await this.request<VolumeInfo>('info')), path: this.path };
  }

  image(expression: string, opts: { ranges?: boolean } = {}): Promise<StorageImageSummary> {
    return this.request<StorageImageSummary>('image', { expression, ranges: !!opts.ranges });
  }

  async check(): Promise<CheckReport> {
    return { ...(await this.request<CheckReport>('check')), path: this.path };
  }

  /** Forces a consistency point; returns its generation. */
  async cp(): Promise<number> {
    return (await this.request<{ generation: number }>('cp')).generation;
  }

  /** Pins snapshots for this connection (all, or none when one does not exist): they cannot be deleted or renamed until unpinned or this connection ends. */
  pin(names: string[]): Promise<SnapshotEntry[]> {
    return this.request<SnapshotEntry[]>('pin', { names });
  }

  async unpin(names: string[]): Promise<void> {
    await this.request('unpin', { names });
  }

  /** A lockless view of the volume, to read pinned snapshots through (Volume.openView). */
  openView(): Volume {
    return Volume.openView(this.path);
  }

  /**
   * Throws when a shadow snapshot among `read` (entries as the reader saw them) had
   * blocks reused since: what was read of it may mix in newer data. Regular snapshots
   * cannot change while pinned.
   */
  async verifyUnchanged(read: SnapshotEntry[]): Promise<void> {
    const shadows = read.filter((e) => e.shadow);
    if (shadows.length === 0) return;
    const now = await this.snapshots();
    for (const e of shadows) {
      const cur = now.find((s) => s.id === e.id);
      if (!cur || cur.reusedBlocks !== e.reusedBlocks) {
        throw new InvalidInputError(`${this.path}: shadow snapshot "${e.name}" had blocks reused while it was read, and no longer holds a consistent image`, 'read a regular snapshot instead');
      }
    }
  }

  /** Calls fn once the control connection is closed (the server stopped or was killed, or close()). */
  onClose(fn: () => void): void {
    this.client.onClose(fn);
  }

  close(): void {
    this.client.close();
  }
}
