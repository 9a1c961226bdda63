/**
 * The risk score of one call: a pure function of the settings, the agent's profile (its
 * learned baseline and recent submissions), its enrollment, the call and the time. Each factor
 * gives a strength from 0 to 1; it adds round(weight × strength) points; the score is the sum,
 * capped at 100. docs/risk.md explains every factor.
 */
import type { ToolCall } from '../../../shared/protocol.js';
import type { RiskAssessment, RiskFactor, RiskFactorName } from '../../../shared/risk.js';
import { SIDE_EFFECTS, recentWindowMs, type EffectClass, type RiskConfig } from './risk-config.js';
import { clip, itemSeries, type CallFeatures } from './call-features.js';
import { HOUR_MS, MINUTE_MS, RECIPIENT_KIND, destinationKey, median, p95, previousTool, type AgentProfile } from './agent-profile.js';
import { destinationKeys, digestKey, valueKeys, within, type Seen, type SessionFlow } from './data-flow.js';

export interface ScoredAgent {
  dataClasses: readonly string[];
  jurisdictions: readonly string[];
  model?: string | undefined;
  agentVersion?: string | undefined;
}

interface Finding {
  strength: number;
  observed: RiskFactor['observed'];
  explanation: string;
}

/** User-supplied text inside a sentence: quoted, and cut so a long value cannot crowd it out. */
const q = (s: string) => JSON.stringify(clip(s, 120, '…'));
const MAX_OBSERVED_TEXT = 256;
const MAX_EXPLANATION = 1024;
const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);
/** One formatter for every sentence: Number.toLocaleString builds a new one each call (~25 µs). */
const AMOUNT_FORMAT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const fmt = (n: number) => AMOUNT_FORMAT.format(n);
const ratio1 = (n: number) => Math.round(n * 10) / 10;
const days = (ms: number) => Math.round(ms / (24 * HOUR_MS));

/** The agent's median amount for a series within the lookback window, and how many samples. */
function seriesMedian(
  config: RiskConfig,
  profile: AgentProfile,
  series: string,
  now: number,
): { median: number; samples: number } | undefined {
  const list = profile.amounts.get(series);
  if (!list) return undefined;
  // The window starts on an hour boundary, so the median can be cached for the hour and is the
  // same whenever it is computed (learning a new amount drops the cached one).
  const hour = Math.floor(now / HOUR_MS);
  const cached = profile.cache.medians.get(series);
  if (cached !== undefined && cached.hour === hour) return cached.samples === 0 ? undefined : cached;
  const cutoff = hour * HOUR_MS - config.lookbackMs;
  const values: number[] = [];
  for (let i = 0; i < list.at.length; i++) {
    const at = list.at[i]!;
    if (at >= cutoff && at < (hour + 1) * HOUR_MS) values.push(list.amount[i]!);
  }
  const result = { hour, median: values.length === 0 ? 0 : median(values), samples: values.length };
  profile.cache.medians.set(series, result);
  return values.length === 0 ? undefined : result;
}

/**
 * The 95th percentile of the agent's executed calls per active minute (or hour), from the
 * lookback window up to the start of the previous clock hour: what is happening now (a burst
 * whose calls were executed) must not raise its own baseline. Hour-aligned, so it is cached
 * for the hour and is the same whenever it is computed.
 */
function busiest(
  cache: { key: number; value: number } | undefined,
  buckets: Map<number, number>,
  bucketMs: number,
  lookbackMs: number,
  now: number,
): { key: number; value: number } {
  const key = Math.floor(now / HOUR_MS);
  if (cache && cache.key === key) return cache;
  const end = (key - 1) * HOUR_MS;
  const from = Math.floor((end - lookbackMs) / bucketMs);
  const to = Math.floor(end / bucketMs);
  const values: number[] = [];
  for (const [bucket, n] of buckets) if (bucket >= from && bucket < to) values.push(n);
  return { key, value: p95(values) };
}

function minuteBaseline(config: RiskConfig, profile: AgentProfile, now: number): number {
  profile.cache.minuteP95 = busiest(profile.cache.minuteP95, profile.minutes, MINUTE_MS, config.lookbackMs, now);
  return profile.cache.minuteP95.value;
}

