/**
 * The risk scorer, factor by factor, through the real engine (profiles learned into a real
 * SQLite file): each factor fires with its points and sentence on the call that should raise
 * it, and stays quiet on its benign counterpart. Also: learning only from executed calls,
 * determinism across a reload, and faults counted as maximum risk.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, type Db } from '../../main/core/store/database.js';
import { RiskEngine } from '../../main/core/risk/risk-engine.js';
import { DEFAULT_RISK_CONFIG, parseRiskConfig, type RiskConfig } from '../../main/core/risk/risk-config.js';
import { callDigest } from '../../main/core/tokens/call-digest.js';
import { safeScore, type RiskInput, type RiskScorer } from '../../main/core/risk/risk-ports.js';
import type { ToolCall } from '../../shared/protocol.js';
import type { RiskAssessment } from '../../shared/risk.js';
import { tempDir } from '../helpers/harness.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Monday 2026-11-02 00:00 UTC: history runs on the days after it, probes later. */
const T0 = Date.UTC(2026, 10, 2);

const CONFIG: RiskConfig = parseRiskConfig({
  tools: {
    'payments.transfer': { amount: 'amount', currency: 'currency', destinations: { payee: 'payee' }, volatile: ['memo'] },
    'invoices.read': { volatile: ['invoiceId'] },
  },
});

const AGENT: RiskInput['agent'] = {
  id: 'ap-agent',
  dataClasses: ['financial', 'pii'],
  jurisdictions: ['US', 'GB'],
  model: 'model-a',
  agentVersion: '1.0.0',
};

function transfer(amount: number, payee = 'Acme Ltd', extra: Partial<ToolCall> = {}): ToolCall {
  return {
    tool: 'payments.transfer',
    params: { amount: amount.toFixed(2), currency: 'USD', payee, memo: `m${Math.random()}` },
    dataClass: 'financial',
    jurisdiction: 'US',
    provenance: ['user'],
    model: 'model-a',
    agentVersion: '1.0.0',
    ...extra,
  };
}

function invoiceRead(): ToolCall {
  return {
    tool: 'invoices.read',
    params: { invoiceId: `INV-${Math.random()}` },
    dataClass: 'financial',
    jurisdiction: 'US',
    provenance: ['user'],
    model: 'model-a',
    agentVersion: '1.0.0',
  };
}

