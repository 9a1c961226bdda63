/**
 * The policy decision point: holds the current validated policy set, preparsed in Cedar, and
 * turns one tool call into allow / deny / approval_required (docs/policy.md).
 *
 * Rules: deny by default, forbid wins, ANY evaluation error = deny; obligations come from the
 * annotations of the determining permits, combined strictly. Hot reload keeps the last good set.
 */
// First: V8 must not inline calls into Cedar's WebAssembly (a Node 20 V8 abort; wasm-call-flags.mjs).
import './wasm-call-flags.mjs';
import { watch as fsWatch, type FSWatcher } from 'node:fs';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { parseStrictJson, type JsonObject, type JsonValue } from '../../../shared/canonical-json.js';
import { CountersignError, isCountersignError, quote } from '../../../shared/errors.js';
import {
  ACTION_TYPE,
  AGENT_GROUP_TYPE,
  NAMESPACE,
  AGENT_TYPE,
  TOOL_TYPE,
  loadPolicyDirectory,
  type LoadedPolicySet,
  type StaticEntity,
  type ToolInfo,
  type UserVerification,
} from './policy-set.js';
import { CedarWorkerClient, type PreparedSet } from './cedar-worker-client.js';
import { buildEntitySliceIndex, sliceForCall, type EntitySliceIndex } from './entity-slice.js';
import { actionSubsets } from './action-subsets.js';
import { FastEvaluator, Unsupported, type FastCall } from './fast-evaluator.js';
import { generatedCheckRequests } from './fast-evaluator-check.js';

export type { LoadedPolicySet, ToolInfo } from './policy-set.js';

export interface PolicyAgent {
  id: string;
  owner: string;
  group: string;
  dataClasses: string[];
  jurisdictions: string[];
}

export interface PolicyRequest {
  agent: PolicyAgent;
  tool: string;
  params: JsonObject;
  dataClass: string;
  jurisdiction: string;
  provenance: string[];
  risk: { score: number; factors: string[] };
  now: Date;
}

/**
 * The policy request for `call` by `agent` at `now`, with Cedar's view of its risk (riskContext):
 * one shape for the decision, the dry run and the re-evaluation at approval time. Only the
 * agent's policy fields are taken, whatever record is passed.
 */
export function policyRequestFor(
  agent: PolicyAgent,
  call: Pick<PolicyRequest, 'tool' | 'params' | 'dataClass' | 'jurisdiction' | 'provenance'>,
  risk: PolicyRequest['risk'],
  now: number,
): PolicyRequest {
  return {
    agent: { id: agent.id, owner: agent.owner, group: agent.group, dataClasses: agent.dataClasses, jurisdictions: agent.jurisdictions },
    tool: call.tool,
    params: call.params,
    dataClass: call.dataClass,
    jurisdiction: call.jurisdiction,
    provenance: call.provenance,
    risk,
    now: new Date(now),
  };
}

export interface PolicyApprovalRequirement {
  /** Distinct people needed. */
  approvals: number;
  /** Each inner list is one requirement: at least one approver must be in one of its groups. */
  groups: string[][];
  ttlSeconds: number;
  userVerification: UserVerification;
  /** @reason texts of the permits that asked for approval. */
  reasons: string[];
  /** Approver ids (lowercase) named conflicted by any of those permits: they may not approve. */
  conflicted: string[];
}

export type PolicyOutcome = 'allow' | 'deny' | 'approval_required';

export interface PolicyDecision {
  outcome: PolicyOutcome;
  /** Sorted policy ids (`<file stem>:<@id>`). */
  determiningPolicies: string[];
  /** Evaluation errors (`policy "<id>": <message>`); any error makes the outcome deny. */
  errors: string[];
  obligation?: PolicyApprovalRequirement;
  policyHash: string;
  reasons: string[];
}

export type ReloadResult =
  | { ok: true; changed: boolean; hash: string; previousHash: string; warnings: string[] }
  | { ok: false; error: CountersignError; hash: string };

export interface PolicyEngineOptions {
  /**
   * Evaluate in a worker thread (evaluateAsync), so Cedar's per-call cost runs beside the
   * event loop instead of on it. The sync evaluate() always runs in the calling thread.
   */
  worker?: boolean;
  /**
   * Hand Cedar only the entities a call can reach (default true; main/core/policy/entity-slice.ts).
   * False hands it every static entity on every call: the reference the differential tests
   * compare the slice against, never faster.
   */
  entitySlicing?: boolean;
  /**
   * Evaluate each call with only the policies whose action scope can match its tool (default
   * true; main/core/policy/action-subsets.ts). False evaluates the whole set: the reference.
   */
  policySubsets?: boolean;
  /**
   * Requests every load checks the per-tool subsets against the whole set with (typically the
   * pack's tests.json cases); any disagreement turns the subsets off for that set
   * (`fastPath.fallback` says why, and the app audits it). Absent: no load-time check.
   */
  fastPathCases?: (dir: string) => Promise<PolicyRequest[]>;
  /**
   * Decide calls with the fast evaluator (fast-evaluator.ts, ADR 0023) in the event loop, with
   * cedar-wasm for every call it is unsure of. Each load checks it against cedar-wasm on the
   * pack's tests (fastPathCases) and `fastEvaluatorChecks` generated calls; any disagreement, or
   * a construct outside its subset, keeps that load on cedar-wasm (`evaluatorState.fallback`).
   * Default false: cedar-wasm only.
   */
  fastEvaluator?: boolean;
  /** Generated calls each load checks the fast evaluator with (default 2,000). */
  fastEvaluatorChecks?: number;
  /**
   * Shadow evaluation: the fast evaluator's decisions for the first `shadowFirst` calls of each
   * load (default 256) and then 1 in `shadowEvery` (default 64; 0: none after the first) are also
   * decided by cedar-wasm after the answer (in the worker when there is one); a disagreement puts
   * the load on cedar-wasm and is reported through onEvaluatorDisagreement.
   */
  shadowEvery?: number;
  shadowFirst?: number;
  /** A disagreement of the fast evaluator with cedar-wasm (load check or shadow): the app audits it. */
  onEvaluatorDisagreement?: (disagreement: EvaluatorDisagreement) => void;
  /** Test-only fault injection: wraps the fast evaluator's answers (a deliberately wrong evaluator). */
  fastEvaluatorFault?: (answer: ReturnType<FastEvaluator['evaluate']>, call: FastCall) => ReturnType<FastEvaluator['evaluate']>;
}

