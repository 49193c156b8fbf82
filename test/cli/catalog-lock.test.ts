// Dumps that end at the same moment share a catalog (cron jobs of several volumes and the
// default catalog; the concurrent model found two dumps of one served volume): the later
// writer waits for the other's record instead of failing with busy (exit 7) and leaving
// its complete dump unrecorded.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { REPO_ROOT } from '../support/cli.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-catalog-lock-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('the catalog lock', () => {
  it('is waited for while another process writes its record', async () => {
    const locks = path.join(root, 'locks');
    const file = path.join(root, 'catalog.json');
    const prev = process.env.IMGSTREAM_LOCK_DIR;
    process.env.IMGSTREAM_LOCK_DIR = locks;
    try {
      // another writer holds the lock for a moment, then lets go
      const lockJs = path.join(REPO_ROOT, 'dist', 'src', 'volume', 'volume-lock.js');
      const holder = spawn(process.execPath, ['--input-type=module', '-e', `
        import fs from 'node:fs';
        const { VolumeLock } = await import(${JSON.stringify(lockJs)});
        const l = VolumeLock.acquire(${JSON.stringify(file)}, fs.statSync(${JSON.stringify(root)}), 'catalog');
        console.log('locked');
        setTimeout(() => { l.release(); process.exit(0); }, 400);`], { env: { ...process.env, IMGSTREAM_LOCK_DIR: locks }, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.on('data', (b: Buffer) => b.toString().includes('locked') && resolve());
        holder.once('exit', (code) => reject(new Error(`the lock holder exited ${code} before locking`)));
      });
      const catalog = new Catalog(file);
      expect(catalog.update((d) => d)).toEqual([]); // refused with busy before: the holder is alive
      expect(JSON.parse(fs.readFileSync(file, 'utf8')).dumps).toEqual([]);
      await new Promise((r) => holder.once('close', r));
    } finally {
      if (prev === undefined) delete process.env.IMGSTREAM_LOCK_DIR;
      else process.env.IMGSTREAM_LOCK_DIR = prev;
    }
  });
});