const dirs: string[] = [];
const dbs: Db[] = [];
afterEach(() => {
  for (const db of dbs.splice(0)) db.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function store(): Db {
  const dir = tempDir('countersign-risk-');
  dirs.push(dir);
  const db = openStore(join(dir, 'risk.db'));
  dbs.push(db);
  return db;
}

let seq = 0;
function learn(
  engine: RiskEngine,
  db: Db,
  call: ToolCall,
  at: number,
  state: 'allowed' | 'denied' | 'pending' = 'allowed',
  agentId = AGENT.id,
): string {
  const id = `r${++seq}`;
  db.transaction(() => engine.submitted(agentId, id, call, callDigest(call.tool, call.params), at, state))();
  return id;
}

function score(engine: RiskEngine, call: ToolCall, at: number, agent = AGENT): RiskAssessment {
  return engine.score({ agent, call, callSha256: callDigest(call.tool, call.params), now: at });
}

const factor = (r: RiskAssessment, name: string) => r.factors.find((f) => f.name === name);
/** No unpaired UTF-16 surrogate (String.prototype.isWellFormed is ES2024, beyond our lib target). */
const wellFormed = (s: string) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

/**
 * 24 working days of history: each day at 09:00-16:00 UTC an invoice read, then a transfer of
 * about 100.00 USD to one of two usual payees.
 */
function withHistory(config = CONFIG): { engine: RiskEngine; db: Db } {
  const db = store();
  const engine = new RiskEngine(db, config);
  for (let d = 0; d < 24; d++) {
    const at = T0 + d * DAY + (9 + (d % 8)) * HOUR;
    learn(engine, db, invoiceRead(), at);
    learn(engine, db, transfer(90 + (d % 5) * 5, d % 2 === 0 ? 'Acme Ltd' : 'Globex Corporation'), at + 60_000);
  }
  return { engine, db };
}

/** A probe time after the history, inside the usual hours, long after the last call. */
const PROBE = T0 + 27 * DAY + 11 * HOUR;

describe('risk scorer factors', () => {
  it('a usual call scores zero with no factors', () => {
    const { engine, db } = withHistory();
    learn(engine, db, invoiceRead(), PROBE - 60_000);
    const r = score(engine, transfer(100, 'Acme Ltd'), PROBE);
    expect(r).toEqual({ score: 0, factors: [] });
  });

  it('amount_vs_baseline: 4.1x the median fires with the ratio in its sentence; 2x does not', () => {
    const { engine } = withHistory();
    const r = score(engine, transfer(410, 'Acme Ltd'), PROBE);
    const f = factor(r, 'amount_vs_baseline');
    expect(f).toMatchObject({ weight: 40, observed: { ratio: 4.1, median: 100 } });
    expect(f!.explanation).toBe("amount is 4.1x this agent's 30-day median (410 USD against 100 USD over 24 executed calls)");
    expect(f!.points).toBeGreaterThanOrEqual(20);
    expect(factor(score(engine, transfer(200, 'Acme Ltd'), PROBE), 'amount_vs_baseline')).toBeUndefined();
    expect(factor(score(engine, transfer(1000, 'Acme Ltd'), PROBE), 'amount_vs_baseline')!.points).toBe(40);
  });

  it('new_destination: a payee never used in an executed call', () => {
    const { engine } = withHistory();
    const f = factor(score(engine, transfer(100, 'Northwind Traders'), PROBE), 'new_destination');
    expect(f).toMatchObject({ points: 30, observed: { payee: 'Northwind Traders' } });
    expect(f!.explanation).toBe('payee "Northwind Traders" has never been used by this agent in an executed call');
    expect(factor(score(engine, transfer(100, 'Globex Corporation'), PROBE), 'new_destination')).toBeUndefined();
  });

  it('new_destination: a payee first used minutes ago still counts, at half strength', () => {
    const { engine, db } = withHistory();
    learn(engine, db, transfer(100, 'Northwind Traders'), PROBE - 10 * 60_000);
    const f = factor(score(engine, transfer(100, 'Northwind Traders'), PROBE), 'new_destination');
    expect(f).toMatchObject({ points: 15, observed: { payee: 'Northwind Traders', firstUsedMinutesAgo: 10 } });
  });

  it('call_rate: a burst in the last minute against a baseline of one call at a time', () => {
    const { engine, db } = withHistory();
    for (let i = 0; i < 12; i++) learn(engine, db, transfer(100 + i, 'Acme Ltd'), PROBE - 50_000 + i * 4_000);
    const f = factor(score(engine, transfer(99, 'Acme Ltd'), PROBE), 'call_rate');
    expect(f).toMatchObject({ points: 25, observed: { lastMinute: 13 } });
    expect(f!.explanation).toContain('13 calls in the last minute');
    const quiet = withHistory();
    learn(quiet.engine, quiet.db, transfer(100, 'Acme Ltd'), PROBE - 30_000);
    expect(factor(score(quiet.engine, transfer(99, 'Acme Ltd'), PROBE), 'call_rate')).toBeUndefined();
  });

  it('repeated_call: the same call again is a loop; one retry is not', () => {
    const { engine, db } = withHistory();
    const call = transfer(100, 'Acme Ltd');
    learn(engine, db, call, PROBE - 60_000);
    expect(factor(score(engine, call, PROBE), 'repeated_call')).toBeUndefined();
    learn(engine, db, call, PROBE - 30_000);
    expect(factor(score(engine, call, PROBE), 'repeated_call')).toMatchObject({ points: 30, observed: { identical: 2 } });
    learn(engine, db, call, PROBE - 20_000, 'denied');
    learn(engine, db, call, PROBE - 10_000, 'denied');
    const f = factor(score(engine, call, PROBE), 'repeated_call');
    expect(f).toMatchObject({ points: 60, observed: { identical: 4 } });
    expect(f!.explanation).toBe('the same call was already sent 4 times in the last 10 minutes');
  });

  it('repeated_call: near-identical calls differ only in volatile parameters', () => {
    const { engine, db } = withHistory();
    for (let i = 0; i < 4; i++) learn(engine, db, transfer(100, 'Acme Ltd'), PROBE - (5 - i) * 60_000); // memo differs each time
    const f = factor(score(engine, transfer(100, 'Acme Ltd'), PROBE), 'repeated_call');
    expect(f).toMatchObject({ points: 30, observed: { identical: 0, similar: 4 } });
  });

  it('call_depth: deep in its session, and a session fanning out', () => {
    const { engine, db } = withHistory();
    expect(factor(score(engine, transfer(100, 'Acme Ltd', { session: { id: 'run-1', depth: 5 } }), PROBE), 'call_depth')).toBeUndefined();
    const deep = factor(score(engine, transfer(100, 'Acme Ltd', { session: { id: 'run-1', depth: 8 } }), PROBE), 'call_depth');
    expect(deep).toMatchObject({ observed: { depth: 8 } });
    expect(deep!.points).toBe(Math.round(30 * (0.5 + (0.5 * 3) / 5)));
    for (let i = 0; i < 25; i++)
      learn(engine, db, { ...invoiceRead(), session: { id: 'run-2', depth: 1 } }, PROBE - 3_000_000 + i * 60_000);
    const fan = factor(score(engine, transfer(100, 'Acme Ltd', { session: { id: 'run-2', depth: 1 } }), PROBE), 'call_depth');
    expect(fan).toMatchObject({ points: 30, observed: { sessionCalls: 26 } });
  });

  it('unusual_sequence: a transfer that does not follow an invoice read', () => {
    const { engine, db } = withHistory();
    // After a quiet gap a sequence starts afresh, and this agent always starts with invoices.read.
    const f = factor(score(engine, transfer(100, 'Acme Ltd'), PROBE), 'unusual_sequence');
    expect(f).toMatchObject({ points: 20, observed: { from: '^', seen: 0, total: 24 } });
    expect(f!.explanation).toBe('this agent has never called "payments.transfer" after the start of a sequence (24 transitions seen)');
    learn(engine, db, invoiceRead(), PROBE - 60_000);
    expect(factor(score(engine, transfer(100, 'Acme Ltd'), PROBE), 'unusual_sequence')).toBeUndefined();
    const again = factor(score(engine, invoiceRead(), PROBE), 'unusual_sequence');
    expect(again).toMatchObject({ points: 20, observed: { from: 'invoices.read', seen: 0 } });
    expect(again!.explanation).toBe('this agent has never called "invoices.read" after "invoices.read" (24 transitions seen)');
  });

  it('untrusted_provenance: the worst declared label counts; none declared counts too', () => {
    const { engine } = withHistory();
    const external = factor(
      score(engine, transfer(100, 'Acme Ltd', { provenance: ['user', 'email:external'] }), PROBE),
      'untrusted_provenance',
    );
    expect(external).toMatchObject({ points: 45, observed: { provenance: 'user,email:external' } });
    expect(external!.explanation).toBe('the input that led to this call came from "email:external"');
    expect(factor(score(engine, transfer(100, 'Acme Ltd', { provenance: ['web'] }), PROBE), 'untrusted_provenance')!.points).toBe(36);
    expect(
      factor(score(engine, transfer(100, 'Acme Ltd', { provenance: ['carrier-pigeon'] }), PROBE), 'untrusted_provenance')!.points,
    ).toBe(27);
    expect(factor(score(engine, transfer(100, 'Acme Ltd', { provenance: [] }), PROBE), 'untrusted_provenance')!.points).toBe(23);
    expect(factor(score(engine, transfer(100, 'Acme Ltd', { provenance: ['user'] }), PROBE), 'untrusted_provenance')).toBeUndefined();
  });

  it('off_hours: 03:00 UTC for an agent that works 09:00-17:00', () => {
    const { engine } = withHistory();
    const f = factor(score(engine, transfer(100, 'Acme Ltd'), T0 + 27 * DAY + 3 * HOUR + 17 * 60_000), 'off_hours');
    expect(f).toMatchObject({ points: 30, observed: { hourUtc: 3, executed: 48 } });
    expect(f!.explanation).toBe("0 of this agent's 48 executed calls were made between 02:00 and 05:00 UTC; this call is at 03:17 UTC");
    expect(factor(score(engine, transfer(100, 'Acme Ltd'), T0 + 27 * DAY + 17 * HOUR), 'off_hours')).toBeUndefined();
  });

  it('data_scope: outside the enrolled scope at full weight, new but in scope at half', () => {
    const { engine } = withHistory();
    const outside = factor(score(engine, transfer(100, 'Acme Ltd', { jurisdiction: 'KP' }), PROBE), 'data_scope');
    expect(outside).toMatchObject({ points: 40, observed: { inScope: false } });
    expect(outside!.explanation).toBe('jurisdiction "KP" is outside the agent\'s enrolled scope');
    const unseen = factor(score(engine, transfer(100, 'Acme Ltd', { dataClass: 'pii' }), PROBE), 'data_scope');
    expect(unseen).toMatchObject({ points: 20, observed: { inScope: true } });
  });

  it('agent_version: another model or version than the enrolled one, or none declared', () => {
    const { engine } = withHistory();
    const other = factor(score(engine, transfer(100, 'Acme Ltd', { model: 'model-b' }), PROBE), 'agent_version');
    expect(other).toMatchObject({ points: 35, observed: { model: 'model-b' } });
    expect(other!.explanation).toBe('the call comes from model "model-b"; the agent was enrolled with "model-a"');
    const { model: _m, agentVersion: _v, ...bare } = transfer(100, 'Acme Ltd');
    expect(factor(score(engine, bare, PROBE), 'agent_version')!.explanation).toContain('declares no model');
    expect(
      factor(score(engine, transfer(100, 'Acme Ltd'), PROBE, { ...AGENT, model: undefined, agentVersion: undefined }), 'agent_version'),
    ).toBeUndefined();
  });

  it('split_transaction: pieces to one payee add up within the hour; a batch to many payees counts half', () => {
    const { engine, db } = withHistory();
    for (let i = 0; i < 3; i++) learn(engine, db, transfer(99, 'Acme Ltd'), PROBE - (40 - i * 10) * 60_000);
    const split = factor(score(engine, transfer(99, 'Acme Ltd'), PROBE), 'split_transaction');
    expect(split).toMatchObject({ points: 40, observed: { calls: 4, sameDestination: 4 } });
    expect(split!.explanation).toBe(
      "4 payments.transfer calls (4 to the same destination) totalling 396 USD in the last 60 minutes, 4x this agent's median",
    );
    const batch = withHistory();
    learn(batch.engine, batch.db, transfer(99, 'Acme Ltd'), PROBE - 30 * 60_000);
    learn(batch.engine, batch.db, transfer(99, 'Globex Corporation'), PROBE - 20 * 60_000);
    learn(batch.engine, batch.db, transfer(99, 'Acme Ltd'), PROBE - 10 * 60_000);
    expect(factor(score(batch.engine, transfer(99, 'Globex Corporation'), PROBE), 'split_transaction')).toMatchObject({
      points: 20,
      observed: { sameDestination: 2 },
    });
  });

  it('baseline_learning: a new agent is flagged lightly and baseline factors stay quiet', () => {
    const db = store();
    const engine = new RiskEngine(db, CONFIG);
    const r = score(engine, transfer(5000, 'Never Seen Ltd'), PROBE);
    expect(r.factors.map((f) => f.name)).toEqual(['baseline_learning']);
    expect(r.score).toBe(10);
    expect(r.factors[0]!.explanation).toBe(
      'this agent has 0 executed calls; its baseline is learned from the first 20, so baseline checks are not applied yet',
    );
  });

  it('long or exotic user-supplied values are clipped into the record, never a fault', () => {
    const { engine } = withHistory();
    const long = `${'😀'.repeat(100)}x${'😀'.repeat(200)}`; // surrogate pairs straddling every cut
    const labels = Array.from({ length: 16 }, (_, i) => `${'p'.repeat(120)}-${i}`);
    const r = safeScore(engine, {
      agent: AGENT,
      call: transfer(100, long, { provenance: labels, model: 'm'.repeat(128) }),
      callSha256: 'x',
      now: PROBE,
    });
    expect(r.factors.map((f) => f.name)).toEqual(['new_destination', 'unusual_sequence', 'untrusted_provenance', 'agent_version']);
    for (const f of r.factors) {
      expect(f.explanation.length).toBeLessThanOrEqual(1024);
      for (const v of Object.values(f.observed)) if (typeof v === 'string') expect(v.length).toBeLessThanOrEqual(256);
      // No lone surrogates: the record must stay valid I-JSON for the audit log.
      expect(JSON.stringify(f)).not.toMatch(/\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f])/i);
      expect(wellFormed(f.explanation)).toBe(true);
      for (const v of Object.values(f.observed)) if (typeof v === 'string') expect(wellFormed(v)).toBe(true);
    }
  });

  it('caps the score at 100', () => {
    const { engine } = withHistory();
    const r = score(
      engine,
      transfer(5000, 'Evil Ltd', { provenance: ['email:external'], model: 'other', jurisdiction: 'KP' }),
      T0 + 27 * DAY + 3 * HOUR,
    );
    expect(r.factors.reduce((s, f) => s + f.points, 0)).toBeGreaterThan(100);
    expect(r.score).toBe(100);
  });
});