/** Whether the per-tool policy subsets are in use for the active set, and if not, why. */
export interface FastPathState {
  subsets: boolean;
  /** Why the subsets were turned off at load (a disagreement with the whole set). */
  fallback?: string;
}

/** A decision as a disagreement reports it: the outcome (or `error:<code>`) and the determining policies. */
export interface DecisionSummary {
  outcome: string;
  determiningPolicies: string[];
}

/** The fast evaluator decided a call otherwise than cedar-wasm (ADR 0023): what, where, and for which request. */
export interface EvaluatorDisagreement {
  policyHash: string;
  source: 'load_check' | 'shadow';
  reason: string;
  tool: string;
  /** The request the fast evaluator had already answered (shadow evaluation on the decision path). */
  requestId?: string;
  fast: DecisionSummary;
  cedarWasm: DecisionSummary;
}

/** Which evaluator decides the active set's calls (ADR 0023), and if not the fast one, why. */
export interface EvaluatorState {
  /** The fast evaluator (with cedar-wasm for every call it is unsure of), or cedar-wasm alone. */
  evaluator: 'fast' | 'cedar-wasm';
  /** Why the fast evaluator is not in use for this load, when it was asked for. */
  fallback?: string;
  /** The load check of the fast evaluator: calls compared, how many it handed to cedar-wasm, how long it took. */
  check?: { calls: number; handedOver: number; ms: number };
  /** Shadow evaluation of this load: calls also decided by cedar-wasm, and those skipped (the worker failed). */
  shadow?: { compared: number; skipped: number };
}

export interface WatchOptions {
  /** Quiet period after the last file event before reloading (default 150 ms). */
  debounceMs?: number;
}

export const DEFAULT_DENY_REASON = 'no policy permits this call';
export const EVALUATION_ERROR_REASON = 'a policy could not be evaluated, so the call is denied';

const RESERVED_PARAM_KEYS = new Set(['__entity', '__extn', '__expr']);
const MAX_ERROR_TEXT = 300;

/** Preparsed ids live in Cedar's process-wide (thread-local) cache: keep them unique. */
let preparseCounter = 0;

interface ActiveSet {
  set: LoadedPolicySet;
  schemaName: string;
  policySetId: string;
  toolEntity: ReadonlyMap<string, StaticEntity>;
  slices: EntitySliceIndex;
  /** Tool -> the preparsed id of its policy subset; empty when the subsets are off. */
  subsetIds: Map<string, string>;
  /** Preparsed subset id -> its policies (for the worker). */
  subsetPolicies: ReadonlyMap<string, Record<string, string>>;
  fastPath: FastPathState;
  evaluatorState: EvaluatorState;
  /** The fast evaluator, once the load check passed and while it is in use for this load. */
  fast: FastEvaluator | undefined;
  /** The fast evaluator compiled for this load, before (and after) its check. */
  candidate: FastEvaluator | undefined;
  /** The load check's end: why the fast evaluator is not in use, if it is not. */
  ready: Promise<string | undefined>;
  /** Calls the fast evaluator decided in this load (the shadow sample counts them). */
  fastDecided: number;
  shadow: { compared: number; skipped: number };
}

type Prepared =
  | { done: PolicyDecision }
  | { done?: undefined; active: ActiveSet; request: PolicyRequest; action: cedar.EntityUid; call: cedar.StatefulAuthorizationCall };

export class PolicyEngine {
  private active: ActiveSet;
  private reloadQueue: Promise<unknown> = Promise.resolve();
  private readonly worker: CedarWorkerClient | undefined;
  private readonly slicing: boolean;
  private readonly subsets: boolean;
  private readonly fastPathCases: PolicyEngineOptions['fastPathCases'];
  private readonly fastOptions: Pick<
    PolicyEngineOptions,
    'fastEvaluator' | 'fastEvaluatorChecks' | 'fastEvaluatorFault' | 'shadowEvery' | 'shadowFirst' | 'onEvaluatorDisagreement'
  >;
  /** Calls the fast evaluator answered, and calls it handed to cedar-wasm (health, bench). */
  fastEvaluations = 0;
  fastHandovers = 0;
  /** Calls evaluateAsync answered in this thread because the worker was idle (inlineIfIdle). */
  inlineEvaluations = 0;
  /** Set by close(): a load check still running stops at its next slice. */
  private closed = false;

  constructor(set: LoadedPolicySet, options: PolicyEngineOptions = {}) {
    this.subsets = options.policySubsets ?? true;
    this.fastOptions = {
      fastEvaluator: options.fastEvaluator,
      fastEvaluatorChecks: options.fastEvaluatorChecks,
      fastEvaluatorFault: options.fastEvaluatorFault,
      shadowEvery: options.shadowEvery,
      shadowFirst: options.shadowFirst,
      onEvaluatorDisagreement: options.onEvaluatorDisagreement,
    };
    this.active = activate(set, this.subsets, options.fastEvaluator === true);
    this.slicing = options.entitySlicing ?? true;
    this.fastPathCases = options.fastPathCases;
    this.worker = options.worker ? new CedarWorkerClient() : undefined;
    this.worker?.prepare(preparedSetOf(this.active));
  }

