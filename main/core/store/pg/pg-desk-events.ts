/**
 * The desks' push events on a team hub (shared/bridge-table.ts BRIDGE_EVENTS: `pending`,
 * `approvalRecorded`, `decided`, `adminProposal`): every desk on every hub gets every event,
 * whichever hub wrote it, once, in order per request.
 *  - Triggers (PG migration 16) write a `desk_events` row in the transaction that moved a request
 *    or a proposal, whatever code path wrote it, and NOTIFY `countersign_desk_events`; so only a
 *    committed change is told, and never one rolled back.
 *  - Each hub reads the rows committed since its previous read: those whose transaction was not
 *    visible in that read's snapshot (`xid` against `pg_snapshot`, as risk/pg-risk-log.ts), on each
 *    NOTIFY, after each listener (re)connect and once a minute. Reads run one at a time, so each
 *    row is pushed exactly once by each hub, the hub that wrote it included (no event is pushed
 *    before its commit, and none twice). A later event of a request is written by a transaction
 *    that began after the earlier one committed, so a read never pushes it first.
 *  - A NOTIFY sent while the listener was reconnecting is not lost: the read after the reconnect
 *    finds its rows. Rows older than 15 minutes are pruned; a hub whose last read is nearly that
 *    old (the database away), or that missed more than the bridge's replay ring holds, pushes one
 *    `resync` instead (every view re-reads).
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { parseBridgeEvent, type BridgeEvent } from '../../../../shared/bridge-table.js';
import { storeError } from './pg-errors.js';
import { PgListener } from './pg-listener.js';

export const DESK_EVENTS_CHANNEL = 'countersign_desk_events';
/** How long a row stays: far longer than a listener's reconnect. */
export const DESK_EVENT_RETENTION_MS = 15 * 60_000;
/** Each hub reads (and prunes) at least this often, so a healthy hub's position is never old. */
const TICK_MS = 60_000;
/** A last read older than this may have missed pruned rows: the desks re-read instead. */
const STALE_AFTER_MS = DESK_EVENT_RETENTION_MS - 2 * TICK_MS;

export interface PgDeskEventsOptions {
  pool: pg.Pool;
  /** Connection settings for the LISTEN connection (the resolved team database config's `pool`). */
  connection: pg.ClientConfig;
  /** More events missed than this (the bridge's replay ring, ui/bridge-events.ts) are one `resync`. */
  maxEventsPerRead: number;
  onError: (message: string) => void;
}

interface ReadRow {
  position: string;
  events: Array<[string, string, string | null]>;
}

export class PgDeskEvents {
  private listener: PgListener | undefined;
  private tick: ReturnType<typeof setInterval> | undefined;
  /** The snapshot of the last read (pg_snapshot text); undefined before the first. */
  private position: string | undefined;
  private lastReadAt = 0;
  private lastPruneAt = 0;
  private running: Promise<void> | undefined;
  private waiting: Promise<void> | undefined;
  private emit: (event: BridgeEvent) => void = () => undefined;

  constructor(private readonly options: PgDeskEventsOptions) {}

  /**
   * Push every event committed from now on to `emit`. Rejects if the database does not answer
   * now; afterwards the listener reconnects by itself and catches up.
   */
  async start(emit: (event: BridgeEvent) => void): Promise<void> {
    this.emit = emit;
    const listener = new PgListener({
      connection: this.options.connection,
      channel: DESK_EVENTS_CHANNEL,
      name: "the desks' push events",
      onNotify: () => void listener.catchUp(),
      onConnected: () => this.read(),
      onError: this.options.onError,
    });
    this.listener = listener;
    await listener.start();
    this.tick = setInterval(() => void listener.catchUp(), TICK_MS);
    this.tick.unref();
  }

  /** Read what was committed since the last read now (tests; resolves once it was pushed). */
  catchUp(): Promise<void> {
    return this.read();
  }

  async close(): Promise<void> {
    if (this.tick !== undefined) clearInterval(this.tick);
    await this.listener?.close();
  }

  /** One read at a time; a read asked for while one runs follows it (once, however often asked). */
  private read(): Promise<void> {
    if (this.waiting !== undefined) return this.waiting;
    if (this.running === undefined) {
      this.running = this.readOnce().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    // The running read may have taken its snapshot before the change this call was asked for.
    this.waiting = this.running
      .catch(() => undefined)
      .then(() => {
        this.waiting = undefined;
        return this.read();
      });
    return this.waiting;
  }

  private async readOnce(): Promise<void> {
    const startedAt = performance.now();
    if (this.position === undefined) {
      const { rows } = await this.query<{ position: string }>('SELECT pg_current_snapshot()::text AS position', []);
      this.position = rows[0]!.position;
      this.lastReadAt = startedAt;
      return;
    }
    const stale = startedAt - this.lastReadAt > STALE_AFTER_MS;
    // One statement, one snapshot: the position returned and the rows read agree. Named (prepared
    // once per connection): every hub runs it for every held call, approval and end.
    const { rows } = await this.query<ReadRow>(
      `SELECT pg_current_snapshot()::text AS position,
         (SELECT coalesce(json_agg(json_build_array(e.name, e.subject, e.detail) ORDER BY e.seq), '[]'::json)
          FROM (SELECT seq, name, subject, detail FROM desk_events
                WHERE xid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(xid, $1::pg_snapshot)
                ORDER BY seq LIMIT $2) e) AS events`,
      [this.position, this.options.maxEventsPerRead + 1],
      'cs_desk_events_read',
    );
    const row = rows[0]!;
    this.position = row.position;
    this.lastReadAt = startedAt;
    if (stale || row.events.length > this.options.maxEventsPerRead) {
      this.push({ name: 'resync', data: {} });
    } else {
      for (const [name, subject, detail] of row.events) {
        const event = parseBridgeEvent(name, dataOf(name, subject, detail));
        if (event === undefined)
          this.options.onError(`a desk event ${JSON.stringify(name)} is malformed; the desks see it on their next reload`);
        else this.push(event);
      }
    }
    // Pruning is no part of telling the desks: once a minute per hub, not once per read.
    if (startedAt - this.lastPruneAt < TICK_MS) return;
    this.lastPruneAt = startedAt;
    await this.query('DELETE FROM desk_events WHERE at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1', [
      DESK_EVENT_RETENTION_MS,
    ]);
  }

  private push(event: BridgeEvent): void {
    try {
      this.emit(event);
    } catch (error) {
      this.options.onError(`pushing a desk event failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private async query<R extends pg.QueryResultRow>(sql: string, params: unknown[], name?: string): Promise<pg.QueryResult<R>> {
    try {
      return await this.options.pool.query<R>(name === undefined ? { text: sql, values: params } : { name, text: sql, values: params });
    } catch (error) {
      throw storeError(error, "reading the desks' push events");
    }
  }
}

/** A row's bridge event data (parseBridgeEvent checks it against the table). */
function dataOf(name: string, subject: string, detail: string | null): unknown {
  switch (name) {
    case 'pending':
      return { requestId: subject, agentId: detail };
    case 'approvalRecorded':
      return { requestId: subject };
    case 'decided':
      return { requestId: subject, state: detail };
    case 'adminProposal':
      return { proposalId: subject, state: detail };
    default:
      return undefined;
  }
}
