/**
 * The team's risk events in PostgreSQL (risk_log, PG migration 12): what every hub's baselines
 * learn from. The risk engine queues an agent's event while a decision's unit runs (its learner
 * hooks are synchronous); the unit takes the queue right after the hook, with no await between
 * (so it takes exactly its own events), and writes it in its own transaction: a decision whose
 * team COMMIT fails leaves no event, so no hub learns from it.
 *
 * Reading is incremental and gap-free without ordering writers: a read returns the agent's events
 * committed since the previous read's snapshot (`xid` not visible in it, from its xmin on, by the
 * index (agent_id, xid)) and the new snapshot as the next position, so each read costs what was
 * committed since, not the agent's history. Events this hub wrote and already applied in memory
 * are skipped once (by id), until the engine forgets the agent.
 *
 * Snapshots bound a fresh read (PG migration 13, risk_baselines): one row per agent holding its
 * baseline (profile-state.ts) as of a position, written by a hub after it replayed enough events
 * (risk-engine.ts), only if the row still holds the snapshot it started from (so concurrent hubs
 * never overwrite a newer one). A fresh read takes the snapshot and the events not visible in its
 * position in one statement. Replacing snapshot S0 by S1 deletes the events S0 covered (`pruned`
 * = S0): a hub whose last position may not have seen all of them (its xmin before S0's xmax) is
 * told its read is stale and reads fresh. Importing: a hub's SQLite baselines from before the
 * team shared them become one `imported` event per agent, once per hub (risk_imports).
 */
import type pg from 'pg';
import type { UnitRiskWriter } from '../store/pg/pg-decision-store.js';
import type { RiskEvent, RiskEventLog, RiskEventRead } from './risk-ports.js';
import type { ProfileState } from './profile-state.js';
import { canonicalize, type JsonObject } from '../../../shared/canonical-json.js';
import { parseStoredJson } from '../store/stored-json.js';
import { checkOut, storeError } from '../store/pg/pg-errors.js';