  /** Loads, validates and activates a policy directory; throws CountersignError('policy_invalid'). */
  static async open(dir: string, options: PolicyEngineOptions = {}): Promise<PolicyEngine> {
    const engine = new PolicyEngine(await loadPolicyDirectory(dir), options);
    const cases = options.fastPathCases === undefined ? [] : await options.fastPathCases(engine.dir);
    if (options.fastPathCases !== undefined) engine.checkFastPath(cases);
    // Checked in the background (evaluatorReady): cedar-wasm decides calls until the check passes.
    void engine.startEvaluatorCheck(engine.active, cases);
    return engine;
  }

  /**
   * Checks the fast evaluator of the active set (when one was asked for and compiled) against
   * cedar-wasm on `cases` and the generated calls, and puts it on the path if they agree. open()
   * and reload() start this themselves (see evaluatorReady); an engine made with `new` decides
   * with cedar-wasm until it is called. Returns why the fast evaluator is not in use, if it is not.
   */
  checkEvaluator(cases: readonly PolicyRequest[] = []): Promise<string | undefined> {
    return this.startEvaluatorCheck(this.active, cases);
  }

  /**
   * The end of the active load's check of the fast evaluator: until then cedar-wasm decides every
   * call (a load is never slowed by the check, nor decided by an unchecked evaluator).
   */
  get evaluatorReady(): Promise<string | undefined> {
    return this.active.ready;
  }

  private startEvaluatorCheck(active: ActiveSet, cases: readonly PolicyRequest[]): Promise<string | undefined> {
    if (active.candidate === undefined) return active.ready;
    active.ready = this.verifyEvaluator(active, cases).catch((error: unknown) => {
      // A check that cannot finish never puts the fast evaluator on the path.
      const reason = `the fast evaluator's load check failed (${clip(String(error))}), so every call of this load is evaluated by cedar-wasm`;
      active.fast = undefined;
      active.candidate = undefined;
      active.evaluatorState = { evaluator: 'cedar-wasm', fallback: reason };
      return reason;
    });
    return active.ready;
  }

  /** Which evaluator decides the active set's calls, and if not the fast one, why (ADR 0023). */
  get evaluatorState(): EvaluatorState {
    return { ...this.active.evaluatorState };
  }

  /** Whether the active set evaluates with per-tool policy subsets (and why not, if not). */
  get fastPath(): FastPathState {
    return { ...this.active.fastPath };
  }

  /**
   * Decides every request with each tool's policy subset and with the whole set; on the first
   * disagreement (decision, or refusal) the set's subsets are turned off, with the reason. The
   * subset side hands Cedar the subset's entity slice (entity-slice.ts subsetSlice), the whole
   * side the whole set's, exactly as calls are evaluated. Returns the reason, if any.
   */
  checkFastPath(requests: readonly PolicyRequest[]): string | undefined {
    return this.verifySubsets(this.active, requests);
  }