function hourBaseline(config: RiskConfig, profile: AgentProfile, now: number): number {
  profile.cache.hourP95 = busiest(profile.cache.hourP95, profile.hours, HOUR_MS, config.lookbackMs, now);
  return profile.cache.hourP95.value;
}

const EFFECT_WORDS: Record<EffectClass, string> = {
  moves_money: 'moves money',
  irreversible: 'cannot be undone',
  deletes: 'deletes',
  changes_access: 'changes credentials or access',
  shares_externally: 'shares outside the organization',
  sends_to_recipients: 'sends to recipients',
  changes_system: 'changes a running system',
  reads_sensitive: 'reads sensitive data',
  reads_untrusted: 'reads untrusted content',
  read_only: 'only reads',
};
/** Effects whose scale matters: many items at once is what makes them costly. */
const BULK_EFFECTS: ReadonlySet<EffectClass> = new Set([
  'deletes',
  'shares_externally',
  'sends_to_recipients',
  'irreversible',
  'changes_access',
  'moves_money',
]);

/** Whether any of the digests was read before `now`, within the recent window. */
function readBefore(map: Map<string, Seen>, digests: readonly string[], now: number, windowMs: number): boolean {
  for (const d of digests) if (within(map.get(d), now, windowMs)) return true;
  return false;
}

/** Why the call's session counts as having read untrusted content, if it does (host reports or the calls it made). */
function sessionTaint(
  config: RiskConfig,
  profile: AgentProfile,
  f: CallFeatures,
  flow: SessionFlow | undefined,
  now: number,
): string | undefined {
  const windowMs = recentWindowMs(config);
  if (flow && within(flow.untrustedAt, now, windowMs)) {
    const what = flow.sources
      .filter((s) => s.at <= now && s.at >= now - windowMs)
      .slice(-2)
      .map((s) => s.what);
    return `the session read untrusted content (${what.join('; ')})`;
  }
  if (f.sessionId === undefined) return undefined;
  for (let i = 0; i < profile.recent.length; i++) {
    const s = profile.recent[i]!;
    if (s.sessionId === f.sessionId && s.at <= now && config.tools[s.tool]?.effects.includes('reads_untrusted')) {
      return `earlier in the session the agent called ${q(s.tool)}, which reads untrusted content`;
    }
  }
  return undefined;
}

