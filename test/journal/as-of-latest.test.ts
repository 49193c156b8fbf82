// --as-of latest at a protection destination: the newest recovery point (the window's
// end), past gaps and quiet times; never resolved silently to an older source snapshot that
// happens to be named "latest". (End to end, locally and through a peer daemon:
// protect-destination.test.ts.)
import { describe, expect, it } from 'vitest';
import { initialState, type ProtectState } from '../../src/journal/destination-state.js';
import { LATEST, recoveryPointFor, type HeldPoints, type PointInfo } from '../../src/journal/recovery-point.js';

const T0 = Date.UTC(2026, 11, 3, 10, 0, 0);
const point = (seq: number, start: number, end: number, snapshots: string[] = [], kind: PointInfo['kind'] = 'journal'): PointInfo => ({ seq, start, end, kind, snapshots, blocks: 1, bytes: 4096 });

function state(points: PointInfo[], extra: Partial<ProtectState> = {}): ProtectState {
  const last = points.at(-1);
  return { ...initialState({ uuid: 'u', path: '/v.vol', blockSize: 4096, logicalSize: 1 << 20 }, 3_600_000), seeded: true, baseTime: T0, intervalSeq: last?.seq ?? 0, intervalEnd: last?.end ?? T0, ...extra };
}

const held = (points: PointInfo[]): HeldPoints => ({ points, unreadable: null });

describe('--as-of latest', () => {
  it('is the last interval, after a resync gap too', () => {
    const pts = [point(1, T0, T0 + 1000), point(2, T0 + 1000, T0 + 9000, [], 'resync'), point(3, T0 + 9000, T0 + 10_000, ['nightly'])];
    expect(recoveryPointFor('/d.cdp', state(pts), held(pts), LATEST)).toEqual({ seq: 3, time: T0 + 10_000, snapshots: ['nightly'] });
  });

  it('on a quiet source is the disk of its last interval (the window reaches on without another point)', () => {
    const pts = [point(1, T0, T0 + 1000)];
    expect(recoveryPointFor('/d.cdp', state(pts, { quietTo: T0 + 60_000 }), held(pts), LATEST)).toEqual({ seq: 1, time: T0 + 1000, snapshots: [] });
  });

  it('with only the seed is the base', () => {
    expect(recoveryPointFor('/d.cdp', state([]), held([]), LATEST)).toEqual({ seq: 0, time: T0, snapshots: [] });
  });

  it('is refused as ambiguous when the source took a snapshot named latest, naming both times', () => {
    const pts = [point(1, T0, T0 + 1000, ['latest']), point(2, T0 + 1000, T0 + 2000)];
    expect(() => recoveryPointFor('/d.cdp', state(pts), held(pts), LATEST)).toThrow(
      `"latest" names both the newest recovery point of /d.cdp (${new Date(T0 + 2000).toISOString()}) and the source snapshot latest (${new Date(T0 + 1000).toISOString()})`,
    );
    // either time restores what it names
    expect(recoveryPointFor('/d.cdp', state(pts), held(pts), new Date(T0 + 1000).toISOString()).seq).toBe(1);
  });
});