  /**
   * Checks the fast evaluator of `active` against cedar-wasm (the path calls take without it) on
   * the pack's cases and generated calls: outcome, determining policies and everything derived
   * from them must be equal wherever the fast evaluator answers. On the first disagreement the
   * load stays on cedar-wasm, with the reason. Constructed engines check at construction with
   * generated calls only (no pack cases); open() and reload() add the pack's.
   */
  private async verifyEvaluator(active: ActiveSet, cases: readonly PolicyRequest[]): Promise<string | undefined> {
    const candidate = active.candidate;
    if (candidate === undefined) return active.evaluatorState.fallback;
    const started = performance.now();
    const generated = generatedCheckRequests(active.set, candidate, this.fastOptions.fastEvaluatorChecks ?? 2_000);
    const requests = [...cases, ...generated];
    let handedOver = 0;
    let slice = performance.now();
    for (const [i, request] of requests.entries()) {
      // The check runs beside live calls on a reload: let them through every few milliseconds.
      if (performance.now() - slice > 20) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        slice = performance.now();
        // A closed engine decides nothing more: the rest of the check would only spend CPU.
        if (this.closed) return 'the engine closed before the fast evaluator was checked';
      }
      const fast = this.decideFastForCheck(active, candidate, request);
      if (fast === undefined) {
        handedOver++;
        continue;
      }
      const reference = this.decideForCheck(active, request, true);
      if (fast !== reference) {
        const which = i < cases.length ? `the pack's test request ${i + 1}` : `generated check call ${i - cases.length + 1}`;
        const reason = `the fast evaluator disagreed with cedar-wasm on ${which} (tool ${quote(String(request.tool))}), so every call of this load is evaluated by cedar-wasm`;
        this.disagree(active, { source: 'load_check', reason, tool: request.tool, fast, cedarWasm: reference });
        return reason;
      }
    }
    if (active.candidate !== candidate) return active.evaluatorState.fallback;
    active.fast = candidate;
    active.evaluatorState = {
      evaluator: 'fast',
      check: { calls: requests.length, handedOver, ms: Math.round(performance.now() - started) },
    };
    return undefined;
  }

  /** The fast evaluator leaves `active` for good (this load), and the app hears why (it audits). */
  private disagree(
    active: ActiveSet,
    d: { source: EvaluatorDisagreement['source']; reason: string; tool: string; requestId?: string; fast: string; cedarWasm: string },
  ): void {
    active.fast = undefined;
    active.candidate = undefined;
    active.evaluatorState = { ...active.evaluatorState, evaluator: 'cedar-wasm', fallback: d.reason };
    const event: EvaluatorDisagreement = {
      policyHash: active.set.hash,
      source: d.source,
      reason: d.reason,
      tool: d.tool,
      fast: summaryOf(d.fast),
      cedarWasm: summaryOf(d.cedarWasm),
    };
    if (d.requestId !== undefined) event.requestId = d.requestId;
    try {
      this.fastOptions.onEvaluatorDisagreement?.(event);
    } catch {
      // A listener fault must not undo the fall-back.
    }
  }

  /**
   * Shadow evaluation of a call the fast evaluator answered: after the answer (the next turn of
   * the event loop), cedar-wasm decides it too — in the worker when there is one — and any
   * difference puts the load on cedar-wasm. A worker that fails is a skipped sample, not a
   * disagreement.
   */
  private shadow(active: ActiveSet, request: PolicyRequest, decided: PolicyDecision, requestId: string | undefined): void {
    const fast = JSON.stringify(decided);
    setImmediate(() => {
      if (active.fast === undefined || active !== this.active) return;
      let prepared: Prepared;
      try {
        prepared = this.prepareCall(request, active);
      } catch (error) {
        this.compareShadow(active, request, requestId, fast, errorJson(error));
        return;
      }
      if (prepared.done) {
        this.compareShadow(active, request, requestId, fast, JSON.stringify(prepared.done));
        return;
      }
      const ready = prepared;
      if (this.worker === undefined) {
        let reference: string;
        try {
          reference = JSON.stringify(evaluatePrepared(ready));
        } catch (error) {
          reference = errorJson(error);
        }
        this.compareShadow(active, request, requestId, fast, reference);
        return;
      }
      this.worker.authorize(active.schemaName, ready.action, ready.call).then(
        (result) => {
          let reference: string;
          try {
            reference = JSON.stringify(interpret(ready, result.answer, result.contextCheck));
          } catch (error) {
            reference = errorJson(error);
          }
          this.compareShadow(active, request, requestId, fast, reference);
        },
        () => {
          active.shadow.skipped++;
          active.evaluatorState = { ...active.evaluatorState, shadow: { ...active.shadow } };
        },
      );
    });
  }

  private compareShadow(active: ActiveSet, request: PolicyRequest, requestId: string | undefined, fast: string, reference: string): void {
    active.shadow.compared++;
    active.evaluatorState = { ...active.evaluatorState, shadow: { ...active.shadow } };
    if (fast === reference || active.fast === undefined) return;
    const which = requestId === undefined ? 'a call' : `request ${requestId}`;
    const reason = `the fast evaluator disagreed with cedar-wasm in shadow evaluation of ${which} (tool ${quote(String(request.tool))}), so every further call of this load is evaluated by cedar-wasm`;
    this.disagree(active, {
      source: 'shadow',
      reason,
      tool: request.tool,
      ...(requestId === undefined ? {} : { requestId }),
      fast,
      cedarWasm: reference,
    });
  }

  /** The fast evaluator's decision as the check compares it (undefined: it handed the call to cedar-wasm). */
  private decideFastForCheck(active: ActiveSet, candidate: FastEvaluator, request: PolicyRequest): string | undefined {
    try {
      const done = this.checkCall(request, active);
      if (done !== undefined) return undefined;
      const decided = this.decideFast(candidate, active.set, request);
      return decided === undefined ? undefined : JSON.stringify(decided);
    } catch (error) {
      return JSON.stringify({ error: isCountersignError(error) ? error.code : String(error) });
    }
  }

  /** The fast evaluator's decision for a checked call, or undefined when cedar-wasm must decide it. */
  private decideFast(fast: FastEvaluator, set: LoadedPolicySet, request: PolicyRequest): PolicyDecision | undefined {
    const call: FastCall = {
      agent: request.agent,
      tool: request.tool,
      context: {
        params: request.params,
        dataClass: request.dataClass,
        jurisdiction: request.jurisdiction,
        provenance: request.provenance,
        risk: { score: request.risk.score, factors: request.risk.factors },
        now: request.now.toISOString(),
      },
    };
    let answer = fast.evaluate(call);
    const fault = this.fastOptions.fastEvaluatorFault;
    if (fault !== undefined) answer = fault(answer, call);
    if (answer === undefined) return undefined;
    return decisionOf(set, answer.decision, answer.determiningPolicies, []);
  }

  private verifySubsets(active: ActiveSet, requests: readonly PolicyRequest[]): string | undefined {
    if (active.subsetIds.size === 0) return undefined;
    for (const [i, request] of requests.entries()) {
      const fast = this.decideForCheck(active, request, true);
      const whole = this.decideForCheck(active, request, false);
      if (fast !== whole) {
        const reason = `the policy subset for tool ${quote(String(request.tool))} disagreed with the whole set on check request ${i + 1}, so every call is evaluated with the whole set`;
        active.subsetIds.clear();
        active.fastPath = { subsets: false, fallback: reason };
        return reason;
      }
    }
    return undefined;
  }

  private decideForCheck(active: ActiveSet, request: PolicyRequest, subset: boolean): string {
    try {
      const prepared = this.prepareCall(request, active, subset);
      if (prepared.done) return JSON.stringify(prepared.done);
      const answer = cedar.statefulIsAuthorized(prepared.call);
      const contextCheck =
        answer.type === 'failure'
          ? cedar.checkParseContext({ context: prepared.call.context, schema: active.set.schemaJson, action: prepared.action })
          : undefined;
      return JSON.stringify(interpret(prepared, answer, contextCheck));
    } catch (error) {
      return JSON.stringify({ error: isCountersignError(error) ? error.code : String(error) });
    }
  }

  /** Stops the evaluation worker, if any, and a load check still running (it decides nothing now). */
  async close(): Promise<void> {
    this.closed = true;
    await this.worker?.close();
  }

  /** The evaluation worker (fault tests and health). */
  get evaluator(): CedarWorkerClient | undefined {
    return this.worker;
  }

  get hash(): string {
    return this.active.set.hash;
  }

  get dir(): string {
    return this.active.set.dir;
  }

  /** The active, validated policy set (read-only view). */
  get current(): LoadedPolicySet {
    return this.active.set;
  }

  tool(name: string): ToolInfo | undefined {
    return this.active.set.tools.get(name);
  }

  toolNames(): string[] {
    return [...this.active.set.tools.keys()].sort();
  }

  /**
   * Decides one call. Throws CountersignError('unknown_tool') for a tool outside the set and
   * ('invalid_params') when the params do not match the tool's schema; every other problem
   * (a malformed request field, a Cedar failure, an evaluation error) yields a deny decision.
   */
  evaluate(request: PolicyRequest): PolicyDecision {
    const fast = this.tryFast(request);
    if (fast !== undefined) return fast;
    const prepared = this.prepareCall(request);
    if (prepared.done) return prepared.done;
    return evaluatePrepared(prepared);
  }

  /**
   * evaluate() through the worker when there is one (same rules, same answers). A worker that
   * times out or dies yields a deny with the reason, never an allow.
   *
   * `inlineIfIdle`: the caller knows nothing else is waiting for this thread (the decision path's
   * only call in flight). If the worker has nothing in flight either, the call is evaluated here,
   * exactly as evaluate() does, with the same preparsed set: the hand-off to the worker and back
   * (two thread wake-ups) costs a lone call more than Cedar itself does (issue #12: 2.7 ms
   * against 1.0 ms at p50 on a loaded 2-core machine), while under concurrency the worker keeps
   * Cedar beside the event loop.
   */
  async evaluateAsync(request: PolicyRequest, options: { inlineIfIdle?: boolean; requestId?: string } = {}): Promise<PolicyDecision> {
    const fast = this.tryFast(request, options.requestId);
    if (fast !== undefined) return fast;
    if (this.worker === undefined) return this.evaluate(request);
    const prepared = this.prepareCall(request);
    if (prepared.done) return prepared.done;
    if (options.inlineIfIdle === true && this.worker.idle) {
      this.inlineEvaluations++;
      let answered: CedarAnswer;
      try {
        answered = cedarAnswer(prepared);
      } catch (error) {
        // As the worker path answers a worker that threw (a wasm trap, say): a deny, never a throw.
        // Only Cedar's own calls are caught: interpret() below throws invalid_params for params
        // that fail the schema, exactly as on the worker path and in evaluate().
        const message = error instanceof Error ? error.message : String(error);
        return denyWithErrors(prepared.active.set.hash, [`authorization failed: ${clip(message)}`], []);
      }
      return interpret(prepared, answered.answer, answered.contextCheck);
    }
    let result;
    try {
      result = await this.worker.authorize(prepared.active.schemaName, prepared.action, prepared.call);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return denyWithErrors(prepared.active.set.hash, [`authorization failed: ${clip(message)}`], []);
    }
    return interpret(prepared, result.answer, result.contextCheck);
  }

  /**
   * The fast evaluator's decision, in this thread, when it is in use and sure of the call; every
   * input check cedar-wasm's path makes is made first (the same errors, the same denials).
   */
  private tryFast(request: PolicyRequest, requestId?: string): PolicyDecision | undefined {
    const active = this.active;
    if (active.fast === undefined) return undefined;
    const done = this.checkCall(request, active);
    if (done !== undefined) return undefined; // cedar-wasm's path answers it the same way, without Cedar
    const decided = this.decideFast(active.fast, active.set, request);
    if (decided === undefined) {
      this.fastHandovers++;
      return undefined;
    }
    this.fastEvaluations++;
    const n = active.fastDecided++;
    const every = this.fastOptions.shadowEvery ?? 64;
    if (n < (this.fastOptions.shadowFirst ?? 256) || (every > 0 && n % every === 0)) this.shadow(active, request, decided, requestId);
    return decided;
  }

  /**
   * The input checks of every call: throws unknown_tool / invalid_params; returns the denial of a
   * malformed request field (undefined when the call is fit to evaluate).
   */
  private checkCall(request: PolicyRequest, active: ActiveSet): PolicyDecision | undefined {
    const tool = active.toolEntity.get(request.tool);
    if (tool === undefined) {
      throw new CountersignError('unknown_tool', `tool ${quote(request.tool)} is not declared in the policy schema`, {
        details: { tool: request.tool },
      });
    }
    if (!isPlainObject(request.params)) {
      throw new CountersignError('invalid_params', `params for tool ${quote(request.tool)} must be a json object`, {
        details: { tool: request.tool },
      });
    }
    const reserved = findReservedKey(request.params, 'params');
    if (reserved !== undefined) {
      throw new CountersignError(
        'invalid_params',
        `params for tool ${quote(request.tool)} do not match the tool schema: ${quote(reserved)} is a reserved name`,
        { details: { tool: request.tool } },
      );
    }

    const requestProblem = checkRequestFields(request);
    if (requestProblem !== undefined) return denyWithErrors(active.set.hash, [requestProblem], []);
    return undefined;
  }

  /** Input checks and the Cedar call; `done` when the answer is known without Cedar. */
  private prepareCall(request: PolicyRequest, active = this.active, subset = true): Prepared {
    const { set, schemaName, slices } = active;
    const done = this.checkCall(request, active);
    if (done !== undefined) return { done };
    const tool = active.toolEntity.get(request.tool)!;

    const action = { type: ACTION_TYPE, id: request.tool };
    // The tool's subset when there is one (always known here: the tool was checked above), and
    // then only the entities that subset's policies can reach.
    const subsetId = subset ? active.subsetIds.get(request.tool) : undefined;
    const base = (subsetId === undefined ? undefined : slices.subsetSlice.get(request.tool)) ?? slices.baseSlice.get(request.tool)!;
    // Lookup parameters (schema type an entity type) become entity references in Cedar's view
    // of the call; the signed params themselves are never changed.
    const lookup = sliceForCall(slices, request.tool, request.params, base);
    const context: cedar.Context = {
      params: lookup.params,
      dataClass: request.dataClass,
      jurisdiction: request.jurisdiction,
      provenance: request.provenance,
      risk: { score: request.risk.score, factors: request.risk.factors },
      now: request.now.toISOString(),
    };
    const agent = request.agent;
    const entities: cedar.EntityJson[] = [
      {
        uid: { type: AGENT_TYPE, id: agent.id },
        attrs: { owner: agent.owner, group: agent.group, dataClasses: agent.dataClasses, jurisdictions: agent.jurisdictions },
        parents: [{ type: AGENT_GROUP_TYPE, id: agent.group }],
      },
      { uid: { type: AGENT_GROUP_TYPE, id: agent.group }, attrs: {}, parents: [] },
      ...(this.slicing ? [...base.entities, ...lookup.extra] : [tool, ...set.lookupEntities.all()]),
    ];
    const call: cedar.StatefulAuthorizationCall = {
      principal: { type: AGENT_TYPE, id: agent.id },
      action,
      resource: { type: TOOL_TYPE, id: request.tool },
      context,
      preparsedSchemaName: schemaName,
      validateRequest: true,
      preparsedPolicySetId: subsetId ?? active.policySetId,
      entities,
    };
    return { active, request, action, call };
  }

  /**
   * Re-reads the directory. A set that fails to load or preparse leaves the current set (and
   * hash) in place and returns {ok:false}. Calls are serialized; the promise never rejects.
   */
  reload(): Promise<ReloadResult> {
    const next = this.reloadQueue.then(() => this.reloadNow());
    this.reloadQueue = next.catch(() => undefined);
    return next;
  }

  /**
   * Watches the policy directory and reloads after a quiet period. Returns a stop function.
   * `onReload` gets every result, good or bad (log it, surface failures to the admin).
   */
  watch(onReload: (result: ReloadResult) => void, options: WatchOptions = {}): () => void {
    const debounceMs = options.debounceMs ?? 150;
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const deliver = (result: ReloadResult): void => {
      if (stopped) return;
      try {
        onReload(result);
      } catch {
        // A listener fault must not stop the watcher.
      }
    };
    const schedule = (): void => {
      if (stopped) return;
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        this.reload().then(deliver, () => undefined);
      }, debounceMs);
    };
    let watcher: FSWatcher | undefined;
    try {
      watcher = fsWatch(this.dir, { persistent: false }, schedule);
      watcher.on('error', (error) => {
        deliver({
          ok: false,
          error: new CountersignError('policy_invalid', `watching the policy directory failed: ${error.message.toLowerCase()}`, {
            cause: error,
          }),
          hash: this.hash,
        });
      });
    } catch (error) {
      throw new CountersignError(
        'policy_invalid',
        `policy directory ${quote(this.dir, 200)} cannot be watched: ${error instanceof Error ? error.message.toLowerCase() : String(error)}`,
        { cause: error },
      );
    }
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      watcher?.close();
    };
  }

  private async reloadNow(): Promise<ReloadResult> {
    const previousHash = this.hash;
    let set: LoadedPolicySet;
    try {
      set = await loadPolicyDirectory(this.dir);
    } catch (error) {
      const wrapped = isCountersignError(error)
        ? error
        : new CountersignError('policy_invalid', `policy reload failed: ${String(error)}`, { cause: error });
      return { ok: false, error: wrapped, hash: previousHash };
    }
    if (set.hash === previousHash) return { ok: true, changed: false, hash: previousHash, previousHash, warnings: set.warnings };
    try {
      const next = activate(set, this.subsets, this.fastOptions.fastEvaluator === true);
      const cases = this.fastPathCases === undefined ? [] : await this.fastPathCases(this.dir);
      if (this.fastPathCases !== undefined) this.verifySubsets(next, cases);
      this.active = next;
      this.worker?.prepare(preparedSetOf(this.active));
      // Checked in the background: cedar-wasm decides this load's calls until the check passes.
      void this.startEvaluatorCheck(next, cases);
    } catch (error) {
      const wrapped = isCountersignError(error)
        ? error
        : new CountersignError('policy_invalid', `policy reload failed: ${String(error)}`, { cause: error });
      return { ok: false, error: wrapped, hash: previousHash };
    }
    return { ok: true, changed: true, hash: set.hash, previousHash, warnings: set.warnings };
  }
}

