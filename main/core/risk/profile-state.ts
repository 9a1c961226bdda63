/**
 * An agent's risk baseline as plain JSON (what a team stores as a per-agent snapshot in
 * risk_baselines, and what a hub imports from its SQLite baseline into risk_log): the learned
 * parts of an AgentProfile and its recent window, every map as an array of entries in its
 * iteration order (the known values' order is least recently used first), so restoring it gives
 * the same profile the events it summarizes give. Not in it: the per-hub reported reads (flows)
 * and the derived figures' cache (recomputed on use).
 */
import {
  MAX_ACTIVE_HOURS,
  MAX_ACTIVE_MINUTES,
  MAX_AMOUNTS_PER_SERIES,
  emptyProfile,
  type AgentProfile,
  type Submission,
} from './agent-profile.js';

export interface ProfileState {
  v: 1;
  executed: number;
  /** series, times, amounts (oldest first). */
  amounts: Array<[string, number[], number[]]>;
  /** kind, [value, first use, last use] least recently used first. */
  known: Array<[string, Array<[string, number, number]>]>;
  hourOfDay: number[];
  minutes: Array<[number, number]>;
  hours: Array<[number, number]>;
  transitions: Array<[string, Array<[string, number]>]>;
  dataClasses: Array<[string, number]>;
  jurisdictions: Array<[string, number]>;
  effects: Array<[string, number]>;
  last: { tool: string; at: number } | null;
  recent: Submission[];
}

export function profileState(profile: AgentProfile): ProfileState {
  return {
    v: 1,
    executed: profile.executed,
    amounts: [...profile.amounts].map(([series, s]) => [series, [...s.at], [...s.amount]]),
    known: [...profile.known].map(([kind, values]) => [kind, [...values].map(([value, d]) => [value, d.first, d.last])]),
    hourOfDay: [...profile.hourOfDay],
    minutes: [...profile.minutes],
    hours: [...profile.hours],
    transitions: [...profile.transitions].map(([from, to]) => [from, [...to]]),
    dataClasses: [...profile.dataClasses],
    jurisdictions: [...profile.jurisdictions],
    effects: [...profile.effects],
    last: profile.last === undefined ? null : { ...profile.last },
    // Canonical JSON has no undefined: absent fields are left out (restored as absent, read the same).
    recent: profile.recent.map((s) => Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)) as unknown as Submission),
  };
}

/** A fresh profile holding exactly what the state holds (no reported reads, an empty cache). */
export function restoreProfile(state: ProfileState): AgentProfile {
  if (state.v !== 1) throw new Error(`unknown risk baseline state version ${JSON.stringify(state.v)}`);
  const profile = emptyProfile();
  profile.executed = state.executed;
  for (const [series, at, amount] of state.amounts) profile.amounts.set(series, { at: [...at], amount: [...amount] });
  for (const [kind, values] of state.known)
    profile.known.set(kind, new Map(values.map(([value, first, last]) => [value, { first, last }])));
  profile.hourOfDay = [...state.hourOfDay];
  profile.minutes = new Map(state.minutes);
  profile.hours = new Map(state.hours);
  for (const [from, to] of state.transitions) profile.transitions.set(from, new Map(to));
  profile.dataClasses = new Map(state.dataClasses);
  profile.jurisdictions = new Map(state.jurisdictions);
  profile.effects = new Map(state.effects);
  profile.last = state.last === null ? undefined : { ...state.last };
  profile.recent = state.recent.map((s) => ({ ...s }));
  return profile;
}

/**
 * Add a baseline learned elsewhere (a hub's SQLite baseline from before its team shared them) to a
 * profile: counts add up, known values keep their earliest first and latest last use (least
 * recently used dropped past `maxKnown`), amounts merge by time (the newest kept per series), the
 * later last call wins. Its recent window is not merged (it is the team's, from risk_log).
 */
export function mergeBaseline(profile: AgentProfile, state: ProfileState, maxKnown: number): void {
  profile.executed += state.executed;
  for (const [series, at, amount] of state.amounts) {
    const mine = profile.amounts.get(series) ?? { at: [], amount: [] };
    const pairs = [...mine.at.map((t, i) => [t, mine.amount[i]!] as const), ...at.map((t, i) => [t, amount[i]!] as const)]
      .sort((x, y) => x[0] - y[0])
      .slice(-MAX_AMOUNTS_PER_SERIES);
    profile.amounts.set(series, { at: pairs.map((p) => p[0]), amount: pairs.map((p) => p[1]) });
  }
  for (const [kind, values] of state.known) {
    const merged = new Map(profile.known.get(kind));
    for (const [value, first, last] of values) {
      const seen = merged.get(value);
      merged.set(value, seen ? { first: Math.min(seen.first, first), last: Math.max(seen.last, last) } : { first, last });
    }
    // Least recently used first (a stable sort keeps ties in their order), then the cap.
    const ordered = [...merged].sort((x, y) => x[1].last - y[1].last).slice(-Math.max(1, maxKnown));
    profile.known.set(kind, new Map(ordered));
  }
  state.hourOfDay.forEach((n, hour) => (profile.hourOfDay[hour] = (profile.hourOfDay[hour] ?? 0) + n));
  addCounts(profile.minutes, state.minutes, MAX_ACTIVE_MINUTES);
  addCounts(profile.hours, state.hours, MAX_ACTIVE_HOURS);
  for (const [from, to] of state.transitions) {
    let mine = profile.transitions.get(from);
    if (!mine) profile.transitions.set(from, (mine = new Map<string, number>()));
    for (const [tool, n] of to) mine.set(tool, (mine.get(tool) ?? 0) + n);
  }
  for (const [map, entries] of [
    [profile.dataClasses, state.dataClasses],
    [profile.jurisdictions, state.jurisdictions],
    [profile.effects, state.effects],
  ] as const)
    for (const [key, n] of entries) map.set(key, (map.get(key) ?? 0) + n);
  if (state.last !== null && (profile.last === undefined || state.last.at > profile.last.at)) profile.last = { ...state.last };
  profile.cache = { medians: new Map() };
}

/** Add counts per numeric key, keeping only the `max` largest keys (in ascending order). */
function addCounts(map: Map<number, number>, entries: Array<[number, number]>, max: number): void {
  for (const [key, n] of entries) map.set(key, (map.get(key) ?? 0) + n);
  const kept = [...map].sort((x, y) => x[0] - y[0]).slice(-max);
  map.clear();
  for (const [key, n] of kept) map.set(key, n);
}
