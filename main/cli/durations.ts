import { CountersignError, quote } from '../../shared/errors.js';

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parse `30s`, `15m`, `24h`, `90d` into milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d{1,6})([smhd])$/.exec(text.trim());
  if (!match) throw new CountersignError('config_invalid', `${quote(text)} is not a duration like 30s, 15m, 24h or 90d`);
  return Number(match[1]) * UNITS[match[2]!]!;
}