// ---------------------------------------------------------------------------------------------

/** Turns Cedar's answer into a decision: deny by default, forbid wins, any error denies. */
function interpret(
  prepared: Exclude<Prepared, { done: PolicyDecision }>,
  answer: cedar.AuthorizationAnswer,
  contextCheck: cedar.CheckParseAnswer | undefined,
): PolicyDecision {
  const { set } = prepared.active;
  const { request } = prepared;
  if (answer.type === 'failure') {
    // Only blame the params when the context on its own is rejected; anything else is ours
    // to fix and must still fail closed.
    if (contextCheck?.type === 'failure') {
      const reason = contextCheck.errors.map((e) => e.message).join('; ');
      throw new CountersignError('invalid_params', `params for tool ${quote(request.tool)} do not match the tool schema: ${clip(reason)}`, {
        details: { tool: request.tool },
      });
    }
    return denyWithErrors(
      set.hash,
      answer.errors.map((e) => `authorization failed: ${clip(e.message)}`),
      [],
    );
  }

  const { decision, diagnostics } = answer.response;
  const determining = [...new Set(diagnostics.reason)].sort();
  // Sorted: Cedar reports errors in no stable order, and a decision's record must not depend on it.
  const errors = diagnostics.errors.map((e) => `policy ${quote(e.policyId)}: ${clip(e.error.message)}`).sort();
  if (errors.length > 0 && (decision === 'allow' || determining.length === 0))
    return denyWithErrors(set.hash, errors, erroredPolicies(diagnostics));
  return decisionOf(set, decision, determining, errors);
}

