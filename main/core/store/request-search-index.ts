/**
 * The desk History's search index (the trigram FTS5 table request_search of migration 14), filled
 * outside the decision transaction (issue #12). A trigger used to index each request row inside
 * its decision's savepoint, and FTS5 flushes its pending terms to a new segment at every savepoint:
 * about 45 µs of the event loop per decision against 4 µs for the row itself. Now the rows are
 * indexed in batches, in a transaction of their own, shortly after they commit; and every search
 * first indexes whatever is still missing, so a search always finds every committed request.
 *
 * What is missing is read from the tables themselves, never from a queue: request rows are never
 * deleted, so their rowids only grow, and every request whose rowid is above the highest rowid in
 * the index is not indexed yet. A crash between a decision's commit and its indexing therefore
 * loses nothing: the next catch-up (at start, at the next search or the next batch) finds it. The
 * index is derived data, so its batches commit with synchronous=NORMAL (no fsync on the event
 * loop); a batch lost to a power cut is indexed again the same way.
 */
import type Database from 'better-sqlite3';
import type { Db } from './database.js';

/** The indexed text of one request: its id, agent, tool and payee (what the History search box matches). */
const BODY = `id || ' ' || agent_id || ' ' || tool || ' ' || COALESCE(json_extract(call_json, '$.params.payee'), '')`;

export interface RequestSearchIndexOptions {
  /** How long after a commit its rows are indexed, gathering what commits meanwhile (default 100 ms). */
  delayMs?: number;
  /** Most rows indexed in one transaction (default 2,000). */
  batch?: number;
  /** Where a failed batch is reported (it is retried at the next commit, search or start). */
  onError?: (message: string) => void;
}

export class RequestSearchIndex {
  private readonly delayMs: number;
  private readonly batch: number;
  private readonly lastIndexed: Database.Statement<[], { rowid: number }>;
  private readonly upTo: Database.Statement<[number, number], { last: number | null }>;
  private readonly index: Database.Statement<[number, number]>;
  private readonly indexBatch: Database.Transaction<() => number>;
  private readonly withoutSync: Database.Statement;
  private readonly withSync: Database.Statement | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly options: RequestSearchIndexOptions = {},
  ) {
    this.delayMs = Math.max(0, options.delayMs ?? 100);
    this.batch = Math.max(1, options.batch ?? 2_000);
    this.lastIndexed = db.prepare('SELECT rowid FROM request_search ORDER BY rowid DESC LIMIT 1');
    this.upTo = db.prepare('SELECT MAX(rowid) AS last FROM (SELECT rowid FROM requests WHERE rowid > ? ORDER BY rowid LIMIT ?)');
    this.index = db.prepare(`INSERT INTO request_search (rowid, body) SELECT rowid, ${BODY} FROM requests WHERE rowid > ? AND rowid <= ?`);
    this.indexBatch = db.transaction(() => {
      const from = this.lastIndexed.get()?.rowid ?? 0;
      const last = this.upTo.get(from, this.batch)?.last ?? null;
      if (last === null) return 0;
      return this.index.run(from, last).changes;
    });
    // The connection syncs every COMMIT (FULL) for everything else; only these batches skip it.
    const synchronous = Number(db.pragma('synchronous', { simple: true }));
    this.withoutSync = db.prepare('PRAGMA synchronous = NORMAL');
    this.withSync = synchronous === 1 ? undefined : db.prepare(`PRAGMA synchronous = ${synchronous}`);
  }

  /**
   * Index every committed request the index lacks, now; returns how many rows were indexed. Each
   * batch is a transaction of its own (inside a caller's transaction, a savepoint of it).
   */
  catchUp(): number {
    let total = 0;
    for (;;) {
      const n = this.runBatch();
      total += n;
      if (n < this.batch) return total;
    }
  }

  /** Requests were committed: index them shortly, with whatever else commits meanwhile. */
  schedule(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.catchUp();
      } catch (error) {
        this.options.onError?.(`request search indexing failed (retried later): ${error instanceof Error ? error.message : String(error)}`);
      }
    }, this.delayMs);
    this.timer.unref();
  }

  /** Stop the timer (the rows it would have indexed are found by the next catch-up). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private runBatch(): number {
    if (this.db.inTransaction) return this.indexBatch(); // joins the caller's transaction as a savepoint
    this.withoutSync.run();
    try {
      return this.indexBatch.immediate();
    } finally {
      this.withSync?.run();
    }
  }
}
