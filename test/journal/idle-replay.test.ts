// A server with --journal killed -9 after a write it acknowledged and no client flushed:
// its journal holds the write, which the next server replays. A command that changed the
// volume before that (a dump's snapshot, a snapshot deleted or made a shadow one, a mirror
// update's snapshot, a server without --journal) took a CP past it: the write was then lost
// for good, exit 0, and the next server with --journal refused the journal (exit 9: its
// tail older than the volume). Each now replays the journal first, as snapshot create does.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { PYTHON } from '../support/nbd-writer.js';
import { CLI_BIN, cli, ok, startServer } from '../nbd/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import { Volume } from '../../src/volume/volume.js';
import { SNAPSHOT_ENTRY_BYTES } from '../../src/format/snapshot-entry.js';

const BS = 4096;
const SIZE = 4 << 20;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-idle-replay-');

/** Block 0 written with A and flushed, then with B: acknowledged, and not flushed (the client is killed then). */
async function writeUnflushed(uri: string): Promise<void> {
  const script = `import nbd, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(b'A' * ${BS}, 0)
h.flush()
h.pwrite(b'B' * ${BS}, 0)
print('acknowledged', flush=True)
time.sleep(60)
`;
  const child = spawn(PYTHON, ['-c', script, uri], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('acknowledged')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the client exited ${code}: ${err}`)));
  });
  child.kill('SIGKILL');
}

async function firstBlock(what: string, out: string): Promise<string> {
  await inProcessOk(['volume', 'export', what, '--to', at(out), '--force'], { env });
  const b = fs.readFileSync(at(out)).subarray(0, BS);
  return String.fromCharCode(b[0]) + (b.every((x) => x === b[0]) ? '' : '?');
}

const commands: Array<{ name: string; run: (vol: string, tag: string) => Promise<void>; after?: (vol: string, tag: string) => Promise<void> }> = [
  {
    name: 'dump (its stream holds the write too)',
    run: async (vol, tag) => void (await cli(['dump', vol, '--level', '0', '--to', at(`${tag}.l0`)], locks)),
    after: async (_vol, tag) => {
      await ok(process.execPath, [CLI_BIN, 'restore', '--from', at(`${tag}.l0`), '--to', at(`${tag}.restored`)], { env });
      expect(await firstBlock(at(`${tag}.restored`), `${tag}-r.raw`), 'the dump holds the acknowledged write').toBe('B');
    },
  },
  { name: 'snapshot delete', run: async (vol) => void (await cli(['snapshot', 'delete', vol, 'old'], locks)) },
  { name: 'snapshot shadow', run: async (vol) => void (await cli(['snapshot', 'shadow', vol, 'old'], locks)) },
  {
    name: 'mirror update (the mirror holds the write too)',
    run: async (vol, tag) => void (await ok(process.execPath, [CLI_BIN, 'mirror', 'update', vol, '--to', at(`${tag}.mirror`), '--state', at(`${tag}.state.json`)], { env })),
    after: async (_vol, tag) => expect(await firstBlock(at(`${tag}.mirror`), `${tag}-m.raw`), 'the mirror holds the acknowledged write').toBe('B'),
  },
  {
    name: 'volume check --drop-damaged-snapshots (dropping a damaged table entry)',
    run: async (vol) => {
      const v = Volume.open(vol, { write: false });
      const offset = v.layout.metaOffset(v.layout.tableStart) + v.snapshot('old').slot * SNAPSHOT_ENTRY_BYTES + 30; // inside its checksummed bytes
      v.close();
      const fd = fs.openSync(vol, 'r+');
      fs.writeSync(fd, Buffer.from([0xa5]), 0, 1, offset);
      fs.closeSync(fd);
      await ok(process.execPath, [CLI_BIN, 'volume', 'check', vol, '--drop-damaged-snapshots'], { env });
    },
  },
  {
    name: 'serve nbd without --journal',
    run: async (vol, tag) => {
      const s = await startServer(vol, ['--socket', at(`${tag}-plain.sock`)], locks);
      await s.stop();
    },
  },
];

describe.skipIf(missing.length > 0)(`a journaled volume whose server was killed -9 after an unflushed write${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('volume export (it only reads) says the journal holds writes the export lacks, until a server replays them', async () => {
    const vol = at('ro.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    const server = await startServer(vol, ['--socket', at('ro.sock'), '--journal', '--cp-interval', '0'], locks);
    await writeUnflushed(server.info.uri);
    await server.kill9();
    const before = await ok(process.execPath, [CLI_BIN, 'volume', 'export', vol, '--to', at('ro-before.raw')], { env });
    expect(before.stderr.trim()).toBe(`${vol}: its write journal holds 1 writes a server acknowledged after its last CP and did not commit (it was killed), not in this export: serve it with --journal, or take a snapshot, to replay them`);
    expect(fs.readFileSync(at('ro-before.raw'))[0]).toBe(0x41);
    // and serve nbd --readonly, which cannot replay them either
    const ro = await startServer(vol, ['--socket', at('ro-r.sock'), '--readonly'], locks);
    await ro.stop();
    expect(ro.stderr()).toContain(`${vol}: its write journal holds 1 writes a server acknowledged after its last CP and did not commit (it was killed), not served read-only`);
    const again = await startServer(vol, ['--socket', at('ro.sock'), '--journal'], locks);
    await again.stop();
    const roAfter = await startServer(vol, ['--socket', at('ro-r.sock'), '--readonly'], locks);
    await roAfter.stop();
    expect(roAfter.stderr()).toBe('');
    const after = await ok(process.execPath, [CLI_BIN, 'volume', 'export', vol, '--to', at('ro-after.raw')], { env });
    expect(after.stderr).toBe('');
    expect(fs.readFileSync(at('ro-after.raw'))[0]).toBe(0x42);
  }, 60_000);

  commands.forEach((c, i) => {
    it(`${c.name}: replays the journal first, the write stays, and the next server with --journal starts`, async () => {
      const tag = `c${i}`;
      const vol = at(`${tag}.vol`);
      await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
      await setupOk(['snapshot', 'create', vol, 'old'], { env });
      const server = await startServer(vol, ['--socket', at(`${tag}.sock`), '--journal', '--cp-interval', '0'], locks);
      await writeUnflushed(server.info.uri);
      await server.kill9();
      await c.run(vol, tag);
      expect(await firstBlock(vol, `${tag}.raw`), 'the volume holds the acknowledged write').toBe('B');
      await c.after?.(vol, tag);
      const again = await startServer(vol, ['--socket', at(`${tag}.sock`), '--journal'], locks);
      await again.stop();
      expect(await firstBlock(vol, `${tag}-again.raw`)).toBe('B');
    }, 60_000);
  });
});