/**
 * The decision for Cedar's answer without errors (or a forbid's, with them): deny by default,
 * forbid wins, obligations from the determining permits. Both evaluators' answers go through it.
 */
function decisionOf(set: LoadedPolicySet, decision: 'allow' | 'deny', determining: string[], errors: string[]): PolicyDecision {
  if (decision === 'deny') {
    if (determining.length === 0) {
      return { outcome: 'deny', determiningPolicies: [], errors, policyHash: set.hash, reasons: [DEFAULT_DENY_REASON] };
    }
    return {
      outcome: 'deny',
      determiningPolicies: determining,
      errors,
      policyHash: set.hash,
      reasons: reasonsOf(set, determining, 'forbidden'),
    };
  }

  const reasons = reasonsOf(set, determining, 'permitted');
  const obligation = combineApprovalRequirements(set, determining);
  if (obligation === undefined) {
    return { outcome: 'allow', determiningPolicies: determining, errors: [], policyHash: set.hash, reasons };
  }
  return { outcome: 'approval_required', determiningPolicies: determining, errors: [], obligation, policyHash: set.hash, reasons };
}

function preparedSetOf(active: ActiveSet): PreparedSet {
  return {
    schemaName: active.schemaName,
    schemaText: active.set.schemaText,
    schemaJson: active.set.schemaJson,
    policySetId: active.policySetId,
    policies: { ...active.set.policyTexts },
    subsets: Object.fromEntries(active.subsetPolicies),
  };
}