describe('risk baselines', () => {
  it('learn only from executed calls: denied and pending ones are not learned until approved', () => {
    const { engine, db } = withHistory();
    learn(engine, db, transfer(100, 'Denied Payee'), PROBE - 3 * HOUR, 'denied');
    expect(factor(score(engine, transfer(100, 'Denied Payee'), PROBE), 'new_destination')!.points).toBe(30);
    const held = transfer(100, 'Held Payee');
    const id = learn(engine, db, held, PROBE - 3 * HOUR, 'pending');
    expect(factor(score(engine, transfer(100, 'Held Payee'), PROBE), 'new_destination')!.points).toBe(30);
    db.transaction(() =>
      engine.settled(
        AGENT.id,
        { id, call: held, callSha256: callDigest(held.tool, held.params), createdAt: PROBE - 3 * HOUR },
        'approved',
        PROBE - HOUR,
      ),
    )();
    expect(factor(score(engine, transfer(100, 'Held Payee'), PROBE), 'new_destination')!.points).toBe(15);
    const rows = db.prepare("SELECT value FROM risk_known WHERE agent_id = ? AND kind = 'payee' ORDER BY value").all(AGENT.id);
    expect(rows).toEqual([{ value: 'Acme Ltd' }, { value: 'Globex Corporation' }, { value: 'Held Payee' }]);
  });

  it('are persisted: a fresh engine on the same database scores the same call identically', () => {
    const { engine, db } = withHistory();
    const probes = [
      transfer(410, 'Acme Ltd'),
      transfer(100, 'Northwind'),
      invoiceRead(),
      transfer(100, 'Acme Ltd', { provenance: ['web'] }),
    ];
    const times = [PROBE, T0 + 27 * DAY + 3 * HOUR, T0 + 30 * DAY + 12 * HOUR];
    const before = times.flatMap((t) => probes.map((p) => score(engine, p, t)));
    const fresh = new RiskEngine(db, CONFIG);
    const after = times.flatMap((t) => probes.map((p) => score(fresh, p, t)));
    expect(after).toEqual(before);
    expect(before.some((r) => r.score > 0)).toBe(true);
  });

  it('stay deterministic when a call is learned between two scores in the same hour (cached medians and rates are dropped)', () => {
    const { engine, db } = withHistory();
    const probe = transfer(410, 'Acme Ltd');
    score(engine, probe, PROBE); // fills the per-hour caches
    for (let i = 0; i < 6; i++) learn(engine, db, transfer(400, 'Acme Ltd'), PROBE - 30 * 60_000 + i * 1000);
    const cached = score(engine, probe, PROBE + 60_000);
    const fresh = score(new RiskEngine(db, CONFIG), probe, PROBE + 60_000);
    expect(factor(fresh, 'amount_vs_baseline')?.observed).toEqual(factor(cached, 'amount_vs_baseline')?.observed);
    expect(factor(cached, 'amount_vs_baseline')!.observed.median).toBe(102.5); // the six new 400s moved the median from 100
    expect(factor(cached, 'amount_vs_baseline')!.observed.samples).toBe(30);
  });

  it('forget drops what memory learned in a transaction that rolled back', () => {
    const { engine, db } = withHistory();
    expect(() =>
      db.transaction(() => {
        engine.submitted(AGENT.id, 'rolled-back', transfer(100, 'Rollback Payee'), 'x', PROBE - HOUR, 'allowed');
        throw new Error('commit failed');
      })(),
    ).toThrow('commit failed');
    engine.forget(AGENT.id);
    expect(factor(score(engine, transfer(100, 'Rollback Payee'), PROBE), 'new_destination')!.points).toBe(30);
  });

  it('keep at most maxKnownPerKind destinations per kind, dropping the least recently used', () => {
    const config = parseRiskConfig({ ...CONFIG, maxKnownPerKind: 10 });
    const { engine, db } = withHistory(config);
    for (let i = 0; i < 12; i++) learn(engine, db, transfer(100, `Payee ${i}`), PROBE - 20 * HOUR + i * 60_000);
    const n = db
      .prepare<[string], { n: number }>("SELECT COUNT(*) AS n FROM risk_known WHERE agent_id = ? AND kind = 'payee'")
      .get(AGENT.id)!.n;
    expect(n).toBe(10);
    expect(factor(score(engine, transfer(100, 'Acme Ltd'), PROBE), 'new_destination')!.points).toBe(30); // evicted
    expect(
      factor(
        new RiskEngine(db, config).score({ agent: AGENT, call: transfer(100, 'Payee 11'), callSha256: 'x', now: PROBE }),
        'new_destination',
      )!.points,
    ).toBe(15);
  });

  it('prune forgets amounts and minute/hour counters past the lookback window', () => {
    const { engine, db } = withHistory();
    const removed = engine.prune(T0 + 60 * DAY);
    expect(removed).toBeGreaterThan(0);
    expect(db.prepare('SELECT COUNT(*) AS n FROM risk_amounts').get()).toEqual({ n: 0 });
  });
});

