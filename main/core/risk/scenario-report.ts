/**
 * Replays a labelled scenario set through the real risk engine (a throwaway SQLite database,
 * the same profile store and scorer the decision path uses) and reports the detection rate
 * and the false-positive rate at a threshold.
 *
 * Each scenario is one agent: its history (calls that were executed or denied, learned as the
 * decision path would) and then its probe calls, each labelled benign or malicious. A probe is
 * scored at its own time. One below the threshold is executed (learned) — so a missed attack
 * poisons the baseline, as it would in production. One at or above it is held, and the
 * approvers are assumed to be right: a benign call is approved (learned), a malicious one
 * denied (not learned).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readUserFile } from '../user-files.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { openStore } from '../store/database.js';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';
import { sessionReadSchema, toolCallSchema, type ToolCall } from '../../../shared/protocol.js';
import { callDigest } from '../tokens/call-digest.js';
import { RiskEngine } from './risk-engine.js';
import { parseRiskConfig, SIDE_EFFECTS, type EffectClass, type RiskConfig } from './risk-config.js';

const callFields = {
  at: z.int().nonnegative(),
  call: toolCallSchema,
  /** What the host reports the call's session read just before it (session.report; docs/protocol.md). */
  reads: z.array(sessionReadSchema).max(32).optional(),
};

export const scenarioSetSchema = z.strictObject({
  version: z.literal(1),
  description: z.string(),
  /** Where the scenarios come from: id → citation (hand-written sets cite public attack descriptions). */
  sources: z.record(z.string().min(1).max(64), z.string().max(1000)).optional(),
  /** Tool declarations and internal domains for this set's tools, laid over the risk settings' own. */
  risk: z
    .strictObject({
      internalDomains: z.array(z.string()).optional(),
      tools: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
  scenarios: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(128),
        kind: z.string().min(1).max(64),
        /** `benign`, or the attack this scenario plays (account_takeover, loop, ...). */
        label: z.string().min(1).max(64),
        description: z.string().max(1000),
        /** The id of the source (in `sources`) the scenario was written from. */
        source: z.string().min(1).max(64).optional(),
        agent: z.strictObject({
          dataClasses: z.array(z.string()).min(1),
          jurisdictions: z.array(z.string()).min(1),
          model: z.string().optional(),
          agentVersion: z.string().optional(),
        }),
        history: z.array(z.strictObject({ ...callFields, outcome: z.enum(['executed', 'denied']) })),
        probes: z.array(z.strictObject({ ...callFields, label: z.enum(['benign', 'malicious']) })).min(1),
      }),
    )
    .min(1),
});
export type ScenarioSet = z.infer<typeof scenarioSetSchema>;
export type Scenario = ScenarioSet['scenarios'][number];

export interface LabelRow {
  label: string;
  scenarios: number;
  detected: number;
  rate: number;
}
/** Per source of a hand-written set: malicious scenarios detected, benign side-effecting calls flagged. */
export interface SourceRow {
  source: string;
  scenarios: number;
  detected: number;
  detectionRate: number;
  benignCalls: number;
  benignFlagged: number;
  falsePositiveRate: number;
}
/** Per effect class (of the probe's tool): malicious calls flagged, benign side-effecting calls flagged. */
export interface EffectRow {
  effect: string;
  maliciousCalls: number;
  maliciousFlagged: number;
  detectionRate: number;
  benignCalls: number;
  benignFlagged: number;
  falsePositiveRate: number;
}

export interface ScenarioReport {
  threshold: number;
  scenarios: number;
  /** `withheld`: every call's provenance replaced by `user` and no session reads reported. */
  provenance: 'as recorded' | 'withheld';
  malicious: { scenarios: number; detected: number; detectionRate: number; byLabel: LabelRow[]; missed: string[] };
  benign: {
    probes: number;
    flagged: number;
    falsePositiveRate: number;
    scenarios: number;
    scenariosFlagged: number;
    flaggedIds: string[];
    /** Benign calls whose tool has a side effect (or declares no effects): the denominator the issue's targets use. */
    sideEffecting: { probes: number; flagged: number; falsePositiveRate: number };
  };
  bySource: SourceRow[];
  byEffect: EffectRow[];
  /** Mean scoring time per probe, microseconds (includes the engine's bookkeeping). */
  meanScoreMicros: number;
}

