// Prints one plain closing line, "tests: N passed, N failed, N skipped", after vitest's
// own report, so CI logs can be read without knowing vitest's format. Before it, when
// tests were skipped because an external tool is missing (see external-tools.ts), how
// many, one line per tool with its package and the files needing it, and the one
// apt-get command installing them all.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';
import { MISSING_TOOLS_ENV, MISSING_TOOLS_FILE, TOOL_PACKAGES, type MissingToolRecord } from './tool-packages.js';

/**
 * The lines explaining skips for want of tools: how many tests the files that miss a tool
 * skipped, each tool with its package and those files, and one apt-get command for all.
 * `skippedIn(file)` counts a test file's skipped tests.
 */
export function missingToolLines(records: MissingToolRecord[], skippedIn: (file: string) => number, cwd = process.cwd()): string[] {
  const files = new Map<string, Set<string>>();
  for (const r of records) if (skippedIn(path.resolve(r.file)) > 0) files.set(r.tool, (files.get(r.tool) ?? new Set()).add(path.resolve(r.file)));
  if (files.size === 0) return [];
  const tools = [...files.keys()].sort();
  const allFiles = new Set([...files.values()].flatMap((f) => [...f]));
  const skipped = [...allFiles].reduce((n, f) => n + skippedIn(f), 0);
  const packages = [...new Set(tools.map((t) => TOOL_PACKAGES[t] ?? t))].sort();
  return [
    `${skipped} test${skipped === 1 ? '' : 's'} skipped because ${tools.length === 1 ? 'a tool is' : 'tools are'} not installed:`,
    ...tools.map((t) => `  ${t} (package ${TOOL_PACKAGES[t] ?? t}), needed by ${[...files.get(t)!].map((f) => path.relative(cwd, f)).sort().join(', ')}`),
    `install what is missing with: sudo apt-get install -y ${packages.join(' ')}`,
  ];
}

export default class SummaryReporter implements Reporter {
  private dir: string | undefined;

  onInit(): void {
    // the test workers inherit this and record missing tools there
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-missing-tools-'));
    process.env[MISSING_TOOLS_ENV] = this.dir;
  }

  private records(): MissingToolRecord[] {
    if (!this.dir) return [];
    try {
      const text = fs.readFileSync(path.join(this.dir, MISSING_TOOLS_FILE), 'utf8');
      return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as MissingToolRecord);
    } catch {
      return [];
    } finally {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const skippedByFile = new Map<string, number>();
    for (const m of modules) {
      let failedHere = 0;
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failedHere++;
        else {
          skipped++;
          skippedByFile.set(path.resolve(m.moduleId), (skippedByFile.get(path.resolve(m.moduleId)) ?? 0) + 1);
        }
      }
      // a file that failed to load, or whose hook failed (its tests then show as skipped),
      // counts as one failure: the closing line never says 0 failed when vitest failed
      failed += failedHere || (m.state() === 'failed' ? 1 : 0);
    }
    const explain = missingToolLines(this.records(), (f) => skippedByFile.get(f) ?? 0);
    process.stdout.write(`\n${explain.length ? `${explain.join('\n')}\n` : ''}tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