describe('risk scorer faults count as maximum risk', () => {
  const input = { agent: AGENT, call: transfer(100), callSha256: 'x', now: PROBE };
  const faulty = (score: () => unknown): RiskScorer => ({ score: score as () => RiskAssessment }); // fault injection: a scorer that misbehaves

  it.each([
    [
      'an exception',
      () => {
        throw new Error('boom');
      },
      'Error: boom',
    ],
    ['NaN', () => ({ score: NaN, factors: [] }), 'score'],
    ['a score above 100', () => ({ score: 150, factors: [] }), 'score'],
    ['a negative score', () => ({ score: -1, factors: [] }), 'score'],
    ['a fractional score', () => ({ score: 12.5, factors: [] }), 'score'],
    ['a malformed factor', () => ({ score: 10, factors: [{ name: 'made_up' }] }), 'factors'],
    ['nothing at all', () => undefined, 'invalid'],
  ])('%s', (_what, fn, mentioned) => {
    const r = safeScore(faulty(fn), input);
    expect(r.score).toBe(100);
    expect(r.factors).toHaveLength(1);
    expect(r.factors[0]).toMatchObject({ name: 'scorer_fault', points: 100 });
    expect(r.factors[0]!.explanation).toContain(mentioned);
  });

  it('a missing baseline store', () => {
    const db = store();
    const engine = new RiskEngine(db, CONFIG);
    db.exec('DROP TABLE risk_counts');
    const r = safeScore(engine, input);
    expect(r).toMatchObject({ score: 100, factors: [{ name: 'scorer_fault' }] });
    expect(r.factors[0]!.explanation).toContain('no such table');
  });

  it('a corrupt baseline row', () => {
    const db = store();
    const engine = new RiskEngine(db, CONFIG);
    db.prepare("INSERT INTO risk_counts (agent_id, kind, key, count, last_at) VALUES (?, 'mystery', '', 1, 0)").run(AGENT.id);
    expect(safeScore(engine, input)).toMatchObject({ score: 100, factors: [{ name: 'scorer_fault' }] });
  });
});

