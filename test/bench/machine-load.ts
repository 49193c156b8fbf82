// How busy the machine was around the run: benchmarks on a shared 2-core machine are only
// as good as the quiet they ran in, so the report says how much there was.
import fs from 'node:fs';
import os from 'node:os';

export interface MachineLoad {
  /** 1-minute load average. */
  loadavg1: number;
  /** % of the last 60 s some runnable task waited for a CPU (Linux PSI), or null. */
  cpuPressure60: number | null;
  /** % of the last 60 s some task waited for I/O (Linux PSI), or null. */
  ioPressure60: number | null;
}

function pressure(kind: 'cpu' | 'io'): number | null {
  try {
    const m = /some avg10=[\d.]+ avg60=([\d.]+)/.exec(fs.readFileSync(`/proc/pressure/${kind}`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export function machineLoad(): MachineLoad {
  return { loadavg1: os.loadavg()[0], cpuPressure60: pressure('cpu'), ioPressure60: pressure('io') };
}

export function describeLoad(l: MachineLoad): string {
  const psi = (v: number | null) => (v === null ? 'n/a' : `${v.toFixed(0)}%`);
  return `load ${l.loadavg1.toFixed(1)}, CPU pressure ${psi(l.cpuPressure60)}, I/O pressure ${psi(l.ioPressure60)}`;
}
