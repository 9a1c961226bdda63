/**
 * The desk's Policies view, read side: the active policy set (hash, files and their text, each
 * policy with its file:line and the approvals it asks for, the tools), the last hot reload's
 * outcome with each problem split into file:line (a failed reload keeps the previous set in
 * force), and "test a call": the decision service's dry run, which scores and evaluates a call
 * exactly as the decision path does and writes nothing (decision-service.ts `dryRun`).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { PolicyEngine, ReloadResult } from '../policy/policy-engine.js';
import type { DecisionService } from '../decision/decision-service.js';
import { policyProblemPlace, type PolicyOverview, type PolicyTestCall, type PolicyTestResult } from '../../../shared/desk-records.js';

/** The schema and entity files every policy directory holds besides its .cedar files. */
const SET_FILES = ['schema.cedarschema', 'entities.json'];
const MAX_FILE_CHARS = 1_000_000;

/** Remembers the last hot reload's outcome (app.ts feeds it from the policy watcher). */
export class PolicyReloadLog {
  private last: PolicyOverview['lastReload'] = null;

  constructor(private readonly now: () => number) {}

  record(result: ReloadResult): void {
    if (result.ok) {
      this.last = { at: this.now(), ok: true, hash: result.hash, errors: [] };
      return;
    }
    // The whole message lists the problems joined by '; ' after its first ': ' (policy-set.ts Problems.toError).
    const message = result.error.message;
    const marker = ' is invalid: ';
    const at = message.indexOf(marker);
    const problems = at < 0 ? [message] : message.slice(at + marker.length).split('; ');
    this.last = { at: this.now(), ok: false, hash: result.hash, errors: problems.slice(0, 200).map(policyProblemPlace) };
  }

  current(): PolicyOverview['lastReload'] {
    return this.last === null ? null : { ...this.last, errors: this.last.errors.map((e) => ({ ...e })) };
  }
}

export interface PolicyDeskDeps {
  policy: Pick<PolicyEngine, 'current'>;
  decisions: Pick<DecisionService, 'dryRun'>;
  reloads: PolicyReloadLog;
}

export class PolicyDesk {
  constructor(private readonly deps: PolicyDeskDeps) {}

  async overview(): Promise<PolicyOverview> {
    const set = this.deps.policy.current;
    const policies = [...set.policies.values()].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
    // The files are read as they are on disk now (what an admin edits); the hash names what is in force.
    const names = [...new Set([...SET_FILES, ...policies.map((p) => p.file)])];
    const files: PolicyOverview['files'] = [];
    for (const file of names) {
      try {
        files.push({ file, text: (await readFile(path.join(set.dir, file), 'utf8')).slice(0, MAX_FILE_CHARS) });
      } catch {
        files.push({ file, text: '' });
      }
    }
    return {
      hash: set.hash,
      dir: set.dir,
      files,
      policies: policies.map((p) => ({
        id: p.id,
        file: p.file,
        line: p.line,
        effect: p.effect,
        reason: p.reason ?? null,
        approvals: p.obligation?.approvals ?? null,
      })),
      tools: [...set.tools.values()]
        .map((t) => ({ name: t.name, impact: t.impact, audience: t.audience }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      warnings: set.warnings.slice(0, 200).map((w) => w.slice(0, 2000)),
      lastReload: this.deps.reloads.current(),
    };
  }

  async testCall(input: PolicyTestCall): Promise<PolicyTestResult> {
    const decision = await this.deps.decisions.dryRun(input.agentId, input.call);
    return {
      outcome: decision.outcome,
      policyHash: decision.policyHash,
      determiningPolicies: [...decision.determiningPolicies],
      reasons: decision.reasons.slice(0, 64),
      errors: decision.errors.slice(0, 64).map((e) => e.slice(0, 2000)),
      risk: {
        score: decision.risk.score,
        factors: decision.risk.factors.map((f) => ({ name: f.name, points: f.points, explanation: f.explanation.slice(0, 1000) })),
      },
      obligation:
        decision.obligation === undefined
          ? null
          : {
              approvals: decision.obligation.approvals,
              groups: decision.obligation.groups.map((g) => [...g]),
              ttlSeconds: decision.obligation.ttlSeconds,
              userVerification: decision.obligation.userVerification,
            },
      conflicted: decision.obligation?.conflicted.slice(0, 256) ?? [],
      dryRun: true,
    };
  }
}
