/**
 * Risk scorer settings: factor weights, their thresholds, and which parameters of each tool
 * carry an amount, a currency or a destination. Read from `risk.json` (beside the policies, or
 * the file `risk.file` in config.json names), validated strictly at load: an unknown key or an
 * out-of-range value stops the start, it is never silently ignored. docs/risk.md explains each.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileNotFound } from '../user-files.js';
import { z } from 'zod';
import { CountersignError, quote } from '../../../shared/errors.js';
import { parseStrictJson } from '../../../shared/canonical-json.js';

const weight = z.int().min(0).max(100);
const fraction = z.number().min(0).max(1);
const ms = z
  .int()
  .min(1_000)
  .max(90 * 24 * 3600 * 1000);
const paramName = z.string().min(1).max(128);
const kindName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z][a-z0-9_]*$/, 'must be a lowercase name');

/**
 * What a tool does (docs/risk.md "Effect classes"). A tool with any of the first seven has a side
 * effect (`changes_system`: deploys, pipelines, configuration of a running system);
 * `reads_sensitive`, `reads_untrusted` and `read_only` do not change anything.
 */
export const EFFECT_CLASSES = [
  'moves_money',
  'irreversible',
  'deletes',
  'changes_access',
  'shares_externally',
  'sends_to_recipients',
  'changes_system',
  'reads_sensitive',
  'reads_untrusted',
  'read_only',
] as const;
export type EffectClass = (typeof EFFECT_CLASSES)[number];
export const SIDE_EFFECTS: ReadonlySet<EffectClass> = new Set([
  'moves_money',
  'irreversible',
  'deletes',
  'changes_access',
  'shares_externally',
  'sends_to_recipients',
  'changes_system',
]);

const toolSchema = z.strictObject({
  /** What the tool does (effect classes); none declared means unknown, and effect factors stay quiet. */
  effects: z.array(z.enum(EFFECT_CLASSES)).max(EFFECT_CLASSES.length).default([]),
  /** Parameters holding recipients or external destinations (a string or a list of strings: e-mail addresses, URLs, user names). */
  recipients: z.array(paramName).max(16).default([]),
  /** Parameters holding free text (memo, subject, body): where data can ride along. */
  freeText: z.array(paramName).max(16).default([]),
  /** The parameter holding how many items the call acts on (a list, or a whole number). */
  itemCount: paramName.optional(),
  /** The parameter holding the amount (a decimal string or a number). */
  amount: paramName.optional(),
  /** The parameter holding the currency; without it, one series per tool. */
  currency: paramName.optional(),
  /** Destination kind → parameter, e.g. `{ "payee": "payee" }` or `{ "environment": "environment" }`. */
  destinations: z.record(kindName, paramName).default({}),
  /** Parameters ignored when deciding whether two calls are near-identical (memo, change id, ...). */
  volatile: z.array(paramName).max(64).default([]),
});
export type RiskToolConfig = z.infer<typeof toolSchema>;

