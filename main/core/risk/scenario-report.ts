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
import { toolCallSchema, type ToolCall } from '../../../shared/protocol.js';
import { callDigest } from '../tokens/call-digest.js';
import { RiskEngine } from './risk-engine.js';
import type { RiskConfig } from './risk-config.js';

const callFields = {
  at: z.int().nonnegative(),
  call: toolCallSchema,
};

export const scenarioSetSchema = z.strictObject({
  version: z.literal(1),
  description: z.string(),
  scenarios: z.array(z.strictObject({
    id: z.string().min(1).max(128),
    kind: z.string().min(1).max(64),
    /** `benign`, or the attack this scenario plays (account_takeover, loop, ...). */
    label: z.string().min(1).max(64),
    description: z.string().max(500),
    agent: z.strictObject({
      dataClasses: z.array(z.string()).min(1),
      jurisdictions: z.array(z.string()).min(1),
      model: z.string().optional(),
      agentVersion: z.string().optional(),
    }),
    history: z.array(z.strictObject({ ...callFields, outcome: z.enum(['executed', 'denied']) })),
    probes: z.array(z.strictObject({ ...callFields, label: z.enum(['benign', 'malicious']) })).min(1),
  })).min(1),
});
export type ScenarioSet = z.infer<typeof scenarioSetSchema>;
export type Scenario = ScenarioSet['scenarios'][number];

export interface LabelRow { label: string; scenarios: number; detected: number; rate: number }

export interface ScenarioReport {
  threshold: number;
  scenarios: number;
  malicious: { scenarios: number; detected: number; detectionRate: number; byLabel: LabelRow[]; missed: string[] };
  benign: { probes: number; flagged: number; falsePositiveRate: number; scenarios: number; scenariosFlagged: number; flaggedIds: string[] };
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
    throw new CountersignError('config_invalid', `the scenario file ${quote(file)}: error at ${quote(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

export function runScenarioReport(set: ScenarioSet, config: RiskConfig, threshold = config.reportThreshold): ScenarioReport {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-risk-report-'));
  const db = openStore(join(dir, 'report.db'));
  try {
    const engine = new RiskEngine(db, config, { maxCachedAgents: set.scenarios.length + 1 });
    const byLabel = new Map<string, { scenarios: number; detected: number }>();
    const missed: string[] = [];
    const flaggedIds: string[] = [];
    let maliciousScenarios = 0;
    let maliciousDetected = 0;
    let benignProbes = 0;
    let benignFlagged = 0;
    let benignScenarios = 0;
    let benignScenariosFlagged = 0;
    let probesScored = 0;
    let scoringMs = 0;
    let n = 0;

    const learnAll = db.transaction((scenario: Scenario, agentId: string) => {
      for (const h of scenario.history) {
        n += 1;
        engine.submitted(agentId, `h${n}`, h.call, callDigest(h.call.tool, h.call.params), h.at, h.outcome === 'executed' ? 'allowed' : 'denied');
      }
    });
    const submitProbe = db.transaction((agentId: string, call: ToolCall, digest: string, at: number, held: boolean, benign: boolean) => {
      n += 1;
      const requestId = `p${n}`;
      engine.submitted(agentId, requestId, call, digest, at, held ? 'pending' : 'allowed');
      if (held) engine.settled(agentId, { id: requestId, call, callSha256: digest, createdAt: at }, benign ? 'approved' : 'denied', at);
    });

    for (const scenario of set.scenarios) {
      const agentId = `scenario:${scenario.id}`;
      const agent = { id: agentId, ...scenario.agent };
      learnAll(scenario, agentId);
      let maxMalicious = 0;
      let benignHit = false;
      for (const probe of scenario.probes) {
        const digest = callDigest(probe.call.tool, probe.call.params);
        const t0 = performance.now();
        const { score } = engine.score({ agent, call: probe.call, callSha256: digest, now: probe.at });
        scoringMs += performance.now() - t0;
        probesScored += 1;
        const flagged = score >= threshold;
        if (probe.label === 'malicious') maxMalicious = Math.max(maxMalicious, score);
        else {
          benignProbes += 1;
          if (flagged) {
            benignFlagged += 1;
            benignHit = true;
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
        row.scenarios += 1;
        if (maxMalicious >= threshold) {
          row.detected += 1;
          maliciousDetected += 1;
        } else {
          missed.push(scenario.id);
        }
        byLabel.set(scenario.label, row);
      }
    }
    const rate = (a: number, b: number) => (b === 0 ? 0 : Math.round((a / b) * 10_000) / 10_000);
    return {
      threshold,
      scenarios: set.scenarios.length,
      malicious: {
        scenarios: maliciousScenarios, detected: maliciousDetected, detectionRate: rate(maliciousDetected, maliciousScenarios),
        byLabel: [...byLabel].sort((a, b) => a[0].localeCompare(b[0])).map(([label, r]) => ({ label, ...r, rate: rate(r.detected, r.scenarios) })),
        missed,
      },
      benign: { probes: benignProbes, flagged: benignFlagged, falsePositiveRate: rate(benignFlagged, benignProbes), scenarios: benignScenarios, scenariosFlagged: benignScenariosFlagged, flaggedIds },
      meanScoreMicros: probesScored === 0 ? 0 : Math.round((scoringMs / probesScored) * 1000 * 10) / 10,
    };
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatScenarioReport(r: ScenarioReport): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `risk scenario report at threshold ${r.threshold} (${r.scenarios} scenarios)`,
    `  detection rate      ${pct(r.malicious.detectionRate)}  (${r.malicious.detected} of ${r.malicious.scenarios} malicious scenarios reach the threshold)`,
    `  false-positive rate ${pct(r.benign.falsePositiveRate)}  (${r.benign.flagged} of ${r.benign.probes} benign calls reach it; ${r.benign.scenariosFlagged} of ${r.benign.scenarios} benign scenarios)`,
    '  by attack:',
    ...r.malicious.byLabel.map((row) => `    ${row.label.padEnd(28)} ${String(row.detected).padStart(4)} / ${String(row.scenarios).padEnd(4)} ${pct(row.rate)}`),
    `  missed: ${r.malicious.missed.length === 0 ? 'none' : r.malicious.missed.join(', ')}`,
    `  benign scenarios flagged: ${r.benign.flaggedIds.length === 0 ? 'none' : r.benign.flaggedIds.join(', ')}`,
    `  mean scoring time ${r.meanScoreMicros} µs per call`,
  ];
  return lines.join('\n');
}
