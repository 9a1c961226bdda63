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
 */
import type pg from 'pg';
import type { UnitRiskWriter } from '../store/pg/pg-decision-store.js';
import type { RiskEvent, RiskEventLog } from './risk-ports.js';
import { canonicalize, type JsonObject } from '../../../shared/canonical-json.js';
import { parseStoredJson } from '../store/stored-json.js';
import { storeError } from '../store/pg/pg-errors.js';

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
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO risk_log (agent_id, hub, event) SELECT a, $2, e FROM unnest($1::text[], $3::text[]) WITH ORDINALITY AS t(a, e, n)
       ORDER BY n RETURNING id`,
      [events.map((e) => e.agentId), this.hub, events.map((e) => canonicalize(e.event as unknown as JsonObject))],
    );
    rows
      .map((row) => BigInt(row.id))
      .sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
      .forEach((id, i) => {
        const { agentId, inMemory } = events[i]!;
        // Skipped when read only if the memory it was applied to is still the agent's.
        if (inMemory === undefined || inMemory !== (this.generation.get(agentId) ?? 0)) return;
        let ids = this.applied.get(agentId);
        if (ids === undefined) this.applied.set(agentId, (ids = new Set()));
        ids.add(String(id));
      });
  }

  async read(agentId: string, from: string | null): Promise<{ events: RiskEvent[]; position: string }> {
    let row: { position: string; rows: Array<[string, string]> | null } | undefined;
    try {
      ({
        rows: [row],
      } = await this.pool.query<{ position: string; rows: Array<[string, string]> | null }>(
        `SELECT pg_current_snapshot()::text AS position,
           (SELECT json_agg(json_build_array(id::text, event) ORDER BY id) FROM risk_log
            WHERE agent_id = $1 AND ($2::pg_snapshot IS NULL
              OR (xid >= pg_snapshot_xmin($2::pg_snapshot) AND NOT pg_visible_in_snapshot(xid, $2::pg_snapshot)))) AS rows`,
        [agentId, from],
      ));
    } catch (error) {
      throw storeError(error, 'reading the risk baseline');
    }
    const mine = this.applied.get(agentId);
    const events: RiskEvent[] = [];
    for (const [id, text] of row!.rows ?? []) {
      if (mine?.delete(id)) continue;
      events.push(parseStoredJson(text) as RiskEvent);
    }
    return { events, position: row!.position };
  }

  forget(agentId: string): void {
    this.applied.delete(agentId);
    this.generation.set(agentId, (this.generation.get(agentId) ?? 0) + 1);
  }
}

/** An event queued by the learner; `inMemory`: the agent's memory generation it was applied to (undefined: not applied). */
interface QueuedEvent {
  agentId: string;
  event: RiskEvent;
  inMemory: number | undefined;
}
