// The pieces of the control socket in one process: the line protocol (round trip,
// split lines, malformed and oversized input), errors raised again as their own class,
// the export queue running tasks between requests, pins, the lock file's control line
// (readable by the older parser too), and a view opened with a journal not yet applied.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ControlLineSplitter,
  ControlProtocolError,
  decodeControlRequest,
  decodeControlResponse,
  encodeControlMessage,
} from '../../src/format/control-protocol.js';
import { BusyError, EXIT_CODES, NotFoundError, errorOfCode, type ErrorCode } from '../../src/core/errors.js';
import {
  CMD_READ,
  CMD_WRITE,
  NBD_OK,
} from '../../src/format/nbd-protocol.js';
import { NbdExport } from '../../src/nbd/nbd-export.js';
import { readLogicalBytes } from '../../src/volume/logical-io.js';
import { Volume } from '../../src/volume/volume.js';
import { VolumeLock } from '../../src/volume/volume-lock.js';
import { PinTable } from '../../src/control/pins.js';
import { controlOpNames, registerControlOp } from '../../src/control/ops.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-control-unit-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('control protocol', () => {
  it('round-trips requests and answers, one JSON object per line', () => {
    const req = { id: 7, op: 'snapshot.create', args: { name: 'a', shadow: false } };
    const line = encodeControlMessage(req);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    expect(decodeControlRequest(line.trimEnd())).toEqual(req);
    const ok = { id: 7, ok: true as const, result: { generation: 5 } };
    expect(decodeControlResponse(encodeControlMessage(ok).trimEnd())).toEqual(ok);
    const err = { id: 8, ok: false as const, error: { code: 'busy', message: 'm', hint: 'h', details: { x: 1 } } };
    expect(decodeControlResponse(encodeControlMessage(err).trimEnd())).toEqual(err);
    expect(decodeControlRequest('{"id":1,"op":"info"}')).toEqual({ id: 1, op: 'info', args: {} });
  });

  it('rejects what is not a request', () => {
    for (const bad of ['', 'nope', '[]', '{"op":"info"}', '{"id":-1,"op":"info"}', '{"id":1.5,"op":"info"}', '{"id":1}', '{"id":1,"op":""}', '{"id":1,"op":"x","args":[1]}']) {
      expect(() => decodeControlRequest(bad), bad).toThrow(ControlProtocolError);
    }
    for (const bad of ['{"id":1}', '{"id":1,"ok":false}', '{"id":1,"ok":false,"error":{"code":"busy"}}']) {
      expect(() => decodeControlResponse(bad), bad).toThrow(ControlProtocolError);
    }
  });

  it('splits a byte stream into lines however it is cut, and refuses overlong lines', () => {
    const text = Buffer.from('{"a":1}\n{"b":"\u00e9t\u00e9"}\n\n{"c":3}\n{"d"');
    for (let cut = 0; cut <= text.length; cut++) {
      const s = new ControlLineSplitter(100);
      const lines = [...s.push(text.subarray(0, cut)), ...s.push(text.subarray(cut))];
      expect(lines).toEqual(['{"a":1}', '{"b":"\u00e9t\u00e9"}', '', '{"c":3}']);
      expect(s.push(Buffer.from(':4}\n'))).toEqual(['{"d":4}']);
    }
    const s = new ControlLineSplitter(10);
    expect(() => s.push(Buffer.alloc(11, 0x61))).toThrow(ControlProtocolError);
    const t = new ControlLineSplitter(10);
    t.push(Buffer.alloc(6, 0x61));
    expect(() => t.push(Buffer.from('aaaaa\n'))).toThrow(ControlProtocolError);
  });

  it('raises an error that crossed the socket as its own class, with its exit code', () => {
    for (const code of Object.keys(EXIT_CODES) as ErrorCode[]) {
      const e = errorOfCode(code, `m ${code}`, 'h', { d: 1 }) as BusyError;
      expect(e.code).toBe(code);
      expect(e.exitCode).toBe(EXIT_CODES[code].exit);
      expect(e.message).toBe(`m ${code}`);
      expect(e.hint).toBe('h');
      expect(e.details).toEqual({ d: 1 });
    }
    expect(errorOfCode('busy', 'x')).toBeInstanceOf(BusyError);
    expect(errorOfCode('not-found', 'x')).toBeInstanceOf(NotFoundError);
    const internal = errorOfCode('internal', 'oops');
    expect(internal.constructor).toBe(Error);
    expect(errorOfCode('toString', 'x').constructor).toBe(Error);
  });

  it('has a registry of ops that refuses a second registration', () => {
    expect(controlOpNames()).toEqual(expect.arrayContaining(['check', 'cp', 'image', 'info', 'pin', 'snapshot.create', 'snapshot.delete', 'snapshot.list', 'snapshot.rename', 'unpin']));
    expect(() => registerControlOp('info', () => null)).toThrow(/twice/);
  });
});