/** Cedar in this thread for a prepared call (the worker runs the same two calls: cedar-worker.mjs). */
function evaluatePrepared(prepared: Exclude<Prepared, { done: PolicyDecision }>): PolicyDecision {
  const { answer, contextCheck } = cedarAnswer(prepared);
  return interpret(prepared, answer, contextCheck);
}

interface CedarAnswer {
  answer: cedar.AuthorizationAnswer;
  contextCheck: cedar.CheckParseAnswer | undefined;
}

/** Cedar's calls for a prepared call in this thread: the answer, and on a failure the context's own check. */
function cedarAnswer(prepared: Exclude<Prepared, { done: PolicyDecision }>): CedarAnswer {
  const answer = cedar.statefulIsAuthorized(prepared.call);
  const contextCheck =
    answer.type === 'failure'
      ? cedar.checkParseContext({ context: prepared.call.context, schema: prepared.active.set.schemaJson, action: prepared.action })
      : undefined;
  return { answer, contextCheck };
}

function activate(set: LoadedPolicySet, subsets: boolean, fastEvaluator: boolean): ActiveSet {
  const n = ++preparseCounter;
  const schemaName = `schema-${n}`;
  const policySetId = `pset-${n}`;
  const schema = cedar.preparseSchema(schemaName, set.schemaText);
  if (schema.type === 'failure') {
    throw new CountersignError('policy_invalid', `the schema could not be prepared: ${schema.errors.map((e) => e.message).join('; ')}`);
  }
  const policies = cedar.preparsePolicySet(policySetId, { staticPolicies: { ...set.policyTexts } });
  if (policies.type === 'failure') {
    throw new CountersignError(
      'policy_invalid',
      `the policy set could not be prepared: ${policies.errors.map((e) => e.message).join('; ')}`,
    );
  }
  // One preparsed set per distinct subset smaller than the whole (tools sharing a subset share it).
  const subsetIds = new Map<string, string>();
  const subsetPolicies = new Map<string, Record<string, string>>();
  if (subsets) {
    const byKey = new Map<string, string>();
    const total = Object.keys(set.policyTexts).length;
    for (const [tool, ids] of actionSubsets(set.schemaJson, set.policyTexts, set.toolEntities.keys())) {
      if (ids.length === total) continue;
      const key = ids.join('\u0000');
      let id = byKey.get(key);
      if (id === undefined) {
        id = `${policySetId}-subset-${byKey.size + 1}`;
        const texts = Object.fromEntries(ids.map((p) => [p, set.policyTexts[p]!]));
        const prepared = cedar.preparsePolicySet(id, { staticPolicies: texts });
        // A subset Cedar will not prepare (never expected: its policies are the set's) is simply not used.
        if (prepared.type === 'failure') continue;
        byKey.set(key, id);
        subsetPolicies.set(id, texts);
      }
      subsetIds.set(tool, id);
    }
  }
  return {
    set,
    schemaName,
    policySetId,
    toolEntity: set.toolEntities,
    slices: buildEntitySliceIndex({
      ...set,
      toolPolicies: new Map([...subsetIds].map(([tool, id]) => [tool, Object.keys(subsetPolicies.get(id)!)])),
    }),
    subsetIds,
    subsetPolicies,
    fastPath: { subsets },
    shadow: { compared: 0, skipped: 0 },
    ...fastEvaluatorFor(set, fastEvaluator),
  };
}

/** The fast evaluator for `set` from its policies' JSON form; throws Unsupported for a set outside its subset. */
export function compileFastEvaluator(set: LoadedPolicySet): FastEvaluator {
  const policyJson = new Map<string, JsonValue>();
  for (const [id, text] of Object.entries(set.policyTexts)) {
    const json = cedar.policyToJson(text);
    if (json.type === 'failure') throw new Unsupported(`policy ${quote(id)} has no JSON form`);
    policyJson.set(id, json.json as unknown as JsonValue);
  }
  return new FastEvaluator({
    schemaJson: set.schemaJson,
    policyJson,
    toolEntities: set.toolEntities,
    lookupEntities: set.lookupEntities,
    namespace: NAMESPACE,
  });
}