describe('risk settings', () => {
  it('defaults are complete and valid', () => {
    expect(DEFAULT_RISK_CONFIG.reportThreshold).toBe(60);
    expect(Object.keys(DEFAULT_RISK_CONFIG.factors).sort()).toEqual([
      'agent_version',
      'amount_vs_baseline',
      'baseline_learning',
      'bulk_action',
      'call_depth',
      'call_rate',
      'data_flow',
      'data_scope',
      'memo_exfiltration',
      'new_destination',
      'new_effect',
      'new_recipient',
      'off_hours',
      'repeated_call',
      'split_transaction',
      'tainted_access_change',
      'untrusted_provenance',
      'unusual_sequence',
    ]);
  });

  it.each([
    [{ surprise: 1 }, 'surprise'],
    [{ factors: { amount_vs_baseline: { weight: 101 } } }, 'factors.amount_vs_baseline.weight'],
    [{ factors: { amount_vs_baseline: { ratioLow: 5, ratioHigh: 4 } } }, 'factors.amount_vs_baseline.ratioHigh'],
    [{ factors: { untrusted_provenance: { labels: { web: 1.5 } } } }, 'factors.untrusted_provenance.labels.web'],
    [{ factors: { made_up: { weight: 1 } } }, 'factors'],
    [{ tools: { 'payments.transfer': { amount: 'amount', colour: 'red' } } }, 'tools.payments.transfer'],
    [{ tools: { 'payments.transfer': { destinations: { 'Bad Kind': 'payee' } } } }, 'tools.payments.transfer.destinations.Bad Kind'],
    [{ reportThreshold: 0 }, 'reportThreshold'],
  ])('refuses %j, naming where', (value, path) => {
    let caught: unknown;
    try {
      parseRiskConfig(value);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'config_invalid' });
    expect((caught as Error).message).toContain(`"${path}`);
  });
});