export function readScenarioSet(file: string): ScenarioSet {
  const text = readUserFile('the scenario file', file);
  let raw: unknown;
  try {
    raw = parseStrictJson(text);
  } catch (cause) {
    throw new CountersignError('config_invalid', `the scenario file ${quote(file)} could not be read as JSON`, { cause });
  }
  const parsed = scenarioSetSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CountersignError(
      'config_invalid',
      `the scenario file ${quote(file)}: error at ${quote(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** The set's own tool declarations and internal domains laid over the settings (the weights stay the settings'). */
export function settingsForSet(set: ScenarioSet, config: RiskConfig): RiskConfig {
  if (!set.risk) return config;
  return parseRiskConfig(
    {
      ...config,
      internalDomains: set.risk.internalDomains ?? config.internalDomains,
      tools: { ...config.tools, ...(set.risk.tools ?? {}) },
    },
    "the scenario set's risk declarations",
  );
}

/** What a host that declares nothing useful sends: every call says `user`, nothing read is reported. */
export function withholdProvenance(set: ScenarioSet): ScenarioSet {
  const strip = <T extends { call: ToolCall; reads?: unknown }>(item: T): T => {
    const { reads: _reads, ...rest } = item;
    return { ...rest, call: { ...item.call, provenance: ['user'] } } as T;
  };
  return { ...set, scenarios: set.scenarios.map((sc) => ({ ...sc, history: sc.history.map(strip), probes: sc.probes.map(strip) })) };
}

export function runScenarioReport(
  set: ScenarioSet,
  baseConfig: RiskConfig,
  threshold = baseConfig.reportThreshold,
  options: { withholdProvenance?: boolean } = {},
): ScenarioReport {
  const config = settingsForSet(set, baseConfig);
  if (options.withholdProvenance) set = withholdProvenance(set);
  const effectsOf = (tool: string): readonly string[] => config.tools[tool]?.effects ?? [];
  const sideEffecting = (tool: string) => {
    const effects = effectsOf(tool);
    return effects.length === 0 || effects.some((e) => SIDE_EFFECTS.has(e as EffectClass));
  };
  const dir = mkdtempSync(join(tmpdir(), 'countersign-risk-report-'));
  const db = openStore(join(dir, 'report.db'));
  try {
    const engine = new RiskEngine(db, config, { maxCachedAgents: set.scenarios.length + 1 });
    const byLabel = new Map<string, { scenarios: number; detected: number }>();
    const bySource = new Map<string, { scenarios: number; detected: number; benignCalls: number; benignFlagged: number }>();
    const byEffect = new Map<string, { maliciousCalls: number; maliciousFlagged: number; benignCalls: number; benignFlagged: number }>();
    const sourceRow = (source: string) => {
      let row = bySource.get(source);
      if (!row) bySource.set(source, (row = { scenarios: 0, detected: 0, benignCalls: 0, benignFlagged: 0 }));
      return row;
    };
    const effectRow = (effect: string) => {
      let row = byEffect.get(effect);
      if (!row) byEffect.set(effect, (row = { maliciousCalls: 0, maliciousFlagged: 0, benignCalls: 0, benignFlagged: 0 }));
      return row;
    };
    const missed: string[] = [];
    const flaggedIds: string[] = [];
    let maliciousScenarios = 0;
    let maliciousDetected = 0;
    let benignProbes = 0;
    let benignFlagged = 0;
    let sideProbes = 0;
    let sideFlagged = 0;
    let benignScenarios = 0;
    let benignScenariosFlagged = 0;
    let probesScored = 0;
    let scoringMs = 0;
    let n = 0;

    type Item = Scenario['history'][number] | Scenario['probes'][number];
    const report = (agentId: string, item: Item) => {
      if (item.reads && item.reads.length > 0 && item.call.session) engine.reported(agentId, item.call.session.id, item.reads, item.at);
    };
    const learnAll = db.transaction((scenario: Scenario, agentId: string) => {
      for (const h of scenario.history) {
        n += 1;
        report(agentId, h);
        engine.submitted(
          agentId,
          `h${n}`,
          h.call,
          callDigest(h.call.tool, h.call.params),
          h.at,
          h.outcome === 'executed' ? 'allowed' : 'denied',
        );
      }
    });
    const submitProbe = db.transaction((agentId: string, call: ToolCall, digest: string, at: number, held: boolean, benign: boolean) => {
      n += 1;
      const requestId = `p${n}`;
      engine.submitted(agentId, requestId, call, digest, at, held ? 'pending' : 'allowed');
      if (held) engine.settled(agentId, { id: requestId, call, callSha256: digest, createdAt: at }, benign ? 'approved' : 'denied', at);
    });
    const reportProbe = db.transaction((agentId: string, probe: Item) => report(agentId, probe));

    for (const scenario of set.scenarios) {
      const agentId = `scenario:${scenario.id}`;
      const agent = { id: agentId, ...scenario.agent };
      const source = scenario.source ?? '(none)';
      learnAll(scenario, agentId);
      let maxMalicious = 0;
      let benignHit = false;
      for (const probe of scenario.probes) {
        reportProbe(agentId, probe);
        const digest = callDigest(probe.call.tool, probe.call.params);
        const t0 = performance.now();
        const { score } = engine.score({ agent, call: probe.call, callSha256: digest, now: probe.at });
        scoringMs += performance.now() - t0;
        probesScored += 1;
        const flagged = score >= threshold;
        const effects = effectsOf(probe.call.tool);
        if (probe.label === 'malicious') {
          maxMalicious = Math.max(maxMalicious, score);
          for (const e of effects.length === 0 ? ['(undeclared)'] : effects) {
            const row = effectRow(e);
            row.maliciousCalls += 1;
            if (flagged) row.maliciousFlagged += 1;
          }
        } else {
          benignProbes += 1;
          if (flagged) {
            benignFlagged += 1;
            benignHit = true;
          }
          if (sideEffecting(probe.call.tool)) {
            sideProbes += 1;
            const row = sourceRow(source);
            row.benignCalls += 1;
            if (flagged) {
              sideFlagged += 1;
              row.benignFlagged += 1;
            }
            for (const e of effects.length === 0 ? ['(undeclared)'] : effects) {
              const er = effectRow(e);
              er.benignCalls += 1;
              if (flagged) er.benignFlagged += 1;
            }
          }
        }
        submitProbe(agentId, probe.call, digest, probe.at, flagged, probe.label === 'benign');
      }
      if (scenario.label === 'benign') {
        benignScenarios += 1;
        if (benignHit) {
          benignScenariosFlagged += 1;
          flaggedIds.push(scenario.id);
        }
      } else {
        maliciousScenarios += 1;
        const row = byLabel.get(scenario.label) ?? { scenarios: 0, detected: 0 };
        const src = sourceRow(source);
        row.scenarios += 1;
        src.scenarios += 1;
        if (maxMalicious >= threshold) {
          row.detected += 1;
          src.detected += 1;
          maliciousDetected += 1;
        } else {
          missed.push(scenario.id);
        }
        byLabel.set(scenario.label, row);
      }
    }
    const rate = (a: number, b: number) => (b === 0 ? 0 : Math.round((a / b) * 10_000) / 10_000);
    const byName = <T>(m: Map<string, T>) => [...m].sort((a, b) => a[0].localeCompare(b[0]));
    return {
      threshold,
      scenarios: set.scenarios.length,
      provenance: options.withholdProvenance ? 'withheld' : 'as recorded',
      malicious: {
        scenarios: maliciousScenarios,
        detected: maliciousDetected,
        detectionRate: rate(maliciousDetected, maliciousScenarios),
        byLabel: byName(byLabel).map(([label, r]) => ({ label, ...r, rate: rate(r.detected, r.scenarios) })),
        missed,
      },
      benign: {
        probes: benignProbes,
        flagged: benignFlagged,
        falsePositiveRate: rate(benignFlagged, benignProbes),
        scenarios: benignScenarios,
        scenariosFlagged: benignScenariosFlagged,
        flaggedIds,
        sideEffecting: { probes: sideProbes, flagged: sideFlagged, falsePositiveRate: rate(sideFlagged, sideProbes) },
      },
      bySource: byName(bySource).map(([source, r]) => ({
        source,
        ...r,
        detectionRate: rate(r.detected, r.scenarios),
        falsePositiveRate: rate(r.benignFlagged, r.benignCalls),
      })),
      byEffect: byName(byEffect).map(([effect, r]) => ({
        effect,
        ...r,
        detectionRate: rate(r.maliciousFlagged, r.maliciousCalls),
        falsePositiveRate: rate(r.benignFlagged, r.benignCalls),
      })),
      meanScoreMicros: probesScored === 0 ? 0 : Math.round((scoringMs / probesScored) * 1000 * 10) / 10,
    };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatScenarioReport(r: ScenarioReport, title = 'risk scenario report'): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `${title} at threshold ${r.threshold} (${r.scenarios} scenarios, provenance ${r.provenance})`,
    `  detection rate      ${pct(r.malicious.detectionRate)}  (${r.malicious.detected} of ${r.malicious.scenarios} malicious scenarios reach the threshold)`,
    `  false-positive rate ${pct(r.benign.falsePositiveRate)}  (${r.benign.flagged} of ${r.benign.probes} benign calls reach it; ${r.benign.scenariosFlagged} of ${r.benign.scenarios} benign scenarios)`,
    `    side-effecting    ${pct(r.benign.sideEffecting.falsePositiveRate)}  (${r.benign.sideEffecting.flagged} of ${r.benign.sideEffecting.probes} benign side-effecting calls)`,
    '  by attack:',
    ...r.malicious.byLabel.map(
      (row) => `    ${row.label.padEnd(28)} ${String(row.detected).padStart(4)} / ${String(row.scenarios).padEnd(4)} ${pct(row.rate)}`,
    ),
  ];
  if (r.bySource.length > 1 || (r.bySource[0] && r.bySource[0].source !== '(none)')) {
    lines.push('  by source:                  detected            benign side-effecting flagged');
    for (const row of r.bySource)
      lines.push(
        `    ${row.source.padEnd(24)} ${String(row.detected).padStart(4)} / ${String(row.scenarios).padEnd(4)} ${pct(row.detectionRate).padStart(6)}   ${String(row.benignFlagged).padStart(4)} / ${String(row.benignCalls).padEnd(4)} ${pct(row.falsePositiveRate).padStart(6)}`,
      );
  }
  if (r.byEffect.length > 1 || (r.byEffect[0] && r.byEffect[0].effect !== '(undeclared)')) {
    lines.push('  by effect class (calls):    malicious flagged   benign side-effecting flagged');
    for (const row of r.byEffect)
      lines.push(
        `    ${row.effect.padEnd(24)} ${String(row.maliciousFlagged).padStart(4)} / ${String(row.maliciousCalls).padEnd(4)} ${pct(row.detectionRate).padStart(6)}   ${String(row.benignFlagged).padStart(4)} / ${String(row.benignCalls).padEnd(4)} ${pct(row.falsePositiveRate).padStart(6)}`,
      );
  }
  lines.push(
    `  missed: ${r.malicious.missed.length === 0 ? 'none' : r.malicious.missed.join(', ')}`,
    `  benign scenarios flagged: ${r.benign.flaggedIds.length === 0 ? 'none' : r.benign.flaggedIds.join(', ')}`,
    `  mean scoring time ${r.meanScoreMicros} µs per call`,
  );
  return lines.join('\n');
}