describe('pins', () => {
  const entry = (id: number, name: string) => ({ slot: id, id, name, shadow: false, master: false, createdMs: 0, mapRoot: 0, generation: 1, blocks: 0, mappedBlocks: 0, reusedBlocks: 0 });

  it('refuse changes while held, name every holder, and end with the connection', () => {
    const pins = new PinTable();
    const a = entry(1, 'a');
    const [p1, p2] = [process.pid, process.ppid];
    pins.pin(a, { session: 1, pid: p1 });
    pins.pin(a, { session: 2, pid: p2 });
    pins.pin(a, { session: 2, pid: p2 }); // once per connection
    expect(() => pins.assertUnpinned('v.vol', a, 'deleted')).toThrow(`v.vol: snapshot "a" is pinned by imgstream processes ${p1}, ${p2} (reading or serving it) and cannot be deleted`);
    expect(pins.unpin(1, 2)).toEqual([]);
    expect(() => pins.assertUnpinned('v.vol', a, 'deleted')).toThrow(BusyError);
    expect(pins.releaseSession(1)).toEqual([]);
    expect(() => pins.assertUnpinned('v.vol', a, 'deleted')).not.toThrow();
  });

  it('of a process that is gone do not refuse anything', () => {
    const pins = new PinTable();
    const a = entry(1, 'a');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    pins.pin(a, { session: 1, pid: gone });
    expect(pins.isPinned(1)).toBe(true);
    expect(() => pins.assertUnpinned('v.vol', a, 'renamed')).not.toThrow();
    pins.pin(a, { session: 2, pid: process.pid });
    expect(() => pins.assertUnpinned('v.vol', a, 'renamed')).toThrow(`pinned by imgstream process ${process.pid} (reading or serving it) and cannot be renamed`);
  });

  it('hand back a temporary snapshot once nobody pins it', () => {
    const pins = new PinTable();
    const t = entry(5, 'tmp');
    pins.pin(t, { session: 1, pid: 1 }, { temporary: true });
    pins.pin(t, { session: 2, pid: 2 });
    expect(pins.releaseSession(1)).toEqual([]);
    expect(pins.unpin(5, 2)).toEqual([5]);
    pins.forget(5);
    expect(pins.unpin(5, 2)).toEqual([]);
  });
});

describe('the export queue runs tasks between requests', () => {
  it('after the writes queued before, alone while its promise is pending', async () => {
    const file = path.join(root, 'queue.vol');
    Volume.create(file, { size: 1 << 20 });
    const vol = Volume.open(file, { write: true });
    try {
      const exp = new NbdExport(vol, { name: '', readOnly: false });
      const order: string[] = [];
      const request = (type: number, offset: number, length: number) => ({ type, flags: 0, cookie: Buffer.alloc(8), offset, length });
      const write = (offset: number, fill: number, tag: string) =>
        exp.submit({ view: exp.main, structured: false, contexts: [] }, request(CMD_WRITE, offset, 4096), Buffer.alloc(4096, fill), false, (reply) => {
          expect(reply.readUInt32BE(4)).toBe(NBD_OK);
          order.push(tag);
        });
      write(0, 1, 'w1');
      let release!: () => void;
      const seen = exp.runExclusive(async () => {
        order.push('task');
        const b = Buffer.alloc(4096);
        readLogicalBytes(vol, vol.map, 0, b);
        await new Promise<void>((r) => (release = r));
        order.push('task done');
        return b[0];
      });
      write(0, 2, 'w2');
      exp.submit({ view: exp.main, structured: false, contexts: [] }, request(CMD_READ, 0, 4096), null, false, (reply) => {
        order.push(`read ${reply[16]}`);
      });
      await new Promise((r) => setTimeout(r, 50));
      expect(order, 'nothing passes a pending task').toEqual(['w1', 'task']);
      release();
      expect(await seen, 'the task sees the write queued before it').toBe(1);
      await exp.close();
      expect(order).toEqual(['w1', 'task', 'task done', 'w2', 'read 2']);
      await expect(exp.runExclusive(() => {
        throw new BusyError('no');
      })).rejects.toThrow(BusyError);
    } finally {
      vol.close();
    }
  });
});