export class PgRiskLog implements RiskEventLog, UnitRiskWriter {
  private queued: QueuedEvent[] = [];
  /** Per agent: ids of events this hub wrote and already holds in memory. */
  private readonly applied = new Map<string, Set<string>>();
  /** Per agent: bumped by each forget, so an event applied to memory since dropped is not skipped. */
  private readonly generation = new Map<string, number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly hub: string,
  ) {}

  queue(agentId: string, event: RiskEvent, inMemory: boolean): void {
    this.queued.push({ agentId, event, inMemory: inMemory ? (this.generation.get(agentId) ?? 0) : undefined });
  }

  /** The events queued since the last take (call right after the learner hook, before any await). */
  take(): QueuedEvent[] {
    const taken = this.queued;
    this.queued = [];
    return taken;
  }

  /** Write taken events inside the caller's unit (its transaction). */
  async write(client: pg.ClientBase, events: readonly QueuedEvent[]): Promise<void> {
    if (events.length === 0) return;
    const { agents, texts } = this.encode(events);
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO risk_log (agent_id, hub, event) SELECT a, $2, e FROM unnest($1::text[], $3::text[]) WITH ORDINALITY AS t(a, e, n)
       ORDER BY n RETURNING id`,
      [agents, this.hub, texts],
    );
    this.noteWritten(
      events,
      rows.map((row) => row.id),
    );
  }

  /** Taken events as the columns risk_log stores (for a statement that inserts them itself, pg-decision-store.ts). */
  encode(events: readonly QueuedEvent[]): { agents: string[]; texts: string[] } {
    return { agents: events.map((e) => e.agentId), texts: events.map((e) => canonicalize(e.event as unknown as JsonObject)) };
  }

  /**
   * The ids `events` were written with, in any order: inserted in the events' order, so the
   * sorted ids are theirs in turn. Each is skipped when read only if the memory it was applied to
   * is still the agent's.
   */
  noteWritten(events: readonly QueuedEvent[], ids: readonly string[]): void {
    ids
      .map((id) => BigInt(id))
      .sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
      .forEach((id, i) => {
        const { agentId, inMemory } = events[i]!;
        if (inMemory === undefined || inMemory !== (this.generation.get(agentId) ?? 0)) return;
        let ids = this.applied.get(agentId);
        if (ids === undefined) this.applied.set(agentId, (ids = new Set()));
        ids.add(String(id));
      });
  }

  async read(agentId: string, from: string | null): Promise<RiskEventRead> {
    let row: ReadRow | undefined;
    try {
      ({
        rows: [row],
      } = await this.pool.query<ReadRow>(
        // One statement, one snapshot: the agent's snapshot row and the events after it agree. The
        // xid bound is a plain range on the index (agent_id, xid), so a read skips what came before.
        `WITH base AS (SELECT position, pruned, state FROM risk_baselines WHERE agent_id = $1),
           since AS (SELECT CASE WHEN $2::pg_snapshot IS NULL THEN (SELECT position FROM base) ELSE $2::pg_snapshot END AS s)
         SELECT pg_current_snapshot()::text AS position,
           CASE WHEN $2::pg_snapshot IS NULL THEN (SELECT state FROM base) END AS base,
           CASE WHEN $2::pg_snapshot IS NULL THEN (SELECT position::text FROM base) END AS base_position,
           COALESCE($2::pg_snapshot IS NOT NULL AND (SELECT pg_snapshot_xmax(pruned) > pg_snapshot_xmin($2::pg_snapshot) FROM base), false) AS stale,
           (SELECT json_agg(json_build_array(id::text, event) ORDER BY id) FROM risk_log
            WHERE agent_id = $1 AND xid >= COALESCE(pg_snapshot_xmin((SELECT s FROM since)), '0'::xid8)
              AND ((SELECT s FROM since) IS NULL OR NOT pg_visible_in_snapshot(xid, (SELECT s FROM since)))) AS rows`,
        [agentId, from],
      ));
    } catch (error) {
      throw storeError(error, 'reading the risk baseline');
    }
    const { position, base, base_position: basePosition, stale, rows } = row!;
    // A fresh read builds new memory: nothing is skipped.
    const mine = from === null ? undefined : this.applied.get(agentId);
    const events: RiskEvent[] = [];
    for (const [id, text] of rows ?? []) {
      if (mine?.delete(id)) continue;
      events.push(parseStoredJson(text) as RiskEvent);
    }
    return {
      events,
      position,
      seen: rows?.length ?? 0,
      base: base === null || basePosition === null ? undefined : { state: parseStoredJson(base) as ProfileState, position: basePosition },
      stale,
    };
  }

  forget(agentId: string): void {
    this.applied.delete(agentId);
    this.generation.set(agentId, (this.generation.get(agentId) ?? 0) + 1);
    // A hook that threw after queueing: its events must not reach the team (the unit takes the queue next).
    if (this.queued.some((q) => q.agentId === agentId)) this.queued = this.queued.filter((q) => q.agentId !== agentId);
  }

  async saveSnapshot(
    agentId: string,
    basePosition: string | null,
    position: string,
    state: ProfileState,
    folded: number,
  ): Promise<boolean> {
    return this.transaction('saving a risk snapshot', async (client) => {
      const stateText = canonicalize(state);
      const saved =
        basePosition === null
          ? await client.query(
              `INSERT INTO risk_baselines (agent_id, position, events, state) VALUES ($1, $2::pg_snapshot, $3, $4) ON CONFLICT (agent_id) DO NOTHING`,
              [agentId, position, folded, stateText],
            )
          : await client.query(
              // UPDATE reads the old row on the right: pruned becomes the replaced snapshot's position.
              `UPDATE risk_baselines SET position = $2::pg_snapshot, pruned = position, events = events + $3, state = $4
               WHERE agent_id = $1 AND position::text = $5`,
              [agentId, position, folded, stateText, basePosition],
            );
      if (saved.rowCount !== 1) return false;
      if (basePosition !== null)
        await client.query(
          `DELETE FROM risk_log WHERE agent_id = $1 AND xid < pg_snapshot_xmax($2::pg_snapshot) AND pg_visible_in_snapshot(xid, $2::pg_snapshot)`,
          [agentId, basePosition],
        );
      return true;
    });
  }

  /**
   * Carry this hub's SQLite baselines (learned before its team shared them) into the team's log,
   * once per hub: the marker row and one `imported` event per agent commit together; a hub that
   * imported before (or is importing now, on another connection) imports nothing. Returns how many
   * agents' baselines were imported.
   */
  async importBaselines(collect: () => Array<{ agentId: string; baseline: ProfileState }>): Promise<number> {
    return this.transaction('importing the risk baselines', async (client) => {
      const marked = await client.query('INSERT INTO risk_imports (hub) VALUES ($1) ON CONFLICT (hub) DO NOTHING', [this.hub]);
      if (marked.rowCount !== 1) return 0;
      const baselines = collect();
      if (baselines.length > 0)
        await client.query(`INSERT INTO risk_log (agent_id, hub, event) SELECT a, $2, e FROM unnest($1::text[], $3::text[]) AS t(a, e)`, [
          baselines.map((b) => b.agentId),
          this.hub,
          baselines.map((b) =>
            canonicalize({ kind: 'imported', hub: this.hub, baseline: b.baseline } satisfies RiskEvent as unknown as JsonObject),
          ),
        ]);
      await client.query('UPDATE risk_imports SET agents = $2 WHERE hub = $1', [this.hub, baselines.length]);
      return baselines.length;
    });
  }

  private async transaction<T>(doing: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const ignore = () => undefined; // a lost connection rejects the running query
    let client: pg.PoolClient;
    try {
      client = await checkOut(this.pool, ignore);
    } catch (error) {
      throw storeError(error, doing);
    }
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw storeError(error, doing);
    } finally {
      client.off('error', ignore);
      client.release();
    }
  }
}

interface ReadRow {
  position: string;
  base: string | null;
  base_position: string | null;
  stale: boolean;
  rows: Array<[string, string]> | null;
}

/** An event queued by the learner; `inMemory`: the agent's memory generation it was applied to (undefined: not applied). */
interface QueuedEvent {
  agentId: string;
  event: RiskEvent;
  inMemory: number | undefined;
}
