/**
 * One agent's risk baseline in memory: what its executed calls looked like (amounts per
 * series, known destinations, hours of day, busiest minutes and hours, tool transitions, data
 * classes and jurisdictions) plus its recent submissions (every call it sent in the recent
 * window, whatever the decision). Baselines learn only from executed calls; the recent window
 * sees everything, because a burst or a loop is made of the calls we refused too.
 *
 * The same structure is rebuilt from the database on load (risk-profiles.ts), so scoring is a
 * pure function of the stored history: the same history gives the same score.
 */
import { itemSeries, type CallFeatures } from './call-features.js';
import type { SessionFlow } from './data-flow.js';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
/** Caps that bound the memory one agent can hold, whatever it sends. */
export const MAX_AMOUNTS_PER_SERIES = 200;
export const MAX_ACTIVE_MINUTES = 1_000;
export const MAX_ACTIVE_HOURS = 720;
export const MAX_RECENT = 5_000;

export type SubmissionState = 'allowed' | 'approved' | 'pending' | 'denied' | 'expired';

export interface Submission {
  requestId: string;
  at: number;
  tool: string;
  digest: string;
  shape: string;
  series?: string | undefined;
  amount?: number | undefined;
  sessionId?: string | undefined;
  /** The call's destinations as one key (`kind=value` joined), for "same destination". */
  destinations: string;
  state: SubmissionState;
}

export function destinationKey(f: Pick<CallFeatures, 'destinations'>): string {
  return f.destinations.map((d) => `${d.kind}=${d.value}`).join('\u0000');
}

export interface AgentProfile {
  /** Executed calls learned (all time). */
  executed: number;
  /** series → amounts of executed calls and their times, oldest first (capped; two flat arrays, not objects, to keep profiles small). */
  amounts: Map<string, AmountSeries>;
  /** kind → value → first and last use (capped per kind, least recently used dropped). */
  known: Map<string, Map<string, KnownDestination>>;
  /** Executed calls per UTC hour of day. */
  hourOfDay: number[];
  /** Executed calls per minute index (epoch minutes), the most recent active minutes only. */
  minutes: Map<number, number>;
  /** Executed calls per hour index (epoch hours), the most recent active hours only. */
  hours: Map<number, number>;
  /** from-tool → to-tool → executed transitions; `^` is the start of a sequence. */
  transitions: Map<string, Map<string, number>>;
  dataClasses: Map<string, number>;
  jurisdictions: Map<string, number>;
  /** Effect classes of executed calls → how many. */
  effects: Map<string, number>;
  /** Session id → what the host reported the session read (digests only; recent window). */
  flows: Map<string, SessionFlow>;
  /** The last executed call. */
  last?: { tool: string; at: number } | undefined;
  /** Every call submitted in the recent window, oldest first. */
  recent: Submission[];
  /** Derived figures, recomputed only when what they summarize changed. */
  cache: {
    medians: Map<string, { hour: number; median: number; samples: number }>;
    minuteP95?: { key: number; value: number } | undefined;
    hourP95?: { key: number; value: number } | undefined;
  };
}

export const SEQUENCE_START = '^';
/** The known-values kind that holds recipients (normalized addresses, hosts, handles). */
export const RECIPIENT_KIND = '#recipient';

export interface AmountSeries {
  at: number[];
  amount: number[];
}

export function pushAmount(profile: AgentProfile, series: string, at: number, amount: number): void {
  let s = profile.amounts.get(series);
  if (!s) profile.amounts.set(series, (s = { at: [], amount: [] }));
  s.at.push(at);
  s.amount.push(amount);
  if (s.at.length > MAX_AMOUNTS_PER_SERIES) {
    s.at.splice(0, s.at.length - MAX_AMOUNTS_PER_SERIES);
    s.amount.splice(0, s.amount.length - MAX_AMOUNTS_PER_SERIES);
  }
  profile.cache.medians.delete(series);
}

export interface KnownDestination {
  first: number;
  last: number;
}

export function emptyProfile(): AgentProfile {
  return {
    executed: 0,
    amounts: new Map(),
    known: new Map(),
    hourOfDay: new Array<number>(24).fill(0),
    minutes: new Map(),
    hours: new Map(),
    transitions: new Map(),
    dataClasses: new Map(),
    jurisdictions: new Map(),
    effects: new Map(),
    flows: new Map(),
    last: undefined,
    recent: [],
    cache: { medians: new Map() },
  };
}