describe('lock file', () => {
  it('names the control socket, and older parsers still read the holder as alive', () => {
    const dir = path.join(root, 'locks');
    const prev = process.env.IMGSTREAM_LOCK_DIR;
    process.env.IMGSTREAM_LOCK_DIR = dir;
    try {
      const file = path.join(root, 'lock.vol');
      Volume.create(file, { size: 1 << 20 });
      const vol = Volume.open(file, { write: true });
      const lock = vol.volumeLock!;
      expect(VolumeLock.holder(file)).toEqual({ pid: process.pid, control: undefined, served: undefined, journal: false, keepsDisk: false });
      // one opened read-only changes no block of the disk, and says so (a shipper of its journal goes on claiming points)
      const roFile = path.join(root, 'lock-ro.vol');
      Volume.create(roFile, { size: 1 << 20 });
      const ro = Volume.open(roFile, { write: false });
      try {
        expect(VolumeLock.holder(roFile)).toEqual({ pid: process.pid, control: undefined, served: undefined, journal: false, keepsDisk: true });
        const [roPid, roStart] = fs.readFileSync(ro.volumeLock!.file, 'utf8').split(' ');
        expect([Number(roPid), roStart]).toEqual([process.pid, fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]]);
      } finally {
        ro.close();
      }
      // a server journaling its writes says so (protect tells its writes from other writers')
      lock.advertise(lock.controlPath, 'rw', true);
      expect(VolumeLock.holder(file)).toEqual({ pid: process.pid, control: lock.controlPath, served: 'rw', journal: true, keepsDisk: false });
      // its control socket closed at shutdown, it still says so while it commits its last CP
      lock.advertise(null, 'rw', true);
      expect(VolumeLock.holder(file)).toEqual({ pid: process.pid, control: undefined, served: undefined, journal: true, keepsDisk: false });
      lock.advertise(lock.controlPath, 'ro');
      expect(lock.controlPath).toBe(lock.file.replace(/\.lock$/, '.ctl'));
      expect(VolumeLock.holder(file)).toEqual({ pid: process.pid, control: lock.controlPath, served: 'ro', journal: false, keepsDisk: false });
      const text = fs.readFileSync(lock.file, 'utf8');
      // the parser of earlier versions: split at spaces, the second field is the start time
      const [pid, start] = text.split(' ');
      expect(Number(pid)).toBe(process.pid);
      const stat = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8');
      expect(start).toBe(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
      // another process is refused, and told that the volume is served
      const other = spawnSync(
        process.execPath,
        ['--input-type=module', '-e', `const { Volume } = await import(${JSON.stringify(path.resolve('dist/src/volume/volume.js'))}); try { Volume.open(${JSON.stringify(file)}, { write: false }); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, hint: e.hint })); }`],
        { env: { ...process.env, IMGSTREAM_LOCK_DIR: dir }, encoding: 'utf8' },
      );
      expect(JSON.parse(other.stdout)).toEqual({ code: 'busy', message: `${file}: volume is being served by imgstream process ${process.pid}`, hint: 'it serves the volume read-only: stop the server first' });
      lock.advertise(null);
      expect(VolumeLock.holder(file)?.control).toBeUndefined();
      vol.close();
      expect(VolumeLock.holder(file)).toBeNull();
    } finally {
      if (prev === undefined) delete process.env.IMGSTREAM_LOCK_DIR;
      else process.env.IMGSTREAM_LOCK_DIR = prev;
    }
  });
});

describe('Volume.openView', () => {
  it('reads the state of the last CP, journal included when it was not applied yet', () => {
    const file = path.join(root, 'view.vol');
    Volume.create(file, { size: 1 << 20 });
    const vol = Volume.open(file, { write: true });
    vol.writeLogical(3, Buffer.alloc(4096, 7));
    vol.createSnapshot('a');
    vol.close();
    // a CP killed after its root record, before the journal was applied in place
    const r = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `const { Volume } = await import(${JSON.stringify(path.resolve('dist/src/volume/volume.js'))}); const v = Volume.open(${JSON.stringify(file)}, { write: true }); v.createSnapshot('b');`],
      { env: { ...process.env, IMGSTREAM_CRASH_AT: 'root', IMGSTREAM_LOCK_DIR: path.join(root, 'locks2') } },
    );
    expect(r.signal).toBe('SIGKILL');
    const view = Volume.openView(file);
    try {
      expect(view.rootRecord.journalHead).not.toBe(0);
      expect(view.snapshots().map((s) => s.name)).toEqual(['a', 'b']);
      const b = Buffer.alloc(4096);
      readLogicalBytes(view, view.mapOf('b'), 3 * 4096, b);
      expect(b.equals(Buffer.alloc(4096, 7))).toBe(true);
      expect(view.volumeLock).toBeNull();
    } finally {
      view.close();
    }
  });
});
