// The schedule of `mirror start`: --every DURATION, or --cron EXPR (crontab(5) fields,
// read by croner). A malformed value is refused in one line naming the value and, for a
// crontab, the field that is wrong and what it takes: croner's own wording names fields
// by its internal names and counts from zero ("Invalid value for month: 12" for 13).
import { Cron } from 'croner';
import { InvalidInputError, UsageError } from '../core/errors.js';

export interface Schedule {
  describe: string;
  /** Milliseconds from `now` to the next run. */
  next(now: Date): number;
}

/** The five crontab fields, what each takes. */
const FIELDS = [
  { name: 'minute', takes: '0-59' },
  { name: 'hour', takes: '0-23' },
  { name: 'day-of-month', takes: '1-31 or L' },
  { name: 'month', takes: '1-12 or JAN-DEC' },
  { name: 'day-of-week', takes: '0-7 or SUN-SAT, 0 and 7 being Sunday' },
] as const;
/** Croner reads a sixth, leading field as seconds (kept: it always did). */
const SECONDS = { name: 'second', takes: '0-59' } as const;

const CRON_HINT = 'use five fields, minute hour day-of-month month day-of-week, each * or a value, list a,b, range a-b or step */n: e.g. "*/15 8-18 * * 1-5"';

function compiles(pattern: string): boolean {
  try {
    new Cron(pattern, { paused: true });
    return true;
  } catch {
    return false;
  }
}

/** The crontab `text` as croner takes it (fields separated by one space), or an error naming what is wrong. */
function parseCron(text: string): Cron {
  const bad = (why: string) => new InvalidInputError(`invalid --cron "${text}": ${why}`, CRON_HINT);
  const trimmed = text.trim();
  const fields = trimmed === '' ? [] : trimmed.split(/\s+/);
  // a nickname croner knows (@daily, @hourly, ...) is one word
  const nickname = fields.length === 1 && fields[0].startsWith('@');
  if (!nickname && fields.length !== 5 && fields.length !== 6) throw bad(fields.length === 0 ? 'it is empty' : `${fields.length} field${fields.length === 1 ? '' : 's'}, not five`);
  const pattern = fields.join(' ');
  let job: Cron;
  try {
    job = new Cron(pattern, { paused: true });
  } catch {
    if (nickname) throw bad(`${fields[0]} is not a schedule name (@yearly, @monthly, @weekly, @daily, @hourly)`);
    // the first field that fails on its own, the others left at *
    const named = fields.length === 6 ? [SECONDS, ...FIELDS] : FIELDS;
    const wrong = fields.findIndex((f, i) => !compiles(fields.map((g, j) => (j === i ? f : '*')).join(' ')));
    if (wrong < 0) throw bad('its fields do not go together');
    throw bad(`${named[wrong].name} field "${fields[wrong]}" is not valid: it takes ${named[wrong].takes}`);
  }
  if (!job.nextRun()) throw bad('it never runs (no such date)');
  return job;
}

/** --every 30s|5m|2h|1d, or --cron "M H DoM Mon DoW" (five fields, as crontab(5); a sixth leading field is seconds). */
export function parseSchedule(every: string | undefined, cron: string | undefined): Schedule {
  if ((every === undefined) === (cron === undefined)) throw new UsageError('give one of --every or --cron');
  if (every !== undefined) {
    const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(every.trim());
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
    const ms = m ? Number(m[1]) * unit[m[2] as keyof typeof unit] : NaN;
    if (!(ms >= 1000)) throw new InvalidInputError(`invalid --every "${every}"`, 'use a duration of at least 1s, e.g. 30s, 5m, 2h, 1d');
    return { describe: `every ${every}`, next: () => ms };
  }
  const job = parseCron(cron!);
  return {
    describe: `cron "${cron}"`,
    next: (now) => {
      const at = job.nextRun(now);
      // checked when parsed; a schedule whose last date passed while the loop ran
      if (!at) throw new InvalidInputError(`--cron "${cron}" never runs again`);
      return Math.max(0, at.getTime() - now.getTime());
    },
  };
}