/** A refusal as the checks compare it. */
function errorJson(error: unknown): string {
  return JSON.stringify({ error: isCountersignError(error) ? error.code : String(error) });
}

/** A decision (or refusal) as JSON, summarised for a disagreement's audit record. */
function summaryOf(json: string): DecisionSummary {
  // Our own JSON.stringify of a decision or refusal, read back.
  const value = parseStrictJson(json) as { outcome?: string; determiningPolicies?: string[]; error?: string };
  return {
    outcome: value.outcome ?? `error:${String(value.error).slice(0, 100)}`,
    determiningPolicies: value.determiningPolicies ?? [],
  };
}

/** The fast evaluator compiled for `set`, or why it is not used (a construct outside its subset). */
function fastEvaluatorFor(
  set: LoadedPolicySet,
  wanted: boolean,
): Pick<ActiveSet, 'fast' | 'candidate' | 'evaluatorState' | 'ready' | 'fastDecided'> {
  if (!wanted)
    return {
      fast: undefined,
      candidate: undefined,
      fastDecided: 0,
      ready: Promise.resolve(undefined),
      evaluatorState: { evaluator: 'cedar-wasm' },
    };
  try {
    const fast = compileFastEvaluator(set);
    // On the path only once the load check passed (verifyEvaluator).
    return {
      fast: undefined,
      candidate: fast,
      fastDecided: 0,
      ready: Promise.resolve(undefined),
      evaluatorState: { evaluator: 'cedar-wasm' },
    };
  } catch (error) {
    if (!(error instanceof Unsupported)) throw error;
    const reason = `the fast evaluator does not support this policy set (${error.message}), so every call of this load is evaluated by cedar-wasm`;
    return {
      fast: undefined,
      candidate: undefined,
      fastDecided: 0,
      ready: Promise.resolve(reason),
      evaluatorState: { evaluator: 'cedar-wasm', fallback: reason },
    };
  }
}

function combineApprovalRequirements(set: LoadedPolicySet, determining: readonly string[]): PolicyApprovalRequirement | undefined {
  let result: PolicyApprovalRequirement | undefined;
  const groupKeys = new Set<string>();
  for (const id of determining) {
    const policy = set.policies.get(id);
    const spec = policy?.obligation;
    if (policy === undefined || spec === undefined || spec.approvals === 0) continue;
    result ??= {
      approvals: 0,
      groups: [],
      ttlSeconds: Number.POSITIVE_INFINITY,
      userVerification: 'preferred',
      reasons: [],
      conflicted: [],
    };
    result.conflicted = [...new Set([...result.conflicted, ...spec.conflicted])].sort();
    result.approvals = Math.max(result.approvals, spec.approvals);
    result.ttlSeconds = Math.min(result.ttlSeconds, spec.ttlSeconds);
    if (spec.userVerification === 'required') result.userVerification = 'required';
    if (spec.groups !== undefined) {
      const key = JSON.stringify(spec.groups);
      if (!groupKeys.has(key)) {
        groupKeys.add(key);
        result.groups.push([...spec.groups]);
      }
    }
    if (policy.reason !== undefined && !result.reasons.includes(policy.reason)) result.reasons.push(policy.reason);
  }
  result?.groups.sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
  return result;
}

function erroredPolicies(diagnostics: cedar.Diagnostics): string[] {
  return [...new Set(diagnostics.errors.map((e) => e.policyId))].sort();
}

/**
 * The reasons of the determining policies, each text once: two policies may carry the same
 * @reason (a shared guardrail copied into two policy files), and a person reads it once.
 */
function reasonsOf(set: LoadedPolicySet, ids: readonly string[], verb: 'forbidden' | 'permitted'): string[] {
  return [...new Set(ids.map((id) => set.policies.get(id)?.reason ?? `${verb} by policy ${quote(id)}`))];
}

function denyWithErrors(policyHash: string, errors: string[], determining: string[]): PolicyDecision {
  return { outcome: 'deny', determiningPolicies: determining, errors, policyHash, reasons: [EVALUATION_ERROR_REASON] };
}

function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

/** The request fields Countersign builds itself; a bad one is our bug, so it denies. */
function checkRequestFields(request: PolicyRequest): string | undefined {
  const { agent, risk, now } = request;
  if (typeof agent !== 'object' || agent === null) return 'request agent is missing';
  if (typeof agent.id !== 'string' || typeof agent.owner !== 'string' || typeof agent.group !== 'string')
    return 'request agent id, owner and group must be strings';
  if (!isStringArray(agent.dataClasses) || !isStringArray(agent.jurisdictions))
    return 'request agent data classes and jurisdictions must be lists of strings';
  if (typeof request.dataClass !== 'string' || typeof request.jurisdiction !== 'string')
    return 'request data class and jurisdiction must be strings';
  if (!isStringArray(request.provenance)) return 'request provenance must be a list of strings';
  if (typeof risk !== 'object' || risk === null || !Number.isSafeInteger(risk.score) || risk.score < 0 || risk.score > 100)
    return 'request risk score must be a whole number from 0 to 100';
  if (!isStringArray(risk.factors)) return 'request risk factors must be a list of strings';
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) return 'request time is not a valid date';
  const year = now.getUTCFullYear();
  if (year < 1 || year > 9999) return 'request time is outside years 0001-9999';
  return undefined;
}

function findReservedKey(value: JsonValue, at: string, depth = 0): string | undefined {
  if (depth > 64) return at;
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const found = findReservedKey(item, `${at}[${i}]`, depth + 1);
      if (found !== undefined) return found;
    }
  } else if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      if (RESERVED_PARAM_KEYS.has(key)) return `${at}.${key}`;
      const found = findReservedKey(item, `${at}.${key}`, depth + 1);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function clip(text: string): string {
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text;
}
