// A writer of a durable file (writeFileDurably: a destination's state, shipped.json, a
// restore's unfinished-stream note…) killed -9 between writing its temporary file and
// renaming it into place left FILE.PID.tmp for good. The first write of the file in a
// process removes those of processes that are gone; a live writer's stays.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { writeFileDurably } from '../../src/fs/durable-file.js';

const root = tempDir('imgstream-durable-file-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('writeFileDurably', () => {
  it("removes the temporary files of the file's writers that are gone, and keeps a live one's and other files'", () => {
    const file = path.join(root, 'state.json');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!; // exited: no such process now
    const live = process.ppid;
    const left = [`state.json.${gone}.tmp`, `state.json.${live}.tmp`, `other.json.${gone}.tmp`, 'state.json.x.tmp'];
    for (const n of left) fs.writeFileSync(path.join(root, n), 'half');
    writeFileDurably(file, 'whole\n');
    expect(fs.readFileSync(file, 'utf8')).toBe('whole\n');
    expect(fs.readdirSync(root).sort()).toEqual([`other.json.${gone}.tmp`, 'state.json', `state.json.${live}.tmp`, 'state.json.x.tmp'].sort());
  });
});
