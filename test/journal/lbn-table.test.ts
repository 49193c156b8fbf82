// LbnTable against a Map: any sequence of sets, gets and deletes (block numbers close
// together, in strides, past 2^32), through its growth, gives the same answers and keys.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LbnTable } from '../../src/journal/lbn-table.js';

const lbnOf = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.integer({ min: 0, max: 300 }).map((i) => i * 4096),
  fc.integer({ min: 0, max: 300 }).map((i) => 2 ** 40 + i * 2 ** 20),
);
const op = fc.oneof(
  fc.record({ set: lbnOf, value: fc.oneof(fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: -1000, max: -2 })) }),
  fc.record({ del: lbnOf }),
  fc.record({ get: lbnOf }),
);

describe('LbnTable', () => {
  it('answers as a Map does, through growth and deletions (property)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12000 }), (ops) => {
        const t = new LbnTable();
        const m = new Map<number, number>();
        for (const o of ops) {
          if ('set' in o) {
            t.set(o.set, o.value);
            m.set(o.set, o.value);
          } else if ('del' in o) {
            t.delete(o.del);
            m.delete(o.del);
          } else expect(t.get(o.get)).toBe(m.get(o.get) ?? -1);
        }
        expect(t.size).toBe(m.size);
        expect([...t.keys()].sort((a, b) => a - b)).toEqual([...m.keys()].sort((a, b) => a - b));
        for (const [k, v] of m) expect(t.get(k)).toBe(v);
      }),
      { numRuns: 60 },
    );
  });

  it('holds 100 000 blocks of a large disk and lets them all go, then starts again empty', () => {
    const t = new LbnTable();
    for (let i = 0; i < 100_000; i++) t.set(i * 7919 + 2 ** 33, i);
    expect(t.size).toBe(100_000);
    for (let i = 0; i < 100_000; i += 2) t.delete(i * 7919 + 2 ** 33);
    expect(t.size).toBe(50_000);
    for (let i = 0; i < 100_000; i++) expect(t.get(i * 7919 + 2 ** 33)).toBe(i % 2 ? i : -1);
    t.clear();
    expect(t.size).toBe(0);
    expect(t.get(2 ** 33 + 7919)).toBe(-1);
    expect(t.keys().length).toBe(0);
  });
});