export const riskConfigSchema = z
  .strictObject({
    /** The score at and above which `risk report` counts a call as flagged (the examples hold it for two approvers). */
    reportThreshold: z.int().min(1).max(100).default(60),
    /** An agent with fewer executed calls than this is still learning: baseline factors stay quiet. */
    minExecutedCalls: z.int().min(0).max(100_000).default(20),
    /** How far back baselines look (amount medians, rates, usual hours). */
    lookbackMs: ms.default(30 * 24 * 3600 * 1000),
    /** Learned destinations kept per agent and kind (least recently used dropped first). */
    maxKnownPerKind: z.int().min(10).max(100_000).default(2_000),
    /** E-mail and web domains that belong to the organization: recipients there are internal (subdomains included). */
    internalDomains: z
      .array(
        z
          .string()
          .min(1)
          .max(253)
          .regex(/^[a-z0-9.-]+$/, 'must be a lowercase domain'),
      )
      .max(256)
      .default([]),
    factors: z
      .strictObject({
        amount_vs_baseline: z
          .strictObject({
            weight: weight.default(40),
            /** Ratio to the median where the factor starts, and where it reaches full strength. */
            ratioLow: z.number().min(1).max(1_000).default(3),
            ratioHigh: z.number().min(1).max(10_000).default(10),
            minSamples: z.int().min(1).max(1_000).default(5),
          })
          .prefault({}),
        new_destination: z
          .strictObject({
            weight: weight.default(30),
            /** A destination first used less than this long ago still counts, at half strength. */
            recentMs: ms.default(24 * 3600 * 1000),
          })
          .prefault({}),
        call_rate: z
          .strictObject({
            weight: weight.default(25),
            /** Calls in the last minute below this never count as a burst. */
            burstMinCalls: z.int().min(1).max(100_000).default(6),
            /** Calls in the last hour below this never count as a high rate. */
            hourMinCalls: z.int().min(1).max(1_000_000).default(60),
            /** How many times the agent's busiest usual minute/hour counts as unusual; twice this is full strength. */
            multiplier: z.number().min(1).max(1_000).default(3),
          })
          .prefault({}),
        repeated_call: z
          .strictObject({
            weight: weight.default(60),
            windowMs: ms.default(10 * 60 * 1000),
            /** Earlier identical calls in the window that make this one a loop (one retry is normal); twice this is full strength. */
            identicalRepeats: z.int().min(1).max(1_000).default(2),
            /** Earlier near-identical calls (volatile parameters ignored) in the window. */
            similarRepeats: z.int().min(1).max(1_000).default(4),
          })
          .prefault({}),
        call_depth: z
          .strictObject({
            weight: weight.default(30),
            /** Declared call depth above this is unusual; twice this is full strength. */
            maxDepth: z.int().min(1).max(10_000).default(5),
            /** Calls from one agent session within the recent window above this are a fan-out. */
            maxSessionCalls: z.int().min(1).max(1_000_000).default(25),
          })
          .prefault({}),
        unusual_sequence: z
          .strictObject({
            weight: weight.default(20),
            /** Transitions seen from the previous tool before a rare/unseen one counts. */
            minTransitions: z.int().min(1).max(100_000).default(5),
            rareFraction: fraction.default(0.02),
            /** A call more than this after the previous executed call starts a new sequence. */
            gapMs: ms.default(60 * 60 * 1000),
          })
          .prefault({}),
        untrusted_provenance: z
          .strictObject({
            weight: weight.default(45),
            /** Strength per provenance label; the call takes the highest of its labels. */
            labels: z.record(z.string().min(1).max(128), fraction).default({
              user: 0,
              system: 0,
              schedule: 0,
              ci: 0.2,
              'email:internal': 0.3,
              document: 0.5,
              tool: 0.4,
              web: 0.8,
              'email:external': 1,
            }),
            unknownLabel: fraction.default(0.6),
            /** Strength when the host declares no provenance at all. */
            undeclared: fraction.default(0.5),
          })
          .prefault({}),
        off_hours: z
          .strictObject({
            weight: weight.default(30),
            /** Usual hours: hours of day (UTC, ± one hour) holding at least this share of executed calls. */
            minShare: fraction.default(0.05),
          })
          .prefault({}),
        data_scope: z.strictObject({ weight: weight.default(40) }).prefault({}),
        agent_version: z.strictObject({ weight: weight.default(35) }).prefault({}),
        split_transaction: z
          .strictObject({
            weight: weight.default(40),
            windowMs: ms.default(60 * 60 * 1000),
            /** Calls of the same tool and currency (this one included) that make a split. */
            minCalls: z.int().min(2).max(1_000).default(3),
            /** Their sum, as a multiple of the agent's median, that makes it a split (at least its busiest usual hour's call count). */
            sumRatio: z.number().min(1).max(10_000).default(3),
          })
          .prefault({}),
        /** A side effect (effect class) this agent has never performed in an executed call. */
        new_effect: z.strictObject({ weight: weight.default(30) }).prefault({}),
        /** A recipient outside the organization (internalDomains) this agent never sent to. */
        new_recipient: z.strictObject({ weight: weight.default(35) }).prefault({}),
        memo_exfiltration: z
          .strictObject({
            weight: weight.default(45),
            /** A money movement at or below this amount (any currency) counts as tiny. */
            tinyAmount: z.number().min(0).max(1_000_000).default(1),
            /** ... or below this fraction of the agent's median for the tool. */
            tinyFraction: fraction.default(0.001),
            /** Free text of at least this many characters rides along. */
            minChars: z.int().min(1).max(10_000).default(12),
          })
          .prefault({}),
        tainted_access_change: z.strictObject({ weight: weight.default(50) }).prefault({}),
        bulk_action: z
          .strictObject({
            weight: weight.default(40),
            /** Items at or below this never count as bulk. */
            minItems: z.int().min(1).max(1_000_000).default(5),
            /** How many times the agent's largest usual item count counts as beyond its scale; twice this is full strength. */
            multiplier: z.number().min(1).max(1_000).default(3),
          })
          .prefault({}),
        data_flow: z
          .strictObject({
            weight: weight.default(60),
            /** A parameter value read in untrusted content and never in trusted input. */
            strong: fraction.default(1),
            /** The session read untrusted content and the call goes to a new destination or recipient whose origin no report accounts for. */
            unaccounted: fraction.default(0.45),
            /** The session read untrusted content. */
            tainted: fraction.default(0.2),
          })
          .prefault({}),
        baseline_learning: z.strictObject({ weight: weight.default(10) }).prefault({}),
      })
      .prefault({}),
    tools: z.record(z.string().min(1).max(128), toolSchema).default({}),
  })
  .refine((c) => c.factors.amount_vs_baseline.ratioHigh > c.factors.amount_vs_baseline.ratioLow, {
    message: 'factors.amount_vs_baseline.ratioHigh must be greater than ratioLow',
    path: ['factors', 'amount_vs_baseline', 'ratioHigh'],
  });

