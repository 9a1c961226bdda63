/**
 * Risk baselines in SQLite (tables risk_known, risk_amounts, risk_counts; migration 7; the
 * reported reads of recent sessions in risk_reads, as digests) and the
 * recent window read back from the requests table. Writes run inside the caller's transaction
 * (the decision's or the approval's), so a baseline learns from a call exactly when that call's
 * executed state commits, and never from one that rolled back.
 */
import type { Db } from '../store/database.js';
import { RequestRepository } from '../store/request-repository.js';
import type { RiskConfig } from './risk-config.js';
import { callFeatures, itemSeries, type CallFeatures } from './call-features.js';
import { addRead, emptyFlow } from './data-flow.js';
import {
  HOUR_MS,
  MAX_ACTIVE_HOURS,
  MAX_ACTIVE_MINUTES,
  MINUTE_MS,
  RECIPIENT_KIND,
  destinationKey,
  emptyProfile,
  pushAmount,
  trimRecent,
  type AgentProfile,
  type KnownDestination,
  type Learned,
} from './agent-profile.js';

interface CountRow {
  kind: string;
  key: string;
  count: number;
  last_at: number;
}

export class ProfileStore {
  private readonly known;
  private readonly amounts;
  private readonly counts;
  private readonly recent;
  private readonly upsertCount;
  private readonly insertAmount;
  private readonly upsertKnown;
  private readonly deleteKnown;
  private readonly upsertEffect;
  private readonly reads;
  private readonly insertRead;

  constructor(
    private readonly db: Db,
    private readonly config: RiskConfig,
    private readonly recentWindowMs: number,
  ) {
    this.known = db.prepare<[string], { kind: string; value: string; first_seen: number; last_seen: number }>(
      'SELECT kind, value, first_seen, last_seen FROM risk_known WHERE agent_id = ? ORDER BY last_seen, value',
    );
    this.amounts = db.prepare<[string, number], { series: string; at: number; amount: number }>(
      'SELECT series, at, amount FROM risk_amounts WHERE agent_id = ? AND at >= ? ORDER BY at, rowid',
    );
    this.counts = db.prepare<[string], CountRow>('SELECT kind, key, count, last_at FROM risk_counts WHERE agent_id = ?');
    this.recent = new RequestRepository(db);
    // The eight counters an executed call bumps, in one statement.
    this.upsertCount = db.prepare(
      `INSERT INTO risk_counts (agent_id, kind, key, count, last_at) VALUES ${new Array(8).fill('(?, ?, ?, 1, ?)').join(', ')}
       ON CONFLICT (agent_id, kind, key) DO UPDATE SET count = count + 1, last_at = max(last_at, excluded.last_at)`,
    );
    this.insertAmount = db.prepare('INSERT INTO risk_amounts (agent_id, series, at, amount) VALUES (?, ?, ?, ?)');
    this.upsertKnown = db.prepare(
      'INSERT INTO risk_known (agent_id, kind, value, first_seen, last_seen, uses) VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (agent_id, kind, value) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), uses = uses + 1',
    );
    this.deleteKnown = db.prepare('DELETE FROM risk_known WHERE agent_id = ? AND kind = ? AND value = ?');
    this.upsertEffect = db.prepare(
      `INSERT INTO risk_counts (agent_id, kind, key, count, last_at) VALUES (?, 'effect', ?, 1, ?)
       ON CONFLICT (agent_id, kind, key) DO UPDATE SET count = count + 1, last_at = max(last_at, excluded.last_at)`,
    );
    this.reads = db.prepare<[string, number], { session_id: string; at: number; trusted: number; what: string; digests: string }>(
      'SELECT session_id, at, trusted, what, digests FROM risk_reads WHERE agent_id = ? AND at >= ? ORDER BY at, rowid',
    );
    this.insertRead = db.prepare('INSERT INTO risk_reads (agent_id, session_id, at, trusted, what, digests) VALUES (?, ?, ?, ?, ?, ?)');
  }

  /** The agents this database holds a learned baseline for. */
  agentsWithBaselines(): string[] {
    return this.db
      .prepare<[], { agent_id: string }>(
        'SELECT agent_id FROM risk_counts UNION SELECT agent_id FROM risk_known UNION SELECT agent_id FROM risk_amounts ORDER BY agent_id',
      )
      .all()
      .map((row) => row.agent_id);
  }