function bump<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Keep only the `max` largest keys of a numeric-keyed map (Maps iterate in insertion order). */
function capByKey(map: Map<number, number>, max: number): void {
  if (map.size <= max) return;
  const keys = [...map.keys()].sort((a, b) => a - b);
  for (const key of keys.slice(0, keys.length - max)) map.delete(key);
}

/** The tool a call at `at` follows: the last executed one, unless the sequence went quiet. */
export function previousTool(profile: AgentProfile, at: number, gapMs: number): string {
  return profile.last && at - profile.last.at <= gapMs && at >= profile.last.at ? profile.last.tool : SEQUENCE_START;
}

export interface Learned {
  /** The transition's origin (`^` at the start of a sequence). */
  from: string;
  /** Destinations dropped because their kind went over `maxKnown` (least recently used first). */
  evicted: Array<{ kind: string; value: string }>;
}

/** Learn one executed call (in memory; the store writes the same facts in the same transaction). */
export function learnExecuted(profile: AgentProfile, f: CallFeatures, at: number, gapMs: number, maxKnown: number): Learned {
  const from = previousTool(profile, at, gapMs);
  const evicted: Learned['evicted'] = [];
  profile.executed += 1;
  if (f.series !== undefined && f.amount !== undefined) {
    pushAmount(profile, f.series, at, f.amount);
  }
  if (f.items !== undefined) pushAmount(profile, itemSeries(f.tool), at, f.items);
  for (const e of f.effects) bump(profile.effects, e);
  for (const d of [...f.destinations, ...f.recipients.map((r) => ({ kind: RECIPIENT_KIND, value: r.key }))]) {
    let values = profile.known.get(d.kind);
    if (!values) profile.known.set(d.kind, (values = new Map<string, KnownDestination>()));
    // Delete first so iteration order stays least recently used first.
    const seen = values.get(d.value);
    values.delete(d.value);
    values.set(d.value, { first: seen ? Math.min(seen.first, at) : at, last: seen ? Math.max(seen.last, at) : at });
    while (values.size > maxKnown) {
      const oldest = values.keys().next().value as string;
      values.delete(oldest);
      evicted.push({ kind: d.kind, value: oldest });
    }
  }
  profile.hourOfDay[new Date(at).getUTCHours()]! += 1;
  // The busiest-minute/hour baselines (risk-scorer.ts) are cached per hour and read buckets
  // before the previous clock hour: drop them when a new bucket appears or an old one changes.
  const baselineEnd = (key: number | undefined) => (key === undefined ? -Infinity : (key - 1) * HOUR_MS);
  if (at < baselineEnd(profile.cache.minuteP95?.key)) profile.cache.minuteP95 = undefined;
  if (at < baselineEnd(profile.cache.hourP95?.key)) profile.cache.hourP95 = undefined;
  const minute = Math.floor(at / MINUTE_MS);
  if (!profile.minutes.has(minute)) profile.cache.minuteP95 = undefined;
  bump(profile.minutes, minute);
  capByKey(profile.minutes, MAX_ACTIVE_MINUTES);
  const hour = Math.floor(at / HOUR_MS);
  if (!profile.hours.has(hour)) profile.cache.hourP95 = undefined;
  bump(profile.hours, hour);
  capByKey(profile.hours, MAX_ACTIVE_HOURS);
  let to = profile.transitions.get(from);
  if (!to) profile.transitions.set(from, (to = new Map<string, number>()));
  bump(to, f.tool);
  bump(profile.dataClasses, f.dataClass);
  bump(profile.jurisdictions, f.jurisdiction);
  if (!profile.last || at >= profile.last.at) profile.last = { tool: f.tool, at };
  return { from, evicted };
}

/** Record a submission in the recent window, dropping what fell out of it. */
export function addSubmission(profile: AgentProfile, s: Submission, windowMs: number): void {
  profile.recent.push(s);
  trimRecent(profile, s.at, windowMs);
}

export function trimRecent(profile: AgentProfile, now: number, windowMs: number): void {
  const cutoff = now - windowMs;
  let drop = 0;
  while (drop < profile.recent.length && profile.recent[drop]!.at < cutoff) drop += 1;
  if (profile.recent.length - drop > MAX_RECENT) drop = profile.recent.length - MAX_RECENT;
  if (drop > 0) profile.recent.splice(0, drop);
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank 95th percentile. */
export function p95(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)]!;
}
