// A volume that was created and never committed to has its only root record in slot 1
// (generation 1: slot = generation % 2), one block in, and nothing at offset 0. Outputs
// must still recognise it as a volume: dump --to and volume export onto it, with --force
// or without, are refused (exit 4) and leave it byte for byte as it was; volume create on
// a block device holding one needs --force (exit 6 without). The block device cases need
// root and a free loop device (as CI's containers and this project's machines have).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdsVolume } from '../../src/volume/root-reader.js';
import { createVolume } from '../../src/volume/volume-create.js';
import { cliOk, runCli, sha256File, stderrLines, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const BS = 4096;
const root = tempDir('imgstream-never-committed-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (n: string) => path.join(root, n);
const src = at('src.vol');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  writeImage(at('image.raw'), 256, BS, 7);
  await setupOk(['volume', 'create', src, '--size', '1M'], { env });
  await setupOk(['volume', 'import', src, '--from', at('image.raw')], { env });
});

/** Runs a command that must be refused with one line and `code`, leaving `file` as it was. */
function refused(args: string[], file: string, code: number, message: RegExp): void {
  const before = sha256File(file);
  const r = runCli(args, { env });
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
  const lines = stderrLines(r);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(sha256File(file), `${args.join(' ')} changed ${file}`).toBe(before);
}

describe('a volume never committed to', () => {
  it('is recognised from the moment create returns, whatever its block size', () => {
    for (const bs of [4096, 65536, 1 << 20]) {
      const vol = at(`fresh-${bs}.vol`);
      createVolume(vol, { size: bs * 16, blockSize: bs, maxSnapshots: 4 });
      const head = Buffer.alloc(8);
      const fd = fs.openSync(vol, 'r');
      fs.readSync(fd, head, 0, 8, 0);
      fs.closeSync(fd);
      expect(head.equals(Buffer.alloc(8)), 'nothing at offset 0 yet').toBe(true);
      expect(holdsVolume(vol), `block size ${bs}`).toBe(true);
    }
    // a raw image is not taken for one
    expect(holdsVolume(at('image.raw'))).toBe(false);
  });

  it('is never written over by dump --to or volume export, --force or not', async () => {
    const fresh = at('fresh.vol');
    await setupOk(['volume', 'create', fresh, '--size', '1M'], { env });
    const dumpOnto = /fresh\.vol: is an imgstream volume; a dump never writes over a volume/;
    const exportOnto = /fresh\.vol: is an imgstream volume; an export never writes over a volume/;
    refused(['dump', src, '--level', '0', '--to', fresh, '--force'], fresh, 4, dumpOnto);
    refused(['dump', src, '--level', '0', '--to', fresh], fresh, 4, dumpOnto);
    refused(['volume', 'export', src, '--to', fresh, '--force'], fresh, 4, exportOnto);
    refused(['volume', 'export', src, '--to', fresh], fresh, 4, exportOnto);
    // and it is still a volume that opens
    await inProcessOk(['volume', 'check', fresh], { env });
  });
});

function loopDevice(file: string): string | null {
  if (process.getuid?.() !== 0) return null;
  const r = spawnSync('losetup', ['-f', '--show', file], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

describe('on a block device', () => {
  let dev: string | null = null;
  beforeAll(() => {
    fs.writeFileSync(at('backing'), '');
    fs.truncateSync(at('backing'), 16 << 20);
    dev = loopDevice(at('backing'));
  });
  afterAll(() => {
    if (dev) spawnSync('losetup', ['-d', dev]);
  });

  it('a volume created there and never committed to is refused as an output and needs --force to create again', async (ctx) => {
    if (!dev) ctx.skip();
    const d = dev!;
    await setupOk(['volume', 'create', d, '--size', '4M'], { env });
    refused(['volume', 'export', src, '--to', d], d, 4, /is an imgstream volume; an export never writes over a volume/);
    refused(['volume', 'export', src, '--to', d, '--force'], d, 4, /is an imgstream volume; an export never writes over a volume/);
    refused(['dump', src, '--level', '0', '--to', d], d, 4, /is an imgstream volume; a dump never writes over a volume/);
    refused(['volume', 'create', d, '--size', '4M'], d, 6, /already holds an imgstream volume/);
    cliOk(['volume', 'create', d, '--size', '4M', '--force'], { env });
  });
});