  /** Rebuild an agent's profile from the database (throws if the tables are missing or corrupt). */
  load(agentId: string, now: number): AgentProfile {
    const profile = emptyProfile();
    for (const row of this.known.all(agentId)) {
      let values = profile.known.get(row.kind);
      if (!values) profile.known.set(row.kind, (values = new Map<string, KnownDestination>()));
      values.set(row.value, { first: row.first_seen, last: row.last_seen });
    }
    for (const row of this.amounts.all(agentId, now - this.config.lookbackMs)) pushAmount(profile, row.series, row.at, row.amount);
    const minutes: Array<[number, number]> = [];
    const hours: Array<[number, number]> = [];
    let lastTool: { tool: string; at: number } | undefined;
    for (const row of this.counts.all(agentId)) {
      switch (row.kind) {
        case 'total':
          profile.executed = row.count;
          break;
        case 'hod':
          profile.hourOfDay[Number(row.key)] = row.count;
          break;
        case 'minute':
          minutes.push([Number(row.key), row.count]);
          break;
        case 'hour':
          hours.push([Number(row.key), row.count]);
          break;
        case 'data_class':
          profile.dataClasses.set(row.key, row.count);
          break;
        case 'jurisdiction':
          profile.jurisdictions.set(row.key, row.count);
          break;
        case 'effect':
          profile.effects.set(row.key, row.count);
          break;
        case 'tool':
          if (!lastTool || row.last_at > lastTool.at || (row.last_at === lastTool.at && row.key > lastTool.tool))
            lastTool = { tool: row.key, at: row.last_at };
          break;
        case 'transition': {
          const cut = row.key.indexOf('>');
          const from = row.key.slice(0, cut);
          let to = profile.transitions.get(from);
          if (!to) profile.transitions.set(from, (to = new Map<string, number>()));
          to.set(row.key.slice(cut + 1), row.count);
          break;
        }
        default:
          throw new Error(`unknown risk counter kind ${JSON.stringify(row.kind)}`);
      }
    }
    for (const [k, n] of minutes.sort((a, b) => a[0] - b[0]).slice(-MAX_ACTIVE_MINUTES)) profile.minutes.set(k, n);
    for (const [k, n] of hours.sort((a, b) => a[0] - b[0]).slice(-MAX_ACTIVE_HOURS)) profile.hours.set(k, n);
    profile.last = lastTool;
    for (const row of this.recent.recentOf(agentId, now - this.recentWindowMs)) {
      const f = callFeatures(this.config, row.call, row.callSha256);
      profile.recent.push({
        requestId: row.id,
        at: row.createdAt,
        tool: f.tool,
        digest: f.digest,
        shape: f.shape,
        series: f.series,
        amount: f.amount,
        sessionId: f.sessionId,
        destinations: destinationKey(f),
        state: row.state,
      });
    }
    trimRecent(profile, now, this.recentWindowMs);
    this.loadFlows(profile, agentId, now);
    return profile;
  }

  /** What the agent's recent sessions read, as reported to this hub (a team hub keeps these per hub). */
  loadFlows(profile: AgentProfile, agentId: string, now: number): void {
    for (const row of this.reads.all(agentId, now - this.recentWindowMs)) {
      let flow = profile.flows.get(row.session_id);
      if (!flow) profile.flows.set(row.session_id, (flow = emptyFlow(row.at)));
      addRead(flow, row.trusted === 1, row.digests === '' ? [] : row.digests.split(' '), row.at, row.what);
    }
  }

  /** Write one reported read (inside the caller's transaction): digests only, never the text. */
  writeRead(agentId: string, sessionId: string, at: number, trusted: boolean, what: string, digests: readonly string[]): void {
    this.insertRead.run(agentId, sessionId, at, trusted ? 1 : 0, what, digests.join(' '));
  }

  /** Write what `learnExecuted` learned (inside the caller's transaction). */
  writeExecuted(agentId: string, f: CallFeatures, at: number, learned: Learned): void {
    this.upsertCount.run(
      agentId,
      'total',
      '',
      at,
      agentId,
      'hod',
      String(new Date(at).getUTCHours()),
      at,
      agentId,
      'minute',
      String(Math.floor(at / MINUTE_MS)),
      at,
      agentId,
      'hour',
      String(Math.floor(at / HOUR_MS)),
      at,
      agentId,
      'tool',
      f.tool,
      at,
      agentId,
      'transition',
      `${learned.from}>${f.tool}`,
      at,
      agentId,
      'data_class',
      f.dataClass,
      at,
      agentId,
      'jurisdiction',
      f.jurisdiction,
      at,
    );
    if (f.series !== undefined && f.amount !== undefined) this.insertAmount.run(agentId, f.series, at, f.amount);
    if (f.items !== undefined) this.insertAmount.run(agentId, itemSeries(f.tool), at, f.items);
    for (const e of f.effects) this.upsertEffect.run(agentId, e, at);
    for (const d of f.destinations) this.upsertKnown.run(agentId, d.kind, d.value, at, at);
    for (const r of f.recipients) this.upsertKnown.run(agentId, RECIPIENT_KIND, r.key, at, at);
    for (const d of learned.evicted) this.deleteKnown.run(agentId, d.kind, d.value);
  }

  /** Forget amounts and per-minute/hour counters older than the lookback window. */
  prune(now: number): number {
    const cutoff = now - this.config.lookbackMs;
    const prune = this.db.transaction(
      () =>
        this.db.prepare('DELETE FROM risk_amounts WHERE at < ?').run(cutoff).changes +
        this.db.prepare("DELETE FROM risk_counts WHERE kind IN ('minute', 'hour') AND last_at < ?").run(cutoff).changes +
        this.db.prepare('DELETE FROM risk_reads WHERE at < ?').run(now - this.recentWindowMs).changes,
    );
    return prune.immediate();
  }
}