describe('the hand-written assessment check agrees with the schema', () => {
  it('on valid assessments and on every kind of malformed one', async () => {
    const { riskAssessmentProblem, riskAssessmentSchema, faultAssessment, RISK_FACTOR_NAMES } = await import('../../shared/risk.js');
    const { UnscoredRisk } = await import('../../main/core/risk/risk-ports.js');
    const { engine } = withHistory();
    const real = score(engine, transfer(5000, 'Evil Ltd', { provenance: ['email:external'], model: 'other' }), T0 + 27 * DAY + 3 * HOUR);
    const f = real.factors[0]!;
    const cases: unknown[] = [
      real,
      faultAssessment('boom'),
      UnscoredRisk.score({ agent: AGENT, call: transfer(1), callSha256: 'x', now: 0 }),
      { score: 0, factors: [] },
      null,
      'x',
      [],
      { score: 1 },
      { score: 1, factors: [], extra: 1 },
      { score: 101, factors: [] },
      { score: 1.5, factors: [] },
      { score: -1, factors: [] },
      { score: 1, factors: 'x' },
      { score: 1, factors: new Array(RISK_FACTOR_NAMES.length + 1).fill(f) },
      { score: 1, factors: [{ ...f, name: 'made_up' }] },
      { score: 1, factors: [{ ...f, points: 101 }] },
      { score: 1, factors: [{ ...f, weight: -1 }] },
      { score: 1, factors: [{ ...f, explanation: 'x'.repeat(1025) }] },
      { score: 1, factors: [{ ...f, explanation: 'x'.repeat(1024) }] },
      { score: 1, factors: [{ ...f, observed: { nested: {} } }] },
      { score: 1, factors: [{ ...f, observed: { ['k'.repeat(65)]: 1 } }] },
      { score: 1, factors: [{ ...f, observed: { s: 'x'.repeat(257) } }] },
      { score: 1, factors: [{ ...f, observed: { s: 'x'.repeat(256) } }] },
      { score: 1, factors: [{ ...f, observed: { n: NaN } }] },
      { score: 1, factors: [{ ...f, observed: [] }] },
      { score: 1, factors: [{ ...f, more: 1 }] },
      { score: 1, factors: [{ ...f, explanation: undefined }] },
      { score: 1, factors: [null] },
    ];
    for (const [i, value] of cases.entries()) {
      expect(riskAssessmentProblem(value) === undefined, `case ${i}`).toBe(riskAssessmentSchema.safeParse(value).success);
    }
    expect(cases.filter((v) => riskAssessmentProblem(v) === undefined)).toHaveLength(6);
  });
});