export function scoreCall(
  config: RiskConfig,
  profile: AgentProfile,
  agent: ScoredAgent,
  call: ToolCall,
  f: CallFeatures,
  now: number,
): RiskAssessment {
  const F = config.factors;
  const learned = profile.executed >= config.minExecutedCalls;
  const findings = new Map<RiskFactorName, Finding>();
  const add = (name: RiskFactorName, finding: Finding | undefined) => {
    if (finding && finding.strength > 0) findings.set(name, finding);
  };

  // Amount against the agent's median for this tool and currency.
  if (f.series !== undefined && f.amount !== undefined) {
    const base = seriesMedian(config, profile, f.series, now);
    const unit = f.currency ? ` ${f.currency}` : '';
    if (base && base.samples >= F.amount_vs_baseline.minSamples && base.median > 0) {
      const r = f.amount / base.median;
      const { ratioLow, ratioHigh } = F.amount_vs_baseline;
      if (r >= ratioLow) {
        add('amount_vs_baseline', {
          strength: 0.5 + 0.5 * clamp01((r - ratioLow) / (ratioHigh - ratioLow)),
          observed: { amount: f.amount, median: base.median, ratio: ratio1(r), samples: base.samples },
          explanation: `amount is ${ratio1(r)}x this agent's ${days(config.lookbackMs)}-day median (${fmt(f.amount)}${unit} against ${fmt(base.median)}${unit} over ${base.samples} executed calls)`,
        });
      }
    } else if (learned && !base) {
      add('amount_vs_baseline', {
        strength: 0.5,
        observed: { amount: f.amount, samples: 0 },
        explanation: `this is the agent's first ${f.tool} in ${f.currency ? f.currency : 'this series'} in ${days(config.lookbackMs)} days (${fmt(f.amount)}${unit})`,
      });
    }
  }

  // A destination (payee, account, host, repository, environment, ...) the agent never used.
  if (learned) {
    const fresh = f.destinations.filter((d) => !profile.known.get(d.kind)?.has(d.value));
    const name = (d: { kind: string; value: string }) => `${d.kind.replace(/_/g, ' ')} ${q(d.value)}`;
    if (fresh.length > 0) {
      const observed: RiskFactor['observed'] = {};
      for (const d of fresh) observed[d.kind] = d.value;
      add('new_destination', {
        strength: 1,
        observed,
        explanation: `${fresh.map(name).join(' and ')} ${fresh.length === 1 ? 'has' : 'have'} never been used by this agent in an executed call`,
      });
    } else {
      // Recently added destinations stay suspect for a while (a new payee's cooling-off period).
      const recent = f.destinations.filter((d) => {
        const seen = profile.known.get(d.kind)?.get(d.value);
        return seen !== undefined && now - seen.first < F.new_destination.recentMs;
      });
      if (recent.length > 0) {
        const first = Math.min(...recent.map((d) => profile.known.get(d.kind)!.get(d.value)!.first));
        const observed: RiskFactor['observed'] = { firstUsedMinutesAgo: Math.round((now - first) / MINUTE_MS) };
        for (const d of recent) observed[d.kind] = d.value;
        add('new_destination', {
          strength: 0.5,
          observed,
          explanation: `${recent.map(name).join(' and ')} ${recent.length === 1 ? 'was' : 'were'} first used by this agent ${Math.round((now - first) / MINUTE_MS)} minutes ago`,
        });
      }
    }
  }

  // Call rate and burst: this minute and this hour against the agent's busiest usual ones.
  {
    let lastMinute = 1;
    let lastHour = 1;
    for (let i = 0; i < profile.recent.length; i++) {
      const s = profile.recent[i]!;
      if (s.at > now) continue;
      if (s.at > now - HOUR_MS) lastHour += 1;
      if (s.at > now - MINUTE_MS) lastMinute += 1;
    }
    const { burstMinCalls, hourMinCalls, multiplier } = F.call_rate;
    const minuteLimit = Math.max(burstMinCalls, multiplier * minuteBaseline(config, profile, now));
    const hourLimit = Math.max(hourMinCalls, multiplier * hourBaseline(config, profile, now));
    const minuteStrength = lastMinute >= 2 * minuteLimit ? 1 : lastMinute > minuteLimit ? 0.5 : 0;
    const hourStrength = lastHour >= 2 * hourLimit ? 1 : lastHour > hourLimit ? 0.5 : 0;
    if (minuteStrength > 0 || hourStrength > 0) {
      const byMinute = minuteStrength >= hourStrength;
      add('call_rate', {
        strength: Math.max(minuteStrength, hourStrength),
        observed: {
          lastMinute,
          lastHour,
          usualMinute: minuteBaseline(config, profile, now),
          usualHour: hourBaseline(config, profile, now),
        },
        explanation: byMinute
          ? `${lastMinute} calls in the last minute; this agent's busiest usual minute has ${minuteBaseline(config, profile, now)}`
          : `${lastHour} calls in the last hour; this agent's busiest usual hour has ${hourBaseline(config, profile, now)}`,
      });
    }
  }

  // The same call again (a loop), or the same call with only volatile parameters changed.
  {
    const since = now - F.repeated_call.windowMs;
    let identical = 0;
    let similar = 0;
    for (let i = 0; i < profile.recent.length; i++) {
      const s = profile.recent[i]!;
      if (s.at < since || s.at > now) continue;
      if (s.digest === f.digest) identical += 1;
      else if (s.shape === f.shape) similar += 1;
    }
    const minutes = Math.round(F.repeated_call.windowMs / MINUTE_MS);
    if (identical >= F.repeated_call.identicalRepeats) {
      add('repeated_call', {
        strength: identical >= 2 * F.repeated_call.identicalRepeats ? 1 : 0.5,
        observed: { identical, similar },
        explanation: `the same call was already sent ${identical} times in the last ${minutes} minutes`,
      });
    } else if (identical + similar >= F.repeated_call.similarRepeats) {
      add('repeated_call', {
        strength: identical + similar >= 2 * F.repeated_call.similarRepeats ? 0.75 : 0.5,
        observed: { identical, similar },
        explanation: `${identical + similar} nearly identical calls (only ${F.repeated_call.similarRepeats > 0 ? 'volatile parameters differ' : ''}) were sent in the last ${minutes} minutes`,
      });
    }
  }

  // Call depth and fan-out within one agent session.
  {
    let strength = 0;
    const observed: RiskFactor['observed'] = {};
    const parts: string[] = [];
    if (f.depth !== undefined && f.depth > F.call_depth.maxDepth) {
      strength = 0.5 + 0.5 * clamp01((f.depth - F.call_depth.maxDepth) / F.call_depth.maxDepth);
      observed.depth = f.depth;
      parts.push(`the call is ${f.depth} levels deep in its session (usual limit ${F.call_depth.maxDepth})`);
    }
    if (f.sessionId !== undefined) {
      let sessionCalls = 1;
      for (let i = 0; i < profile.recent.length; i++) {
        const s = profile.recent[i]!;
        if (s.sessionId === f.sessionId && s.at <= now) sessionCalls += 1;
      }
      if (sessionCalls > F.call_depth.maxSessionCalls) {
        strength = 1;
        observed.sessionCalls = sessionCalls;
        parts.push(`session ${q(f.sessionId)} has made ${sessionCalls} calls in the last hour`);
      }
    }
    if (strength > 0) add('call_depth', { strength, observed, explanation: parts.join('; ') });
  }

  // A tool transition this agent rarely or never made.
  {
    const from = previousTool(profile, now, F.unusual_sequence.gapMs);
    const next = profile.transitions.get(from);
    let total = 0;
    if (next) for (const n of next.values()) total += n;
    if (next && total >= F.unusual_sequence.minTransitions) {
      const seen = next.get(f.tool) ?? 0;
      const fromText = from === '^' ? 'the start of a sequence' : q(from);
      if (seen === 0) {
        add('unusual_sequence', {
          strength: 1,
          observed: { from, seen, total },
          explanation: `this agent has never called ${q(f.tool)} after ${fromText} (${total} transitions seen)`,
        });
      } else if (seen / total < F.unusual_sequence.rareFraction) {
        add('unusual_sequence', {
          strength: 0.5,
          observed: { from, seen, total },
          explanation: `this agent called ${q(f.tool)} after ${fromText} in only ${seen} of ${total} transitions`,
        });
      }
    }
  }

  // Where the input that led to the call came from (declared by the agent host).
  {
    const P = F.untrusted_provenance;
    let strength = call.provenance.length === 0 ? P.undeclared : 0;
    let worst = '';
    for (const label of call.provenance) {
      const s = P.labels[label] ?? P.unknownLabel;
      if (worst === '' || s > strength) {
        worst = label;
        strength = s;
      }
    }
    if (strength > 0) {
      add('untrusted_provenance', {
        strength,
        observed: { provenance: call.provenance.join(',') || '(none)' },
        explanation:
          call.provenance.length === 0
            ? 'the agent host did not declare where the input that led to this call came from'
            : `the input that led to this call came from ${q(worst)}`,
      });
    }
  }

  // Outside the hours of day (UTC) this agent usually works.
  if (learned) {
    const h = new Date(now).getUTCHours();
    const around = profile.hourOfDay[(h + 23) % 24]! + profile.hourOfDay[h]! + profile.hourOfDay[(h + 1) % 24]!;
    let total = 0;
    for (const n of profile.hourOfDay) total += n;
    const share = total === 0 ? 0 : around / total;
    if (share < F.off_hours.minShare) {
      const hh = String(h).padStart(2, '0');
      add('off_hours', {
        strength: 1,
        observed: { hourUtc: h, share: Math.round(share * 1000) / 1000, executed: total },
        explanation: `${around} of this agent's ${total} executed calls were made between ${String((h + 23) % 24).padStart(2, '0')}:00 and ${String((h + 2) % 24).padStart(2, '0')}:00 UTC; this call is at ${hh}:${String(new Date(now).getUTCMinutes()).padStart(2, '0')} UTC`,
      });
    }
  }

  // Data class and jurisdiction against the agent's enrolled scope and its history.
  {
    const outside: string[] = [];
    if (!agent.dataClasses.includes(f.dataClass)) outside.push(`data class ${q(f.dataClass)}`);
    if (!agent.jurisdictions.includes(f.jurisdiction)) outside.push(`jurisdiction ${q(f.jurisdiction)}`);
    if (outside.length > 0) {
      add('data_scope', {
        strength: 1,
        observed: { dataClass: f.dataClass, jurisdiction: f.jurisdiction, inScope: false },
        explanation: `${outside.join(' and ')} ${outside.length === 1 ? 'is' : 'are'} outside the agent's enrolled scope`,
      });
    } else if (learned) {
      const unseen: string[] = [];
      if (!profile.dataClasses.has(f.dataClass)) unseen.push(`data class ${q(f.dataClass)}`);
      if (!profile.jurisdictions.has(f.jurisdiction)) unseen.push(`jurisdiction ${q(f.jurisdiction)}`);
      if (unseen.length > 0) {
        add('data_scope', {
          strength: 0.5,
          observed: { dataClass: f.dataClass, jurisdiction: f.jurisdiction, inScope: true },
          explanation: `first executed call with ${unseen.join(' and ')} for this agent (in scope)`,
        });
      }
    }
  }

  // Model or agent version other than the enrolled one.
  {
    const parts: string[] = [];
    const observed: RiskFactor['observed'] = {};
    if (agent.model !== undefined && call.model !== agent.model) {
      observed.model = call.model ?? '(none)';
      parts.push(
        call.model === undefined
          ? `the call declares no model; the agent was enrolled with ${q(agent.model)}`
          : `the call comes from model ${q(call.model)}; the agent was enrolled with ${q(agent.model)}`,
      );
    }
    if (agent.agentVersion !== undefined && call.agentVersion !== agent.agentVersion) {
      observed.agentVersion = call.agentVersion ?? '(none)';
      parts.push(
        call.agentVersion === undefined
          ? `the call declares no agent version; ${q(agent.agentVersion)} was enrolled`
          : `the call comes from agent version ${q(call.agentVersion)}; ${q(agent.agentVersion)} was enrolled`,
      );
    }
    if (parts.length > 0) add('agent_version', { strength: 1, observed, explanation: parts.join('; ') });
  }

  // Many calls of one tool and currency that add up within a window (a transfer split in ten).
  if (f.series !== undefined && f.amount !== undefined) {
    const S = F.split_transaction;
    const base = seriesMedian(config, profile, f.series, now);
    if (base && base.samples >= F.amount_vs_baseline.minSamples && base.median > 0) {
      const here = destinationKey(f);
      let count = 1;
      let sameDestination = 1;
      let sum = f.amount;
      for (let i = 0; i < profile.recent.length; i++) {
        const s = profile.recent[i]!;
        if (s.series !== f.series || s.amount === undefined || s.at < now - S.windowMs || s.at > now) continue;
        if (s.state === 'denied' || s.state === 'expired') continue;
        count += 1;
        sum += s.amount;
        if (s.destinations === here) sameDestination += 1;
      }
      const r = sum / base.median;
      // An agent that usually makes many calls an hour moves more in an hour: the sum must also
      // exceed its busiest usual hour's call count at its median amount.
      const usualHour = hourBaseline(config, profile, now);
      if (count >= S.minCalls && r >= Math.max(S.sumRatio, usualHour)) {
        const unit = f.currency ? ` ${f.currency}` : '';
        // Pieces to one destination are a split; the same volume spread over many is more likely a batch.
        const split = sameDestination >= S.minCalls;
        add('split_transaction', {
          strength: split ? 1 : 0.5,
          observed: { calls: count, sameDestination, sum: Math.round(sum * 100) / 100, median: base.median, ratio: ratio1(r) },
          explanation: `${count} ${f.tool} calls${split ? ` (${sameDestination} to the same destination)` : ''} totalling ${fmt(sum)}${unit} in the last ${Math.round(S.windowMs / MINUTE_MS)} minutes, ${ratio1(r)}x this agent's median`,
        });
      }
    }
  }

  // What the call does (effect classes) against what this agent has done.
  // Reports count when made before the call and within the recent window (memory and the
  // database, which reloads that window, agree).
  const windowMs = recentWindowMs(config);
  const flow = f.sessionId !== undefined ? profile.flows.get(f.sessionId) : undefined;
  const reported = flow !== undefined && within(flow.reportAt, now, windowMs);
  const taintedBy = f.sideEffect ? sessionTaint(config, profile, f, flow, now) : undefined;
  if (learned && f.sideEffect) {
    const unseen = f.effects.filter((e) => SIDE_EFFECTS.has(e) && !profile.effects.has(e));
    if (unseen.length > 0) {
      add('new_effect', {
        strength: 1,
        observed: { effects: unseen.join(','), tool: f.tool },
        explanation: `this agent has never made an executed call that ${unseen.map((e) => EFFECT_WORDS[e]).join(' or ')} (${q(f.tool)})`,
      });
    }
  }
  if (learned && f.recipients.length > 0) {
    const known = profile.known.get(RECIPIENT_KIND);
    const fresh = f.recipients.filter((r) => r.external && !known?.has(r.key));
    if (fresh.length > 0) {
      add('new_recipient', {
        strength: 1,
        observed: { recipients: fresh.map((r) => r.key).join(','), count: fresh.length },
        explanation: `${fresh
          .slice(0, 3)
          .map((r) => q(r.key))
          .join(
            ', ',
          )}${fresh.length > 3 ? ` and ${fresh.length - 3} more` : ''} ${fresh.length === 1 ? 'is' : 'are'} outside the organization and never received anything from this agent`,
      });
    }
  }
  if (f.effects.includes('moves_money') && f.amount !== undefined && f.freeText.length > 0) {
    const M = F.memo_exfiltration;
    const text = f.freeText.reduce((a, b) => (b.length > a.length ? b : a));
    const base = f.series !== undefined ? seriesMedian(config, profile, f.series, now) : undefined;
    const tinyForAgent = base !== undefined && base.samples >= F.amount_vs_baseline.minSamples && f.amount < M.tinyFraction * base.median;
    if ((f.amount <= M.tinyAmount || tinyForAgent) && text.trim().length >= M.minChars) {
      const unit = f.currency ? ` ${f.currency}` : '';
      add('memo_exfiltration', {
        strength: 1,
        observed: { amount: f.amount, chars: text.length },
        explanation: `a transfer of only ${fmt(f.amount)}${unit} carries ${text.length} characters of free text (${q(text)}): a tiny payment's memo is a known way to leak data`,
      });
    }
  }
  if (f.effects.includes('changes_access')) {
    let why = taintedBy;
    if (why === undefined) {
      const labels = F.untrusted_provenance.labels;
      const worst = call.provenance.find((l) => (labels[l] ?? F.untrusted_provenance.unknownLabel) >= 0.5);
      if (worst !== undefined) why = `the host says the input came from ${q(worst)}`;
    }
    if (why !== undefined) {
      add('tainted_access_change', {
        strength: 1,
        observed: { tool: f.tool },
        explanation: `a credential or access change (${q(f.tool)}) in a session where ${why}`,
      });
    }
  }
  if (f.items !== undefined && f.effects.some((e) => BULK_EFFECTS.has(e))) {
    const B = F.bulk_action;
    const list = profile.amounts.get(itemSeries(f.tool));
    let usual = 0;
    if (list)
      for (let i = 0; i < list.at.length; i++)
        if (list.at[i]! <= now && list.at[i]! >= now - config.lookbackMs) usual = Math.max(usual, list.amount[i]!);
    const limit = Math.max(B.minItems, B.multiplier * usual);
    if (f.items > limit) {
      add('bulk_action', {
        strength: f.items >= 2 * limit ? 1 : 0.5,
        observed: { items: f.items, usualMax: usual, limit },
        explanation: `${f.items} items in one ${q(f.tool)} call; this agent's largest in ${days(config.lookbackMs)} days was ${usual}`,
      });
    }
  }
  // Data flow: where the call's destinations, recipients and the addresses in its free text came from.
  if (f.sideEffect) {
    const D = F.data_flow;
    // Destinations and recipients first (their match keys are computed only when reports exist).
    const candidates: Array<{ shown: string; value: string; keys?: string[]; known: boolean; destination: boolean }> = [];
    for (const d of f.destinations)
      candidates.push({
        shown: `${d.kind.replace(/_/g, ' ')} ${q(d.value)}`,
        value: d.value,
        known: profile.known.get(d.kind)?.has(d.value) ?? false,
        destination: true,
      });
    const knownRecipients = profile.known.get(RECIPIENT_KIND);
    for (const r of f.recipients)
      candidates.push({ shown: `recipient ${q(r.value)}`, value: r.value, known: knownRecipients?.has(r.key) ?? false, destination: true });
    let strong: string[] = [];
    let unaccounted: string[] = [];
    if (reported) {
      // In free text only the addresses and links count (what phishing and exfiltration use);
      // numbers quoted from what was read are ordinary in a summary.
      for (const text of f.freeText) {
        for (const key of valueKeys(text, false)) {
          if (key.startsWith('email:') || key.startsWith('host:'))
            candidates.push({ shown: q(key.slice(key.indexOf(':') + 1)), value: '', keys: [key], known: false, destination: false });
        }
      }
      for (const c of candidates) {
        if (c.known) continue;
        const digests = (c.keys ?? destinationKeys(c.value)).map(digestKey);
        const inUntrusted = readBefore(flow.untrusted, digests, now, windowMs);
        const inTrusted = readBefore(flow.trusted, digests, now, windowMs);
        if (inUntrusted && !inTrusted) strong.push(c.shown);
        else if (!inUntrusted && !inTrusted && c.destination && taintedBy !== undefined) unaccounted.push(c.shown);
      }
    } else if (taintedBy !== undefined) {
      unaccounted = candidates.filter((c) => !c.known).map((c) => c.shown);
    }
    strong = strong.slice(0, 4);
    if (strong.length > 0) {
      add('data_flow', {
        strength: D.strong,
        observed: { values: strong.join(', ').slice(0, 250), reported },
        explanation: `${strong.join(', ')} appeared in untrusted content this session read and never in trusted input`,
      });
    } else if (unaccounted.length > 0) {
      add('data_flow', {
        strength: D.unaccounted,
        observed: { values: unaccounted.slice(0, 4).join(', ').slice(0, 250), reported },
        explanation: `${taintedBy}, and ${unaccounted.slice(0, 4).join(', ')} ${unaccounted.length === 1 ? 'is' : 'are'} new to this agent with no reported trusted origin`,
      });
    } else if (taintedBy !== undefined) {
      add('data_flow', { strength: D.tainted, observed: { reported }, explanation: `${taintedBy}` });
    }
  }
  // The provenance label and the data flow measure the same thing: with reports, the data flow
  // (value by value) replaces the session-wide label; without, the larger of the two counts.
  if (findings.has('untrusted_provenance') && (reported || findings.has('data_flow'))) {
    const label = findings.get('untrusted_provenance')!;
    const flowFinding = findings.get('data_flow');
    const labelPoints = label.strength * F.untrusted_provenance.weight;
    const flowPoints = flowFinding ? flowFinding.strength * F.data_flow.weight : 0;
    if (reported || flowPoints >= labelPoints) findings.delete('untrusted_provenance');
    else findings.delete('data_flow');
  }

  if (!learned) {
    add('baseline_learning', {
      strength: 1,
      observed: { executed: profile.executed, needed: config.minExecutedCalls },
      explanation: `this agent has ${profile.executed} executed call${profile.executed === 1 ? '' : 's'}; its baseline is learned from the first ${config.minExecutedCalls}, so baseline checks are not applied yet`,
    });
  }

  const factors: RiskFactor[] = [];
  let score = 0;
  for (const [name, finding] of findings) {
    const weight = (F as Record<string, { weight: number }>)[name]!.weight;
    const points = Math.round(weight * finding.strength);
    if (points <= 0) continue;
    const observed: RiskFactor['observed'] = {};
    for (const [k, v] of Object.entries(finding.observed)) observed[k] = typeof v === 'string' ? clip(v, MAX_OBSERVED_TEXT - 1, '…') : v;
    factors.push({ name, points, weight, observed, explanation: clip(finding.explanation, MAX_EXPLANATION - 1, '…') });
    score += points;
  }
  return { score: Math.min(100, score), factors };
}