export type RiskConfig = z.infer<typeof riskConfigSchema>;

/** How far back the recent window reaches: the longest window any factor looks at (at least an hour). */
export function recentWindowMs(config: RiskConfig): number {
  return Math.max(3_600_000, config.factors.repeated_call.windowMs, config.factors.split_transaction.windowMs);
}

export const DEFAULT_RISK_CONFIG: RiskConfig = riskConfigSchema.parse({});

export function parseRiskConfig(value: unknown, where = 'risk settings'): RiskConfig {
  const parsed = riskConfigSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CountersignError(
      'config_invalid',
      `${where}: error at ${quote(issue?.path.join('.') ?? '')}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/**
 * The risk settings a server would run with for a policy directory: the configured file
 * (`risk.file`, which must exist), else the pack's own risk.json (optional; defaults without it).
 * `start` and `policy check` both load them here, so a check that passes means a start that
 * does not refuse the same file.
 */
export function loadRiskSettings(policyDir: string, configuredFile: string | undefined): { file: string | undefined; config: RiskConfig } {
  if (configuredFile !== undefined) return { file: configuredFile, config: loadRiskConfig(configuredFile, true) };
  const file = join(policyDir, 'risk.json');
  return existsSync(file) ? { file, config: loadRiskConfig(file, true) } : { file: undefined, config: DEFAULT_RISK_CONFIG };
}

/** Load a risk settings file; `required` false means a missing file gives the defaults. */
export function loadRiskConfig(file: string, required: boolean): RiskConfig {
  if (!existsSync(file)) {
    if (required) throw fileNotFound('the risk settings file', file);
    return DEFAULT_RISK_CONFIG;
  }
  let raw: unknown;
  try {
    raw = parseStrictJson(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new CountersignError('config_invalid', `the risk settings file ${quote(file)} is not valid JSON`, { cause });
  }
  return parseRiskConfig(raw, `the risk settings file ${quote(file)}`);
}
