// fs.write made to start each call `stepMs` later than the one before (the real write,
// after a timer): a direct write that is refused is then handled before the writes queued
// behind it reach the descriptor. Restore with mockRestore() on what it returns.
import fs from 'node:fs';
import { vi } from 'vitest';

export function delayEachWrite(stepMs: number) {
  const real = fs.write.bind(fs) as (...a: unknown[]) => void;
  let calls = 0;
  return vi.spyOn(fs, 'write').mockImplementation(((...args: unknown[]) => {
    setTimeout(() => real(...args), stepMs * calls++);
  }) as unknown as typeof fs.write);
}
